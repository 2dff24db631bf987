"""Drop and mirror folders: decide when a file is complete, and nothing more.

Events are hints, the directory is the truth: watchdog events (from its observer thread) and a
periodic full walk both feed one stability tracker on the asyncio loop. A file is handed on once
its size and mtime have not changed for the settle period; processing is someone else's job.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

from aicoderd import log
from aicoderd.sources.kinds import is_junk

logger = log.get(__name__)


@dataclass(frozen=True)
class Candidate:
    """A complete file (or one to refuse: a link, a device) found in a watched folder."""

    root: Path
    path: Path
    size: int
    mtime_ns: int


def walk(root: Path, *, recursive: bool, extra_junk: tuple[str, ...] = ()) -> Iterator[Candidate]:
    """Every non-junk entry that is not a directory, without following any symlink."""
    stack = [root]
    while stack:
        directory = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError as exc:
            logger.warning("folder.unreadable", path=str(directory), error=str(exc))
            continue
        for entry in entries:
            if is_junk(entry.name, extra_junk):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode):
                if recursive:
                    stack.append(Path(entry.path))
                continue
            yield Candidate(root, Path(entry.path), st.st_size, st.st_mtime_ns)


@dataclass
class _Tracked:
    size: int  # -1: not looked at yet
    mtime_ns: int
    due: float
    first_seen: float


def lstat_many(paths: list[Path]) -> dict[Path, os.stat_result | None]:
    """One ``lstat`` per path (None when gone); run in a worker thread, off the event loop."""
    out: dict[Path, os.stat_result | None] = {}
    for path in paths:
        try:
            out[path] = path.lstat()
        except OSError:
            out[path] = None
    return out


@dataclass
class FolderWatch:
    """Stability tracking for one folder.

    State lives on one thread (the event loop); the system calls it needs are made by the
    caller, in a worker thread, between :meth:`due` and :meth:`settle` — a burst of events must
    not stall the API. An event only (re)starts a file's timer; the size and mtime are compared
    when the timer runs out.
    """

    root: Path
    recursive: bool
    settle: float
    on_ready: Callable[[list[Candidate]], None]
    extra_junk: tuple[str, ...] = ()
    stuck_after: float = 3600.0
    tracked: dict[Path, _Tracked] = field(default_factory=dict)
    in_flight: set[Path] = field(default_factory=set)
    dirty: set[Path] = field(default_factory=set)
    _stuck_logged: set[Path] = field(default_factory=set)

    @property
    def pending(self) -> int:
        return len(self.tracked) + len(self.in_flight)

    def accepts(self, path: Path | str) -> bool:
        """Inside this folder (at the allowed depth) and no junk name on the way."""
        text, root = os.fspath(path), os.fspath(self.root)
        if not text.startswith(root) or text[len(root) : len(root) + 1] != os.sep:
            return False
        parts = text[len(root) + 1 :].split(os.sep)
        if not parts[0] or (not self.recursive and len(parts) > 1):
            return False
        return not any(is_junk(p, self.extra_junk) for p in parts)

    def touch(self, path: Path) -> None:
        """Something happened to ``path``: (re)start its settle timer."""
        if not self.accepts(path):
            return
        if path in self.in_flight:
            self.dirty.add(path)
            return
        now = time.monotonic()
        t = self.tracked.get(path)
        if t is None:
            self.tracked[path] = _Tracked(-1, -1, now, now)  # looked at on the next tick
        elif t.size >= 0:
            t.due = now + self.settle

    def add_scanned(self, found: list[Candidate]) -> None:
        """Results of a full walk: files not yet known start their settle timer."""
        now = time.monotonic()
        for cand in found:
            if cand.path in self.in_flight or cand.path in self.tracked:
                continue
            self.tracked[cand.path] = _Tracked(cand.size, cand.mtime_ns, now + self.settle, now)

    def due(self) -> list[Path]:
        now = time.monotonic()
        return [path for path, t in self.tracked.items() if t.due <= now]

    def settle_due(self, stats: dict[Path, os.stat_result | None]) -> None:
        """Hand on the files whose size and mtime held still for the settle period."""
        now = time.monotonic()
        ready: list[Candidate] = []
        for path, st in stats.items():
            t = self.tracked.get(path)
            if t is None or t.due > now:
                continue  # handed on already, or an event restarted its timer meanwhile
            if st is None or stat.S_ISDIR(st.st_mode):
                del self.tracked[path]
                continue
            if (st.st_size, st.st_mtime_ns) != (t.size, t.mtime_ns):
                self.tracked[path] = _Tracked(
                    st.st_size, st.st_mtime_ns, now + self.settle, t.first_seen
                )
                self._warn_if_stuck(path, t, now)
                continue
            del self.tracked[path]
            self.in_flight.add(path)
            ready.append(Candidate(self.root, path, st.st_size, st.st_mtime_ns))
        if ready:
            self.on_ready(ready)

    def tick(self) -> None:
        """:meth:`due` and :meth:`settle_due` in one call, with the system calls inline."""
        self.settle_due(lstat_many(self.due()))

    def done(self, path: Path) -> None:
        """Processing of ``path`` finished; a change seen meanwhile makes it a candidate again."""
        self.in_flight.discard(path)
        self._stuck_logged.discard(path)
        if path in self.dirty:
            self.dirty.discard(path)
            self.touch(path)

    def _warn_if_stuck(self, path: Path, t: _Tracked, now: float) -> None:
        if now - t.first_seen > self.stuck_after and path not in self._stuck_logged:
            self._stuck_logged.add(path)
            logger.warning(
                "folder.file_never_settles", path=str(path), seconds=round(now - t.first_seen)
            )


@dataclass(frozen=True)
class FsEvent:
    path: Path
    is_dir: bool
    deleted: bool


# Only the events that can change what we ingest: fewer inotify events per file means fewer
# queue overflows in a burst (opened / closed-no-write are never asked for).
_EVENT_TYPES: list[type[FileSystemEvent]] = [
    FileCreatedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileClosedEvent,
    FileDeletedEvent,
    DirCreatedEvent,
    DirMovedEvent,
    DirDeletedEvent,
]


class _Handler(FileSystemEventHandler):
    """Collects events in watchdog's thread; the event loop drains them in batches."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[FsEvent] = []

    def on_any_event(self, event: FileSystemEvent) -> None:
        deleted = event.event_type == "deleted"
        with self._lock:
            for raw in (event.src_path, getattr(event, "dest_path", "")):
                if raw:
                    path = Path(os.fsdecode(raw))
                    # A move's source is gone, like a deletion.
                    gone = deleted or (event.event_type == "moved" and raw == event.src_path)
                    self._events.append(FsEvent(path, event.is_directory, gone))

    def drain(self) -> list[FsEvent]:
        """The events since the last drain, one per path (the last one counts)."""
        with self._lock:
            events, self._events = self._events, []
        return list({e.path: e for e in events}.values())


class _OverflowSignal(logging.Handler):
    """watchdog reports an inotify queue overflow only in its log; lost events mean a rescan."""

    def __init__(self, callback: Callable[[], None]) -> None:
        super().__init__(logging.WARNING)
        self._callback = callback

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in record.getMessage().lower():
            self._callback()


class Watcher:
    """One watchdog observer for all folders; falls back to polling when inotify runs out."""

    def __init__(self, on_overflow: Callable[[], None]) -> None:
        self._handler = _Handler()
        self._observer: Any = None
        self._overflow = _OverflowSignal(on_overflow)

    def drain(self) -> list[FsEvent]:
        return self._handler.drain()

    def start(self, roots: list[tuple[Path, bool]]) -> str:
        logging.getLogger("watchdog").addHandler(self._overflow)
        try:
            self._observer = self._schedule(Observer(), roots)
            return "inotify"
        except OSError as exc:
            logger.error(
                "folder.inotify_unavailable",
                error=str(exc),
                hint="raise fs.inotify.max_user_watches / max_user_instances; polling instead",
            )
            self._observer = self._schedule(PollingObserver(timeout=2), roots)
            return "polling"

    def _schedule(self, observer: Any, roots: list[tuple[Path, bool]]) -> Any:
        for root, recursive in roots:
            observer.schedule(
                self._handler, str(root), recursive=recursive, event_filter=_EVENT_TYPES
            )
        observer.daemon = True
        observer.start()
        return observer

    def stop(self) -> None:
        logging.getLogger("watchdog").removeHandler(self._overflow)
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None
