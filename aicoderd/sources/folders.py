"""Drop and mirror folders: decide when a file is complete, and nothing more.

Events are hints, the directory is the truth: watchdog events (from its observer thread) and a
periodic full walk both feed one stability tracker on the asyncio loop. A file is handed on once
its size and mtime have not changed for the settle period; processing is someone else's job.
"""

from __future__ import annotations

import asyncio
import os
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from watchdog.events import FileSystemEvent, FileSystemEventHandler
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
    size: int
    mtime_ns: int
    due: float
    first_seen: float


@dataclass
class FolderWatch:
    """Stability tracking for one folder. All methods run on the event loop thread."""

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

    def accepts(self, path: Path) -> bool:
        try:
            rel = path.relative_to(self.root)
        except ValueError:
            return False
        parts = rel.parts
        if not parts or (not self.recursive and len(parts) > 1):
            return False
        return not any(is_junk(p, self.extra_junk) for p in parts)

    def touch(self, path: Path) -> None:
        """Something happened to ``path``: (re)start its settle timer."""
        if not self.accepts(path):
            return
        if path in self.in_flight:
            self.dirty.add(path)
            return
        try:
            st = path.lstat()
        except FileNotFoundError:
            self.tracked.pop(path, None)
            return
        except OSError:
            return
        if stat.S_ISDIR(st.st_mode):
            return
        now = time.monotonic()
        prev = self.tracked.get(path)
        first = prev.first_seen if prev else now
        self.tracked[path] = _Tracked(st.st_size, st.st_mtime_ns, now + self.settle, first)

    def add_scanned(self, found: list[Candidate]) -> None:
        """Results of a full walk: files not yet known start their settle timer."""
        now = time.monotonic()
        for cand in found:
            if cand.path in self.in_flight or cand.path in self.tracked:
                continue
            self.tracked[cand.path] = _Tracked(cand.size, cand.mtime_ns, now + self.settle, now)

    def tick(self) -> None:
        """Hand on the files whose size and mtime held still for the settle period."""
        now = time.monotonic()
        ready: list[Candidate] = []
        for path, t in list(self.tracked.items()):
            if t.due > now:
                continue
            try:
                st = path.lstat()
            except OSError:
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


class _Handler(FileSystemEventHandler):
    def __init__(self, loop: asyncio.AbstractEventLoop, sink: Callable[[str, bool], None]):
        self._loop = loop
        self._sink = sink

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        for raw in (event.src_path, getattr(event, "dest_path", "")):
            if raw:
                path = os.fsdecode(raw)
                self._loop.call_soon_threadsafe(self._sink, path, event.is_directory)


class Watcher:
    """One watchdog observer for all folders; falls back to polling when inotify runs out."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sink: Callable[[str, bool], None]):
        self._loop = loop
        self._sink = sink
        self._observer: Any = None

    def start(self, roots: list[tuple[Path, bool]]) -> str:
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
        handler = _Handler(self._loop, self._sink)
        for root, recursive in roots:
            observer.schedule(handler, str(root), recursive=recursive)
        observer.daemon = True
        observer.start()
        return observer

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None
