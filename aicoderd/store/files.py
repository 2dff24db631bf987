"""The content-addressed document files: ``documents/<sha[:2]>/<sha>.txt``, plain UTF-8."""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from pathlib import Path

from aicoderd.fsutil import fsync_dir, write_all


class DocumentFiles:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def digest(text: str) -> tuple[str, bytes]:
        data = text.encode("utf-8")
        return hashlib.sha256(data).hexdigest(), data

    def path_for(self, sha256: str) -> Path:
        return self.root / sha256[:2] / f"{sha256}.txt"

    def put(self, sha256: str, data: bytes, *, sync_dir: bool = True) -> bool:
        """Write the content durably unless it is already there; True if written. With
        ``sync_dir=False`` the caller fsyncs the shard folder (once for a whole batch)."""
        target = self.path_for(sha256)
        if target.exists():
            return False
        target.parent.mkdir(exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
        if sync_dir:
            fsync_dir(target.parent)
        return True

    def read(self, sha256: str) -> str:
        return self.path_for(sha256).read_text(encoding="utf-8")

    def sweep_temporary(self) -> int:
        """Remove the temp files of writers that died (``.<sha>.txt.<pid>.<tid>.tmp`` whose
        process is gone, e.g. after a SIGKILL); the number removed."""
        removed = 0
        for tmp in self.root.glob("*/.*.tmp"):
            parts = tmp.name.split(".")
            pid = int(parts[-3]) if len(parts) >= 4 and parts[-3].isdigit() else 0
            if pid and _alive(pid):
                continue
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
                removed += 1
        return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
