"""Ingestion of complete files into the document store.

Order matters for "never lose, never double-ingest": content files are written durably, then
the database commits (the batch's documents and its events together, through the store's
:class:`~aicoderd.store.writer.DocumentWriter`), and only then does a consumed file leave its
inbox (or a refused one move to ``.failed/``). A crash at any point re-runs the file on restart,
and content addressing turns the re-run into the same document.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from aicoderd import log
from aicoderd.daemon.folder_messages import Outcome, Target
from aicoderd.errors import IngestRefused
from aicoderd.fsutil import atomic_write, fsync_dir
from aicoderd.sources.extract import Extracted, iter_extract, read_file
from aicoderd.sources.extract_limits import ExtractLimits
from aicoderd.sources.pathnames import uri_path
from aicoderd.store import NewDocument, Tables
from aicoderd.store.writer import DocumentWriter

logger = log.get(__name__)

FAILED_DIR = ".failed"
ERROR_NOTE = ".error.txt"
NAME_MAX = 255  # bytes in one path component (ext4, xfs, btrfs)


@dataclass
class _Work:
    target: Target
    outcome: Outcome
    docs: list[NewDocument] = field(default_factory=list)
    members: set[str] = field(default_factory=set)


class Ingestor:
    """Turns targets into documents. Thread-safe for one caller at a time per batch."""

    def __init__(self, writer: DocumentWriter) -> None:
        self.writer = writer
        self.store = writer.store
        # Reading, extracting and fsyncing files is I/O-bound: a few threads overlap the waits.
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="ingest")

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def run(self, targets: list[Target], limits: ExtractLimits) -> list[Outcome]:
        work = list(self._pool.map(lambda t: self._prepare(t, limits), targets))
        docs = [d for w in work for d in w.docs]
        with self.writer.committing(self._pool) as tx:
            results = iter(tx.documents.record(docs))
            for w in work:
                created = [next(results)[1] for _ in w.docs]
                if w.outcome.status == "stored" and not any(created):
                    w.outcome.status = "duplicate"
            self._report(work, tx)  # with the documents: a crash loses neither alone
        touched: set[Path] = set()
        for w in work:
            self._finish(w, touched)
        for directory in touched:
            with contextlib.suppress(OSError):
                fsync_dir(directory)
        return [w.outcome for w in work]

    # -- before the commit -------------------------------------------------------------------

    def _prepare(self, target: Target, limits: ExtractLimits) -> _Work:
        uri = target.uri
        try:
            st = os.lstat(target.path)
        except FileNotFoundError:
            return _Work(target, Outcome(uri, "missing"))
        if target.mode == "mirror" and self._unchanged(target, st):
            return _Work(target, Outcome(uri, "unchanged"))
        try:
            data = read_file(target.path, st, limits)
        except IngestRefused as exc:
            return self._refused(target, st, exc, raw_sha=None)
        except FileNotFoundError:
            return _Work(target, Outcome(uri, "missing"))
        except OSError as exc:
            refusal = IngestRefused("unreadable", f"cannot read the file: {exc.strerror or exc}")
            return self._refused(target, st, refusal, raw_sha=None)
        try:
            return self._stored(target, st, iter_extract(data, str(target.path), limits))
        except IngestRefused as exc:  # content files already written stay unreferenced
            return self._refused(target, st, exc, hashlib.sha256(data).hexdigest())

    def _unchanged(self, target: Target, st: os.stat_result) -> bool:
        row = self.store.documents.location(target.source, target.uri)
        return (
            row is not None
            and row["present"] == 1
            and row["size"] == st.st_size
            and row["mtime_ns"] == st.st_mtime_ns
        )

    def _stored(self, target: Target, st: os.stat_result, extracted: Iterator[Extracted]) -> _Work:
        """Write each document's file as extraction yields it, keeping only its digest: an
        archive's members are never all in memory at once."""
        uri = target.uri
        work = _Work(target, Outcome(uri, "stored"))
        for item in extracted:
            work.docs.append(self._put(target, st, item))
            work.members.add(work.docs[-1].uri)
            del item  # its text is not held while the next member is extracted
        work.outcome.documents = len(work.docs)
        if work.members != {uri}:
            # The archive's own place, so an unchanged archive is skipped on the next scan.
            work.docs.append(
                NewDocument(
                    source=target.source,
                    uri=uri,
                    kind="archive",
                    language=None,
                    size=st.st_size,
                    sha256=None,
                    status="container",
                    mtime_ns=st.st_mtime_ns,
                    file_size=st.st_size,
                )
            )
        return work

    def _put(self, target: Target, st: os.stat_result, item: Extracted) -> NewDocument:
        """Write one document's file (its folder is fsynced with the batch's)."""
        sha, size = self.writer.write_text(item.text)
        member = item.name != str(target.path)
        return NewDocument(
            source=target.source,
            uri=uri_path(item.name),
            kind=item.kind,
            language=item.language,
            size=size,
            sha256=sha,
            status="stored",
            mtime_ns=None if member else st.st_mtime_ns,
            file_size=None if member else st.st_size,
            container=target.uri if member else None,
            retire_replaced=target.mode == "mirror",
        )

    def _refused(
        self, target: Target, st: os.stat_result, exc: IngestRefused, raw_sha: str | None
    ) -> _Work:
        uri = target.uri
        doc = NewDocument(
            source=target.source,
            uri=uri,
            kind="unknown",
            language=None,
            size=st.st_size,
            sha256=None if raw_sha is None else f"raw:{raw_sha}",
            status="failed",
            failure_reason=f"{exc.reason}: {exc}",
            mtime_ns=st.st_mtime_ns,
            file_size=st.st_size,
            retire_replaced=target.mode == "mirror",
        )
        return _Work(
            target, Outcome(uri, "refused", reason=exc.reason, message=str(exc)), docs=[doc]
        )

    # -- after the commit --------------------------------------------------------------------

    def _finish(self, w: _Work, touched: set[Path]) -> None:
        t = w.target
        if t.mode == "mirror" and w.outcome.status in ("stored", "duplicate") and w.members:
            self.store.documents.retire_members_except(t.source, t.uri, w.members)
        if t.mode != "consume" or w.outcome.status in ("missing", "unchanged"):
            return
        try:
            if w.outcome.status == "refused":
                self._set_aside(t, w.outcome)
            else:
                os.unlink(t.path)
            touched.add(t.path.parent)
        except FileNotFoundError:
            pass
        except OSError as exc:
            logger.error("ingest.cleanup_failed", path=t.uri, error=str(exc))

    def _set_aside(self, t: Target, outcome: Outcome) -> None:
        rel = t.path.relative_to(t.root)
        dest = t.root / FAILED_DIR / rel
        if dest.exists() or dest.is_symlink():
            stamp = f".{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
            dest = dest.with_name(fit_name(dest.name, stamp))
        dest.parent.mkdir(parents=True, exist_ok=True)
        note = (
            f"file: {t.path}\nreason: {outcome.reason}\nmessage: {outcome.message}\n"
            f"time: {time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n"
        )
        # surrogateescape: a name that is not UTF-8 is written with its own bytes
        atomic_write(
            dest.with_name(fit_name(dest.name, ERROR_NOTE)), note.encode(errors="surrogateescape")
        )
        os.rename(t.path, dest)

    def _report(self, work: list[_Work], tx: Tables) -> None:
        counts: Counter[str] = Counter(w.outcome.status for w in work)
        for w in work:
            if w.outcome.status == "refused":
                logger.warning(
                    "ingest.refused",
                    path=w.outcome.path,
                    reason=w.outcome.reason,
                    message=w.outcome.message,
                )
                tx.events.add(
                    "document.refused",
                    {
                        "path": w.outcome.path,
                        "reason": w.outcome.reason,
                        "message": w.outcome.message,
                    },
                )
        stored = counts.get("stored", 0) + counts.get("duplicate", 0)
        if stored or counts.get("refused", 0):
            tx.events.add("ingest.batch", dict(counts))
            logger.info("ingest.batch", **counts)


def fit_name(name: str, suffix: str) -> str:
    """``name + suffix``, the name shortened (and told apart by a hash of the whole) when the
    result would pass the file system's limit on one name; the note inside keeps the path."""
    whole = os.fsencode(name + suffix)
    if len(whole) <= NAME_MAX:
        return name + suffix
    tag = "~" + hashlib.sha256(whole).hexdigest()[:12]
    room = NAME_MAX - len(os.fsencode(tag + suffix))
    head = os.fsencode(name)[:room]
    return os.fsdecode(head) + tag + suffix
