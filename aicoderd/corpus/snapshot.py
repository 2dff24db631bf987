"""The on-disk layout of a corpus directory, and reading it (standard library only: the
daemon's status and ``aicoder corpus stats`` use this without loading any heavy library).

::

    DIR/
      current -> snapshots/<id>          swapped atomically when a build completes
      snapshots/<id>/preprocessed_corpus.txt, dataset/, manifest.json, removed.jsonl
      preprocessed_corpus.txt -> current/preprocessed_corpus.txt   (and so on for each file)
      state/ledger.sqlite                 the decisions behind the current snapshot

A snapshot is written under ``snapshots/<id>.tmp/``, renamed into place once complete, and
only then published by replacing the ``current`` link, so a reader sees the old snapshot or
the new one, never a mixture; a crash leaves the previous one current and readable. Readers
that open several files resolve ``current`` once (:meth:`Layout.current_dir`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aicoderd.errors import CorpusError
from aicoderd.fsutil import fsync_dir

CORPUS_TXT = "preprocessed_corpus.txt"
DATASET = "dataset"
MANIFEST = "manifest.json"
REMOVED = "removed.jsonl"
PUBLISHED = (CORPUS_TXT, DATASET, MANIFEST, REMOVED)
# Between documents in preprocessed_corpus.txt: the end-of-text token on a line of its own.
SEPARATOR = "\n<|endoftext|>\n"
MANIFEST_SCHEMA = 1


class Layout:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.snapshots = root / "snapshots"
        self.current = root / "current"
        self.ledger = root / "state" / "ledger.sqlite"

    def snapshot_dir(self, snapshot: str) -> Path:
        return self.snapshots / snapshot

    def current_id(self) -> str | None:
        try:
            return Path(os.readlink(self.current)).name
        except OSError:
            return None

    def current_dir(self) -> Path | None:
        snapshot = self.current_id()
        return None if snapshot is None else self.snapshot_dir(snapshot)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """One build at a time per corpus directory."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise CorpusError(f"another corpus build is running in {self.root}") from None
            yield
        finally:
            os.close(fd)

    def publish(self, snapshot: str) -> None:
        """Make ``snapshot`` current (an atomic rename of a new link over the old one)."""
        tmp = self.root / f".current.{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.symlink(f"snapshots/{snapshot}", tmp)
        os.replace(tmp, self.current)
        for name in PUBLISHED:
            link = self.root / name
            if not link.is_symlink():
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(link)
                os.symlink(f"current/{name}", link)
        fsync_dir(self.root)

    def clean(self, keep: list[str]) -> None:
        """Remove unfinished snapshots and committed ones beyond ``keep``."""
        if not self.snapshots.is_dir():
            return
        current = self.current_id()
        for entry in self.snapshots.iterdir():
            if entry.name not in keep and entry.name != current:
                shutil.rmtree(entry, ignore_errors=True)


def read_manifest(root: Path) -> dict[str, Any] | None:
    """The current snapshot's manifest, or None when there is no snapshot yet."""
    directory = Layout(root).current_dir()
    if directory is None:
        return None
    try:
        data: dict[str, Any] = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise CorpusError(f"cannot read the manifest in {directory}: {exc}") from exc
    return data


def read_removed(root: Path) -> Iterator[dict[str, Any]]:
    """The current snapshot's removed documents and refused inputs, one dict each."""
    directory = Layout(root).current_dir()
    if directory is None:
        return
    with open(directory / REMOVED, encoding="utf-8") as fh:
        for line in fh:
            yield json.loads(line)


def summary(root: Path) -> dict[str, Any]:
    """What ``GET /v1/status`` reports under ``corpus``."""
    error: str | None = None
    try:
        manifest = read_manifest(root)
    except CorpusError as exc:
        manifest, error = None, str(exc)
    if manifest is None:
        return {
            **({"error": error} if error else {}),
            "snapshot": None,
            "documents": 0,
            "bytes": 0,
            "tokens_estimate": 0,
            "removed": {},
            "redactions": {},
        }
    return {
        key: manifest[key]
        for key in (
            "snapshot",
            "created",
            "documents",
            "bytes",
            "tokens_estimate",
            "removed",
            "redactions",
        )
    }
