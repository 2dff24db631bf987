"""The one way documents are written: each content file durably as it comes (by whatever
thread hands it over), the folders those files went into fsynced once per batch, then one
transaction records the batch together with whatever else must commit with it (a source's run
state, the batch's events). So no row ever names a file that a crash could lose, and nothing
that depends on a document is committed without it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import Executor
from contextlib import contextmanager
from pathlib import Path

from aicoderd.fsutil import fsync_dir
from aicoderd.store import Store, Tables
from aicoderd.store.files import DocumentFiles


class DocumentWriter:
    def __init__(self, store: Store, files: DocumentFiles) -> None:
        self.store = store
        self.files = files
        self._dirs: set[Path] = set()
        self._lock = threading.Lock()

    def write(self, sha256: str, data: bytes) -> bool:
        """The content file for ``data`` (whose digest is ``sha256``), fsynced; its folder is
        fsynced by the next commit. Thread-safe; True when it was new."""
        written = self.files.put(sha256, data, sync_dir=False)
        if written:
            with self._lock:
                self._dirs.add(self.files.path_for(sha256).parent)
        return written

    def write_text(self, text: str) -> tuple[str, int]:
        """:meth:`write` for a text; its (sha256, size in bytes)."""
        sha, data = self.files.digest(text)
        self.write(sha, data)
        return sha, len(data)

    @contextmanager
    def committing(self, pool: Executor | None = None) -> Iterator[Tables]:
        """The folders of the files written so far made durable, then one transaction: what
        the block records commits together, or not at all."""
        with self._lock:
            dirs, self._dirs = self._dirs, set()
        if pool is not None:
            list(pool.map(fsync_dir, dirs))  # the waits overlap
        else:
            for directory in dirs:
                fsync_dir(directory)
        with self.store.transaction() as tx:
            yield tx
