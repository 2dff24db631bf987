"""Wires the configured folders to ingestion: watcher events and rescans feed each folder's
stability tracker; complete files go through one ingest queue in batches, in a worker thread,
so the event loop (and the API) stays responsive during a burst."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aicoderd import log
from aicoderd.config import FolderConfig, Settings
from aicoderd.daemon.ingest import IngestProcess, Mode, Target
from aicoderd.sources.extract import ExtractLimits
from aicoderd.sources.folders import (
    Candidate,
    FolderWatch,
    FsEvent,
    Watcher,
    lstat_many,
    walk,
)
from aicoderd.store import Store

logger = log.get(__name__)

CLI_SOURCE = "cli"


def source_name(folder: FolderConfig) -> str:
    return f"folder:{folder.path}"


class FolderSet:
    def __init__(
        self,
        store: Store,
        ingestor: IngestProcess,
        settings: Settings,
        limits: Callable[[], ExtractLimits],
        on_batch: Callable[[], None],
    ) -> None:
        self.store = store
        self.ingestor = ingestor
        self.limits = limits
        self.on_batch = on_batch  # events were written by the ingest process
        self.settings = settings
        self.watches: list[tuple[FolderConfig, FolderWatch]] = []
        self.watcher_kind = "none"
        self.cli_in_flight = 0
        self._queue: asyncio.Queue[tuple[FolderConfig, Candidate]] = asyncio.Queue()
        self._watcher: Watcher | None = None
        self._busy = asyncio.Lock()
        self._rescan_now = asyncio.Event()

    # -- lifecycle ---------------------------------------------------------------------------

    def make_inboxes(self) -> None:
        """Create the consume folders (the user's inbox among them); mirrors are never made."""
        for folder in self.settings.folders:
            if folder.mode == "consume":
                folder.path.mkdir(parents=True, exist_ok=True)

    async def start(self) -> str:
        loop = asyncio.get_running_loop()
        extra = tuple(self.settings.ingest.ignore_patterns)
        self.watches = []
        self.make_inboxes()
        for folder in self.settings.folders:
            watch = FolderWatch(
                root=folder.path,
                recursive=folder.recursive,
                settle=self.settings.settle_for(folder),
                on_ready=functools.partial(self._enqueue, folder),
                extra_junk=extra,
                stuck_after=self.settings.ingest.stuck_after_seconds,
            )
            self.watches.append((folder, watch))

        def overflowed() -> None:  # in watchdog's thread
            loop.call_soon_threadsafe(self._overflowed)

        self._watcher = Watcher(on_overflow=overflowed)
        roots = [(f.path, f.recursive) for f, _ in self.watches if f.path.is_dir()]
        for folder, _ in self.watches:
            if not folder.path.is_dir():  # a mirror folder removed since the config was read
                logger.error("folder.missing", path=str(folder.path))
        self.watcher_kind = await asyncio.to_thread(self._watcher.start, roots)
        await self.rescan()
        return self.watcher_kind

    async def stop(self) -> None:
        if self._watcher is not None:
            await asyncio.to_thread(self._watcher.stop)
            self._watcher = None

    async def drain(self) -> None:
        """Wait for the batch in progress (queued files simply stay in their folder)."""
        async with self._busy:
            pass

    async def reconfigure(self, settings: Settings) -> None:
        def shape(s: Settings) -> Any:
            return [f.model_dump() for f in s.folders], s.ingest.model_dump()

        changed = shape(self.settings) != shape(settings)
        self.settings = settings
        if changed:
            await self.stop()
            await self.start()

    def status(self) -> list[dict[str, Any]]:
        return [
            {"path": str(f.path), "mode": f.mode, "pending": w.pending} for f, w in self.watches
        ]

    # -- events and scans --------------------------------------------------------------------

    def _overflowed(self) -> None:
        logger.warning("folder.events_lost", action="rescanning")
        self._rescan_now.set()

    def _dispatch(self, events: list[FsEvent]) -> None:
        """Route a batch of watcher events to the folders' trackers (no system calls here)."""
        gone: dict[int, list[str]] = {}
        for event in events:
            for i, (folder, watch) in enumerate(self.watches):
                if not watch.accepts(event.path):
                    continue
                if event.is_dir:
                    self._rescan_now.set()  # a directory moved in or out: the walk is the truth
                elif event.deleted and folder.mode == "mirror":
                    gone.setdefault(i, []).append(str(event.path))
                else:
                    watch.touch(event.path)
        for i, uris in gone.items():
            asyncio.get_running_loop().create_task(self._retire(self.watches[i][0], uris))

    async def _tick(self) -> None:
        if self._watcher is not None:
            events = self._watcher.drain()
            for i in range(0, len(events), 256):
                self._dispatch(events[i : i + 256])
                await asyncio.sleep(0)  # let the API answer between slices of a burst
        for _, watch in self.watches:
            due = watch.due()
            if due:
                watch.settle_due(await asyncio.to_thread(lstat_many, due))

    async def rescan(self) -> None:
        for folder, watch in self.watches:
            extra = tuple(self.settings.ingest.ignore_patterns)
            found = await asyncio.to_thread(_walk_all, folder.path, folder.recursive, extra)
            if folder.mode == "mirror":
                found = await self._mirror_diff(folder, found)
            watch.add_scanned(found)

    async def _mirror_diff(self, folder: FolderConfig, found: list[Candidate]) -> list[Candidate]:
        """Keep new and changed files; retire the places of files that are gone."""
        known = await asyncio.to_thread(self.store.file_locations, source_name(folder))
        seen = {str(c.path) for c in found}
        gone = [uri for uri in known if uri not in seen]
        if gone:
            await self._retire(folder, gone)
        return [c for c in found if known.get(str(c.path)) != (c.size, c.mtime_ns)]

    async def _retire(self, folder: FolderConfig, uris: list[str]) -> None:
        n = await asyncio.to_thread(self.store.retire_locations, source_name(folder), uris)
        if n:
            logger.info("mirror.retired", folder=str(folder.path), files=n)
            self.store.add_event("documents.retired", {"folder": str(folder.path), "files": n})

    async def run(self) -> None:
        """Tick the trackers, rescan on schedule, and feed the ingest queue."""
        consumer = asyncio.get_running_loop().create_task(self._consume())
        try:
            next_scan = (
                asyncio.get_running_loop().time() + self.settings.ingest.rescan_interval_seconds
            )
            while True:
                await self._tick()
                now = asyncio.get_running_loop().time()
                if self._rescan_now.is_set() or now >= next_scan:
                    self._rescan_now.clear()
                    next_scan = now + self.settings.ingest.rescan_interval_seconds
                    await self.rescan()
                await asyncio.sleep(self._tick_interval())
        finally:
            consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await consumer

    def _tick_interval(self) -> float:
        settles = [w.settle for _, w in self.watches] or [1.0]
        return max(0.05, min(0.25, min(settles) / 4))

    # -- ingestion ---------------------------------------------------------------------------

    def _enqueue(self, folder: FolderConfig, ready: list[Candidate]) -> None:
        for cand in ready:
            self._queue.put_nowait((folder, cand))

    async def _consume(self) -> None:
        size = self.settings.ingest.batch_size
        while True:
            items = [await self._queue.get()]
            while len(items) < size and not self._queue.empty():
                items.append(self._queue.get_nowait())
            targets = [Target(source_name(f), f.mode, f.path, c.path) for f, c in items]
            async with self._busy:
                try:
                    await self.ingestor.run(targets, self.limits())
                    self.on_batch()
                except Exception:
                    logger.exception("ingest.batch_failed", files=len(targets))
                finally:
                    for folder, cand in items:
                        self._watch_for(folder).done(cand.path)

    def _watch_for(self, folder: FolderConfig) -> FolderWatch:
        for f, w in self.watches:
            if f is folder:
                return w
        # The folder was reconfigured away while its batch ran: a throwaway tracker.
        return FolderWatch(folder.path, folder.recursive, 0.0, _ignore)

    async def ingest_paths(self, paths: list[Path]) -> list[dict[str, Any]]:
        """Files handed over by ``aicoder ingest``: copied in, the originals left alone."""
        targets: list[Target] = []
        mode: Mode = "copy"
        for p in paths:
            p = p.expanduser().absolute()
            if p.is_dir() and not p.is_symlink():
                found = await asyncio.to_thread(_walk_all, p, True, ())
                targets += [Target(CLI_SOURCE, mode, p, c.path) for c in found]
            else:
                targets.append(Target(CLI_SOURCE, mode, p.parent, p))
        self.cli_in_flight += len(targets)
        outcomes = []
        try:
            size = self.settings.ingest.batch_size
            for i in range(0, len(targets), size):
                async with self._busy:
                    batch = await self.ingestor.run(targets[i : i + size], self.limits())
                self.on_batch()
                outcomes += [vars(o) for o in batch]
        finally:
            self.cli_in_flight -= len(targets)
        return outcomes


def _walk_all(root: Path, recursive: bool, extra: tuple[str, ...]) -> list[Candidate]:
    return list(walk(root, recursive=recursive, extra_junk=extra))


def _ignore(ready: list[Candidate]) -> None:
    return None
