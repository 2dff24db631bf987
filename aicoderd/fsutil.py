"""Atomic file writes: every file another process reads appears whole or not at all."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, *, durable: bool = True, mode: int = 0o600) -> None:
    """Write ``data`` to a temp file beside ``path``, fsync it, and rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # The temp name starts like the final one, cut so that it never passes the name limit.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:64]}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(path.parent)


def append_line(path: Path, line: str) -> None:
    """Append one line durably (used for set-aside records)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line.rstrip("\n") + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte is written."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


PRIVATE_DIR, PRIVATE_FILE = 0o700, 0o600


def make_private(root: Path) -> int:
    """Take group and other permissions away from ``root`` and everything below it (folders
    0700, files 0600 at most); links are not followed. The number of entries repaired."""
    repaired = make_private_entry(root)
    for folder, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            with contextlib.suppress(PermissionError):
                repaired += make_private_entry(Path(folder) / name)
    return repaired


def make_private_entry(path: Path) -> int:
    """One file or folder (not what it holds) made private; 1 when it was repaired."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return 0
    if stat.S_ISLNK(st.st_mode) or not st.st_mode & 0o077:
        return 0
    limit = PRIVATE_DIR if stat.S_ISDIR(st.st_mode) else PRIVATE_FILE
    os.chmod(path, stat.S_IMODE(st.st_mode) & limit)
    return 1
