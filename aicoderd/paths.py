"""XDG base directories, computed in-app (systemd 252's StateDirectory= maps to the wrong place)."""

from __future__ import annotations

import os
from pathlib import Path

APP = "aicoderd"


def _xdg(var: str, fallback: str) -> Path:
    value = os.environ.get(var, "")
    # The spec says relative values are invalid and must be ignored.
    return Path(value) if value and os.path.isabs(value) else Path.home() / fallback


def config_home() -> Path:
    return _xdg("XDG_CONFIG_HOME", ".config") / APP


def data_home() -> Path:
    return _xdg("XDG_DATA_HOME", ".local/share") / APP


def runtime_dir() -> Path:
    """``$XDG_RUNTIME_DIR/aicoderd``; without the variable, a per-uid folder in /tmp that
    :func:`ensure_private_dir` checks before use."""
    value = os.environ.get("XDG_RUNTIME_DIR", "")
    if value and os.path.isabs(value):
        return Path(value) / APP
    return Path("/tmp") / f"{APP}-{os.getuid()}"


def default_config_file() -> Path:
    return config_home() / "config.yaml"


def default_socket() -> Path:
    return runtime_dir() / f"{APP}.sock"


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` with mode 0700 and refuse one owned by somebody else: anything under
    /tmp can be pre-created by another user."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.lstat()
    if st.st_uid != os.getuid():
        raise PermissionError(f"{path} is owned by uid {st.st_uid}, not by us ({os.getuid()})")
    if st.st_mode & 0o077:
        os.chmod(path, 0o700)
