"""The daemon's side of the configured folders: it runs the folder worker process (which
watches, settles and ingests: :mod:`aicoderd.daemon.folder_worker`), sends it the plan and the
files handed over by ``aicoder ingest``, and keeps the counts it reports for the status. The
event loop only ever reads a few small messages, so the API stays responsive in a burst."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import subprocess
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from aicoderd import children, log
from aicoderd.config import FolderConfig, Settings
from aicoderd.daemon.folder_messages import (
    FolderPlan,
    Ingested,
    IngestRequest,
    Mode,
    Outcome,
    Plan,
    Progress,
    Stop,
    Target,
)
from aicoderd.errors import AicoderError
from aicoderd.sources.extract_limits import ExtractLimits
from aicoderd.sources.folders import walk

logger = log.get(__name__)

CLI_SOURCE = "cli"
START_TIMEOUT = 120.0  # a spawned interpreter importing the extractors, on a loaded machine
RESTART_DELAY = 1.0
WORKER_MAIN = children.LEAN + "from aicoderd.daemon.folder_worker import main; main()"


def source_name(folder: FolderConfig) -> str:
    return f"folder:{folder.path}"


class FolderSet:
    """The folder worker process, seen from the event loop: plan, counts, CLI batches."""

    def __init__(
        self,
        settings: Settings,
        worker_args: tuple[Path, Path, str, str],
        limits: Callable[[], ExtractLimits],
        on_batch: Callable[[], None],
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.settings = settings
        self.limits = limits
        self.on_batch = on_batch  # events were written by the worker process
        self.on_change = on_change  # its counts (pending files, watcher) changed
        self.watcher_kind = "none"
        self.cli_in_flight = 0
        self._args = worker_args  # state db, documents dir, log level, log format
        self._proc: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        self._generation = itertools.count(1)
        self._plan: Plan | None = None
        self._progress: Progress | None = None
        self._configured: asyncio.Future[Any] | None = None
        self._requests: dict[int, asyncio.Future[Ingested]] = {}
        self._request_ids = itertools.count(1)
        self._gone = asyncio.Event()
        self._stopped = asyncio.Event()
        self._stopping = False

    # -- lifecycle ---------------------------------------------------------------------------

    def make_inboxes(self) -> None:
        """Create the consume folders (the user's inbox among them); mirrors are never made."""
        for folder in self.settings.folders:
            if folder.mode == "consume":
                folder.path.mkdir(parents=True, exist_ok=True)

    async def start(self) -> str:
        """Start the worker and wait until it watches the folders (after its first walk)."""
        self.make_inboxes()
        ours, theirs = socket.socketpair()
        with theirs:
            self._proc = await asyncio.to_thread(_spawn, theirs.fileno(), self._args)
        self._conn = Connection(ours.detach())
        self._gone.clear()
        self._stopped.clear()
        asyncio.get_running_loop().add_reader(self._conn.fileno(), self._readable)
        await self._configure()
        return self.watcher_kind

    async def _configure(self) -> None:
        if self._conn is None:
            return  # the worker is being restarted: it gets the current plan then
        self._plan = plan(self.settings, next(self._generation), self.limits())
        self._configured = asyncio.get_running_loop().create_future()
        self._send(self._plan)
        gone: asyncio.Future[Any] = asyncio.ensure_future(self._gone.wait())
        try:
            await asyncio.wait(
                [self._configured, gone], timeout=START_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            gone.cancel()

    async def stop(self) -> None:
        """Ask the worker to stop: it finishes the batch in progress, nothing more."""
        self._stopping = True
        if self._conn is not None and not self._gone.is_set():
            self._send(Stop())

    async def drain(self) -> None:
        """Wait for the worker to stop (queued files simply stay in their folder)."""
        if self._proc is not None and not self._gone.is_set():
            await self._stopped.wait()

    async def close(self) -> None:
        """After :meth:`drain` (or its timeout): the process is gone, or made to go."""
        proc, self._proc = self._proc, None
        if proc is not None:
            await asyncio.to_thread(_join, proc)
        self._disconnect()

    async def reconfigure(self, settings: Settings) -> None:
        def shape(s: Settings) -> Any:
            return [f.model_dump() for f in s.folders], s.ingest.model_dump()

        changed = shape(self.settings) != shape(settings)
        self.settings = settings
        if changed:
            self.make_inboxes()
            await self._configure()

    async def run(self) -> None:
        """Restart the worker whenever it dies (files in progress are re-run from their folder:
        storing is idempotent)."""
        while True:
            await self._gone.wait()
            if self._stopping:
                return
            proc = self._proc
            await self.close()  # reaped: its exit code is known
            exitcode = proc.returncode if proc is not None else None
            logger.error("ingest.process_died", exitcode=exitcode, action="restarting")
            await asyncio.sleep(RESTART_DELAY)
            await self.start()

    def status(self) -> list[dict[str, Any]]:
        progress = self._progress
        counts = progress.pending if progress is not None and self._current(progress) else ()
        return [
            {"path": str(f.path), "mode": f.mode, "pending": counts[i] if i < len(counts) else 0}
            for i, f in enumerate(self.settings.folders)
        ]

    # -- messages ----------------------------------------------------------------------------

    def _current(self, progress: Progress) -> bool:
        """Counts of the plan last sent (not of the folders before a reload)."""
        return self._plan is not None and progress.generation == self._plan.generation

    def _send(self, message: object) -> None:
        assert self._conn is not None
        try:
            self._conn.send(message)
        except OSError:
            self._lost()

    def _readable(self) -> None:
        """The worker wrote: read what is there (small messages: counts and outcomes)."""
        conn = self._conn
        try:
            while conn is not None and conn.poll():
                self._receive(conn.recv())
        except (EOFError, OSError):
            self._lost()

    def _receive(self, message: object) -> None:
        if isinstance(message, Progress):
            self._progress = message
            self.watcher_kind = message.watcher
            configured = self._configured
            if self._current(message) and configured is not None and not configured.done():
                configured.set_result(None)
            if message.batches:
                self.on_batch()
            else:
                self.on_change()
        elif isinstance(message, Ingested):
            self.on_batch()  # before the caller hears: what it asks next includes the batch
            future = self._requests.pop(message.id, None)
            if future is not None and not future.done():
                future.set_result(message)
        elif isinstance(message, Stop):
            self._stopped.set()

    def _lost(self) -> None:
        """The worker is gone (died, or stopped and closed its end)."""
        self._disconnect()
        self._stopped.set()
        self._progress = None
        for future in self._requests.values():
            if not future.done():
                future.set_exception(AicoderError("the ingest worker process died"))
        self._requests.clear()
        self._gone.set()

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(ValueError, OSError):
                asyncio.get_running_loop().remove_reader(conn.fileno())
            conn.close()

    # -- aicoder ingest ----------------------------------------------------------------------

    async def ingest_paths(self, paths: list[Path]) -> list[dict[str, Any]]:
        """Files handed over by ``aicoder ingest``: copied in, the originals left alone."""
        targets: list[Target] = []
        mode: Mode = "copy"
        for p in paths:
            p = p.expanduser().absolute()
            if p.is_dir() and not p.is_symlink():
                found = await asyncio.to_thread(_walk_all, p)
                targets += [Target(CLI_SOURCE, mode, p, c) for c in found]
            else:
                targets.append(Target(CLI_SOURCE, mode, p.parent, p))
        self.cli_in_flight += len(targets)
        outcomes: list[Outcome] = []
        try:
            size = self.settings.ingest.batch_size
            for i in range(0, len(targets), size):
                outcomes += await self._ingest(targets[i : i + size])
        finally:
            self.cli_in_flight -= len(targets)
        return [vars(o) for o in outcomes]

    async def _ingest(self, targets: list[Target]) -> list[Outcome]:
        if self._conn is None:
            raise AicoderError("the ingest worker process is not running")
        request = IngestRequest(next(self._request_ids), targets, self.limits())
        future: asyncio.Future[Ingested] = asyncio.get_running_loop().create_future()
        self._requests[request.id] = future
        self._send(request)
        answer = await future
        if answer.outcomes is None:
            raise AicoderError("the ingest batch failed (see the daemon log)")
        return answer.outcomes


def plan(settings: Settings, generation: int, limits: ExtractLimits) -> Plan:
    folders = tuple(
        FolderPlan(
            path=f.path,
            mode=f.mode,
            recursive=f.recursive,
            settle=settings.settle_for(f),
            source=source_name(f),
        )
        for f in settings.folders
    )
    return Plan(
        generation=generation,
        folders=folders,
        extra_junk=tuple(settings.ingest.ignore_patterns),
        batch_size=settings.ingest.batch_size,
        rescan_interval=settings.ingest.rescan_interval_seconds,
        stuck_after=settings.ingest.stuck_after_seconds,
        limits=limits,
    )


def _spawn(fd: int, args: tuple[Path, Path, str, str]) -> subprocess.Popen[bytes]:
    """A fresh interpreter (not a fork of the daemon, nor multiprocessing, which would add its
    resource-tracker process) running :func:`folder_worker.main` on one end of a socket pair."""
    return subprocess.Popen(
        children.python("-c", WORKER_MAIN, str(fd), *map(str, args)),
        pass_fds=[fd],
        stdin=subprocess.DEVNULL,
        env=children.environment(),
    )


def _join(proc: subprocess.Popen[bytes]) -> None:
    try:
        proc.wait(timeout=2.0)
    except subprocess.TimeoutExpired:
        logger.error("ingest.worker_killed", reason="did not stop in time")
        proc.kill()
        proc.wait(timeout=5.0)


def _walk_all(root: Path) -> list[Path]:
    return [c.path for c in walk(root, recursive=True)]
