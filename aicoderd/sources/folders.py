"""Drop and mirror folders: decide when a file is complete, and nothing more.

Events are hints, the directory is the truth: inotify events (drained on each tick of the
folder worker) and a periodic full walk both feed one stability tracker. A file is handed on
once its size and mtime have not changed for the settle period and inotify does not know it to
be open for writing (:mod:`aicoderd.sources.inotify`); processing is someone else's job.
Without inotify (polling) the settle period alone decides.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from aicoderd import log
from aicoderd.sources.inotify import FsEvent, Inotify
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
    """One ``lstat`` per path (None when gone)."""
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

    State lives on one thread (the folder worker's); the system calls it needs are made
    between :meth:`due` and :meth:`settle_due` (:meth:`tick` does both). An event only
    (re)starts a file's timer; the size and mtime are compared when the timer runs out. A file
    an event says is open for writing waits for the event that says it was closed, however
    long its writer pauses. Time comes from ``clock`` (seconds, monotonic).
    """

    root: Path
    recursive: bool
    settle: float
    on_ready: Callable[[list[Candidate]], None]
    extra_junk: tuple[str, ...] = ()
    stuck_after: float = 3600.0
    clock: Callable[[], float] = time.monotonic
    tracked: dict[Path, _Tracked] = field(default_factory=dict)
    in_flight: set[Path] = field(default_factory=set)
    dirty: set[Path] = field(default_factory=set)
    writing: set[Path] = field(default_factory=set)  # open for writing, as inotify tells
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

    def touch(self, path: Path, writing: bool = False) -> None:
        """Something happened to ``path``: (re)start its settle timer; ``writing``: it is still
        open for writing."""
        if not self.accepts(path):
            return
        if writing:
            self.writing.add(path)
        else:
            self.writing.discard(path)
        if path in self.in_flight:
            self.dirty.add(path)
            return
        now = self.clock()
        t = self.tracked.get(path)
        if t is None:
            self.tracked[path] = _Tracked(-1, -1, now, now)  # looked at on the next tick
        elif t.size >= 0:
            t.due = now + self.settle

    def writers_unknown(self) -> None:
        """Events were lost: who is writing what is not known any more (settle time only)."""
        self.writing.clear()

    def add_scanned(self, found: list[Candidate]) -> None:
        """Results of a full walk: files not yet known start their settle timer."""
        now = self.clock()
        for cand in found:
            if cand.path in self.in_flight or cand.path in self.tracked:
                continue
            self.tracked[cand.path] = _Tracked(cand.size, cand.mtime_ns, now + self.settle, now)

    def due(self) -> list[Path]:
        now = self.clock()
        return [path for path, t in self.tracked.items() if t.due <= now]

    def settle_due(self, stats: dict[Path, os.stat_result | None]) -> None:
        """Hand on the files whose size and mtime held still for the settle period and that
        no writer holds open."""
        now = self.clock()
        ready: list[Candidate] = []
        for path, st in stats.items():
            t = self.tracked.get(path)
            if t is None or t.due > now:
                continue  # handed on already, or an event restarted its timer meanwhile
            if st is None or stat.S_ISDIR(st.st_mode):
                del self.tracked[path]
                self.writing.discard(path)
                continue
            changed = (st.st_size, st.st_mtime_ns) != (t.size, t.mtime_ns)
            if changed or path in self.writing:
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
                "folder.file_never_settles",
                path=str(path),
                seconds=round(now - t.first_seen),
                why="still open for writing" if path in self.writing else "still changing",
            )


class Watcher:
    """inotify on every folder tree, drained by the caller; "polling" (the caller rescans
    often) when inotify is unavailable or out of watches."""

    def __init__(self, on_overflow: Callable[[], None], extra_junk: tuple[str, ...] = ()) -> None:
        self._on_overflow = on_overflow
        self._extra = extra_junk
        self._inotify: Inotify | None = None

    @property
    def kind(self) -> str:
        if self._inotify is None or self._inotify.degraded:
            return "polling"
        return "inotify"

    def start(self, roots: list[tuple[Path, bool, bool]]) -> str:
        """Watch each ``(root, recursive, opens)``; ``opens`` for folders whose files are taken
        away (a creator still writing a file is then known before its first write)."""
        try:
            self._inotify = Inotify(skip=lambda name: is_junk(name, self._extra))
            for root, recursive, opens in roots:
                self._inotify.add_tree(root, recursive, opens)
        except OSError as exc:
            logger.error(
                "folder.inotify_unavailable",
                error=str(exc),
                hint="raise fs.inotify.max_user_watches / max_user_instances; polling instead",
            )
            self.stop()
        return self.kind

    def drain(self) -> list[FsEvent]:
        if self._inotify is None:
            return []
        events, overflow = self._inotify.drain()
        if overflow:
            self._on_overflow()
        return events

    def stop(self) -> None:
        if self._inotify is not None:
            self._inotify.close()
            self._inotify = None
