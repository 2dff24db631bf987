"""The folder worker: one child process that watches the folders, decides when a file is
complete and ingests it.

Why a process: in a burst of thousands of files, reading inotify events, settle tracking and
extraction are all Python work; in the daemon's process they hold its GIL while the event loop
should answer the API (benchmarks/README.md, latency.py: status p99 during a burst fell from
54 ms to 9 ms once this moved out of the daemon). The daemon sends a
:class:`Plan` (the folders and ingest settings), files handed over by ``aicoder ingest`` and
:class:`Stop`; the worker answers with compact :class:`Progress` (pending per folder, batches
stored) and the outcomes of the daemon's requests. Its loop is: messages, events, settle
checks, a rescan when due, then at most one batch, so a long backlog never starves the watcher.
"""

from __future__ import annotations

import collections
import functools
import signal
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path

from aicoderd import log
from aicoderd.daemon.folder_messages import (
    FolderPlan,
    Ingested,
    IngestRequest,
    Plan,
    Progress,
    Stop,
    Target,
)
from aicoderd.daemon.ingest import Ingestor
from aicoderd.sources.folders import Candidate, FolderWatch, Watcher, walk
from aicoderd.sources.inotify import FsEvent
from aicoderd.sources.pathnames import uri_path
from aicoderd.store import DocumentFiles, Store
from aicoderd.store.writer import DocumentWriter

logger = log.get(__name__)

POLL_SECONDS = 2.0  # rescan interval without inotify: the walk is the only news


# -- the worker ------------------------------------------------------------------------------


class FolderWorker:
    """Folder watching and ingestion on one thread; system calls inline (nothing else waits)."""

    def __init__(
        self,
        ingestor: Ingestor,
        send: Callable[[object], None],
        clock: Callable[[], float] = time.monotonic,
    ):
        self.ingestor = ingestor
        self.send = send
        self.clock = clock
        self.plan: Plan | None = None
        self.watches: list[FolderWatch] = []
        self.watcher: Watcher | None = None
        self.queue: collections.deque[tuple[int, Candidate]] = collections.deque()
        self.rescan_now = False
        self.next_scan = 0.0
        self.batches = 0
        self._reported: Progress | None = None

    def configure(self, plan: Plan) -> None:
        self.close()
        self.plan = plan
        self.queue.clear()  # queued files stay in their folder; the rescan finds them again
        self.watches = [
            FolderWatch(
                root=f.path,
                recursive=f.recursive,
                settle=f.settle,
                on_ready=functools.partial(self._enqueue, i),
                extra_junk=plan.extra_junk,
                stuck_after=plan.stuck_after,
                clock=self.clock,
            )
            for i, f in enumerate(plan.folders)
        ]
        for f in plan.folders:
            if not f.path.is_dir():  # a mirror folder removed since the config was read
                logger.error("folder.missing", path=str(f.path))
        self.watcher = Watcher(on_overflow=self._overflowed, extra_junk=plan.extra_junk)
        roots = [(f.path, f.recursive, f.mode == "consume") for f in plan.folders]
        self.watcher.start([root for root in roots if root[0].is_dir()])
        self.rescan()
        self.report()

    def close(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
            self.watcher = None

    def busy(self) -> bool:
        return bool(self.queue)

    def tick_interval(self) -> float:
        settles = [w.settle for w in self.watches] or [1.0]
        return max(0.05, min(0.25, min(settles) / 4))

    def step(self) -> None:
        """One round: events, settle checks, a rescan when due, at most one batch, a report."""
        if self.plan is None or self.watcher is None:
            return
        self._dispatch(self.watcher.drain())
        for watch in self.watches:
            watch.tick()
        if self.rescan_now or self.clock() >= self.next_scan:
            self.rescan()
        if self.queue:
            self._ingest_batch()
        self.report()

    def report(self) -> None:
        """Send the counts when they changed (or batches were stored)."""
        if self.plan is None:
            return
        progress = Progress(
            generation=self.plan.generation,
            watcher=self.watcher.kind if self.watcher is not None else "none",
            pending=tuple(w.pending for w in self.watches),
            batches=self.batches,
        )
        if progress != self._reported or progress.batches:
            self.send(progress)
            self._reported, self.batches = progress, 0

    # -- events and scans --------------------------------------------------------------------

    def _overflowed(self) -> None:
        logger.warning("folder.events_lost", action="rescanning")
        self.rescan_now = True
        for watch in self.watches:
            watch.writers_unknown()

    def _dispatch(self, events: list[FsEvent]) -> None:
        assert self.plan is not None
        gone: dict[int, list[str]] = {}
        for event in events:
            for i, (folder, watch) in enumerate(zip(self.plan.folders, self.watches, strict=True)):
                if not watch.accepts(event.path):
                    continue
                if event.is_dir:
                    self.rescan_now = True  # a directory moved in or out: the walk is the truth
                elif event.deleted and folder.mode == "mirror":
                    gone.setdefault(i, []).append(uri_path(str(event.path)))
                else:
                    watch.touch(event.path, event.writing)
        for i, uris in gone.items():
            self._retire(self.plan.folders[i], uris)

    def rescan(self) -> None:
        assert self.plan is not None
        self.rescan_now = False
        interval = self.plan.rescan_interval
        if self.watcher is None or self.watcher.kind == "polling":
            interval = min(interval, POLL_SECONDS)
        self.next_scan = self.clock() + interval
        for folder, watch in zip(self.plan.folders, self.watches, strict=True):
            found = list(walk(folder.path, recursive=folder.recursive, extra_junk=watch.extra_junk))
            if folder.mode == "mirror":
                found = self._mirror_diff(folder, found)
            watch.add_scanned(found)

    def _mirror_diff(self, folder: FolderPlan, found: list[Candidate]) -> list[Candidate]:
        """Keep new and changed files; retire the places of files that are gone."""
        known = self.ingestor.store.documents.file_locations(folder.source)
        uris = [uri_path(str(c.path)) for c in found]
        seen = set(uris)
        gone = [uri for uri in known if uri not in seen]
        if gone:
            self._retire(folder, gone)
        return [
            c for c, uri in zip(found, uris, strict=True) if known.get(uri) != (c.size, c.mtime_ns)
        ]

    def _retire(self, folder: FolderPlan, uris: list[str]) -> None:
        n = self.ingestor.store.documents.retire_locations(folder.source, uris)
        if n:
            logger.info("mirror.retired", folder=str(folder.path), files=n)
            self.ingestor.store.events.add(
                "documents.retired", {"folder": str(folder.path), "files": n}
            )
            self.batches += 1  # the daemon wakes its event followers

    # -- ingestion ---------------------------------------------------------------------------

    def _enqueue(self, index: int, ready: list[Candidate]) -> None:
        self.queue.extend((index, cand) for cand in ready)

    def _ingest_batch(self) -> None:
        assert self.plan is not None
        size = min(len(self.queue), self.plan.batch_size)
        items = [self.queue.popleft() for _ in range(size)]
        folders = self.plan.folders
        targets = [
            Target(folders[i].source, folders[i].mode, folders[i].path, c.path) for i, c in items
        ]
        try:
            self.ingestor.run(targets, self.plan.limits)
            self.batches += 1
        except Exception:
            logger.exception("ingest.batch_failed", files=len(targets))
        finally:
            for i, cand in items:
                self.watches[i].done(cand.path)

    def ingest(self, request: IngestRequest) -> Ingested:
        try:
            outcomes = self.ingestor.run(request.targets, request.limits)
        except Exception:
            logger.exception("ingest.batch_failed", files=len(request.targets))
            return Ingested(request.id, None)
        self.batches += 1
        return Ingested(request.id, outcomes)


# -- the process -----------------------------------------------------------------------------


def main() -> None:
    """Entry point of the worker's interpreter: ``FD STATE_DB DOCUMENTS_DIR LEVEL FORMAT``."""
    fd, state_db, documents_dir, level, fmt = sys.argv[1:]
    serve(Connection(int(fd)), Path(state_db), Path(documents_dir), level, fmt)


def serve(conn: Connection, state_db: Path, documents_dir: Path, level: str, fmt: str) -> None:
    """The worker process's main loop; returns on :class:`Stop` or when the daemon is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the daemon decides when we stop
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    log.configure(level, fmt)
    files = DocumentFiles(documents_dir)
    swept = files.sweep_temporary()  # what a killed writer left half-written
    if swept:
        logger.info("documents.temporary_removed", files=swept)
    ingestor = Ingestor(DocumentWriter(Store(state_db), files))
    worker = FolderWorker(ingestor, conn.send)
    try:
        while _handle_messages(conn, worker):
            worker.step()
        conn.send(Stop())  # acknowledged: nothing is half-done
    except (EOFError, BrokenPipeError):
        pass  # the daemon died: a batch in progress has finished; the rest stays in the folders
    finally:
        worker.close()
        ingestor.close()


def _handle_messages(conn: Connection, worker: FolderWorker) -> bool:
    """Wait up to a tick for messages (not at all while files are queued); False on Stop."""
    timeout = 0.0 if worker.busy() else worker.tick_interval()
    while conn.poll(timeout):
        timeout = 0.0
        message = conn.recv()
        if isinstance(message, Stop):
            return False
        if isinstance(message, Plan):
            worker.configure(message)
        elif isinstance(message, IngestRequest):
            conn.send(worker.ingest(message))
            worker.report()
    return True
