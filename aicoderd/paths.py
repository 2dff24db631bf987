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


def unsafe_dir(path: Path) -> str | None:
    """Why an existing folder is no place for the socket (owned by somebody else, or others
    may write in it: they could put their own socket in its place); None when it is safe."""
    st = path.stat()
    if st.st_uid != os.getuid():
        return f"{path} is owned by uid {st.st_uid}, not by you ({os.getuid()})"
    if st.st_mode & 0o022:
        return f"{path} is writable by others (mode {oct(st.st_mode & 0o7777)})"
    return None


def nearest_existing(path: Path) -> Path:
    return next((p for p in (path, *path.parents) if p.exists()), Path("/"))


def ensure_private_dir(path: Path) -> None:
    """The socket's folder: the folders that are missing are created 0700 (and only those are
    ours to set); an existing one must be safe, and is never changed (anything under /tmp can be
    pre-created by another user; a shared folder is not ours to tighten)."""
    if not path.exists():
        path.mkdir(mode=0o700, parents=True)
        os.chmod(path, 0o700)  # whatever the umask
        return
    problem = unsafe_dir(path)
    if problem is not None:
        raise PermissionError(f"{problem}: give the socket a folder of its own")
