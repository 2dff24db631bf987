"""The daemon: start-up, main loop, shutdown — as separate steps.

Start-up registers each part's clean-up on an exit stack as the part starts, so a failure half
way unwinds what had started (as uvicorn's server does); shutdown unwinds the same stack.
Signals only set flags or schedule work: SIGTERM/SIGINT request a stop (a second SIGINT forces
exit), SIGHUP reloads the configuration and keeps the old one if the new is invalid.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from aicoderd import __version__, fsutil, log, protocol
from aicoderd.config import Settings, load_config
from aicoderd.corpus import snapshot as corpus_snapshot
from aicoderd.daemon import job_kinds, schemas, sdnotify
from aicoderd.daemon.feedback_follower import FeedbackFollower
from aicoderd.daemon.folder_supervisor import FolderSet
from aicoderd.daemon.pipeline import CorpusTrigger, ModelPipeline
from aicoderd.daemon.runner import JobQueue, JobRunner, prune_logs, read_log
from aicoderd.daemon.scheduler import SourceScheduler
from aicoderd.daemon.server import CappedSite, bind_socket, build_app
from aicoderd.errors import AicoderError, ConfigError
from aicoderd.sources.extract_limits import ExtractLimits
from aicoderd.store import Store

logger = log.get("aicoderd")
STATUS_MAX_AGE = 0.2  # seconds a status may be answered again (status is a look, not a lock)
STATUS_STALE_OK = 2.0  # ...and, while a newer one is being made, at most this old


class Daemon:
    """Everything the daemon runs; the API reaches it through :class:`server.DaemonApi`."""

    def __init__(self, settings: Settings, config_path: Path | None) -> None:
        self.settings = settings
        self.config_path = config_path
        self.started = time.time()
        self.stopping = False
        self._stop = asyncio.Event()
        self._event_signal = asyncio.Event()
        self._stack = contextlib.AsyncExitStack()
        self._status_flights: dict[int, asyncio.Future[tuple[schemas.Status, bytes]]] = {}
        self._status_made = 0.0
        self._status_last: tuple[int, tuple[schemas.Status, bytes]] | None = None
        self._changes = 0  # bumped by every stored event and ingested batch
        self._pipeline_started = False
        self._last_prune = 0.0

    # -- start-up ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start every part; on failure, stop those already started and raise."""
        try:
            await self._start(self._stack)
        except BaseException:
            await self._stack.aclose()
            raise

    async def _start(self, stack: contextlib.AsyncExitStack) -> None:
        s = self.settings
        s.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        lock_fd = _lock(s.data_dir / "aicoderd.lock")
        stack.callback(os.close, lock_fd)
        loop = asyncio.get_running_loop()
        self.store = Store(s.state_db)
        stack.callback(self.store.close)

        def event_stored() -> None:  # may run in a worker thread
            loop.call_soon_threadsafe(self._changed)

        self.store.on_event = event_stored
        self.store.events.add("daemon.started", {"version": __version__, "pid": os.getpid()})
        stack.callback(self.store.events.add, "daemon.stopped", {})
        job_kinds.load_plugins(s.jobs.plugins)
        self.jobs = JobQueue(self.store)
        requeued = self.jobs.requeue_interrupted(s.jobs.max_attempts)
        self.runner = JobRunner(self.store, lambda: self.settings)
        self.folders = FolderSet(
            s,
            worker_args=(s.state_db, s.documents_dir, s.log_level, s.log_format),
            limits=lambda: ExtractLimits.from_config(self.settings.ingest),
            on_batch=self._ingested,
            on_change=self._changed,
        )
        self.corpus_trigger = CorpusTrigger(
            self.store, self.jobs, lambda: self.settings, self.runner.wake
        )
        self.pipeline = ModelPipeline(
            self.store, self.jobs, lambda: self.settings, self.runner.wake
        )
        self._pipeline_started = True
        self.feedback = FeedbackFollower(self.store, s)
        self.scheduler = SourceScheduler(self.store, self.jobs, self.runner.wake)
        self.scheduler.start(s)
        stack.callback(self.scheduler.shutdown)
        # Before the socket: a client that sees it finds the inbox, and files it drops are
        # watched already (seen in the order they arrive, not in a walk's order).
        watcher = await self.folders.start()
        stack.push_async_callback(self.folders.close)
        sock = bind_socket(s.socket)
        stack.callback(_unlink_socket, s.socket)
        http = web.AppRunner(
            build_app(self),
            handle_signals=False,
            access_log=None,
            keepalive_timeout=s.api.idle_timeout_seconds,  # also bounds a silent new connection
        )
        await http.setup()
        stack.push_async_callback(http.cleanup)
        await CappedSite(http, sock, s.api.max_connections).start()
        tasks = [
            loop.create_task(coro)
            for coro in (
                self._make_private(),
                self.folders.run(),
                self.feedback.run(),
                self.runner.run_forever(),
                self.corpus_trigger.run(),
                self.pipeline.run(),
                self._housekeeping(),
                self._watchdog(),
            )
        ]
        stack.push_async_callback(_cancel, tasks)
        logger.info(
            "daemon.ready",
            version=__version__,
            socket=str(s.socket),
            data_dir=str(s.data_dir),
            watcher=watcher,
            requeued_jobs=requeued,
            folders=[str(f.path) for f in s.folders],
        )
        sdnotify.notify("READY=1\nSTATUS=ready")

    # -- main loop ---------------------------------------------------------------------------

    def request_stop(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        logger.info("daemon.stopping")
        self._stop.set()

    async def wait(self) -> None:
        await self._stop.wait()

    async def wait_for_event(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event_signal.wait(), timeout)
        self._event_signal.clear()

    async def _watchdog(self) -> None:
        interval = sdnotify.watchdog_interval()
        if interval is None:
            return
        while True:
            sdnotify.notify("WATCHDOG=1")
            await asyncio.sleep(interval)

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(5.0)
            status = await self.status()
            d, j = status.documents, status.jobs
            sdnotify.notify(
                f"STATUS={d.total} documents, {d.pending} pending, {d.failed} refused;"
                f" jobs queued {j.queued}, running {len(j.running)}"
            )
            if time.time() - self._last_prune > 600:
                self._last_prune = time.time()
                await asyncio.to_thread(self._prune)

    async def _make_private(self) -> None:
        """Raw documents are unredacted: the data is the user's alone (folders 0700, files
        0600). What an older release, a copy or a restore left readable is repaired."""
        repaired = await asyncio.to_thread(private_data, self.settings.data_dir)
        if repaired:
            logger.warning("data_dir.permissions_repaired", entries=repaired)
            self.store.events.add("data_dir.permissions_repaired", {"entries": repaired})

    def _prune(self) -> None:
        self.store.events.prune(self.settings.events.retain)
        prune_logs(self.settings.job_logs_dir, self.settings.jobs.keep_logs)

    def _stored_counts(self) -> dict[str, Any]:
        """Everything status needs from SQLite and data_dir, in one worker-thread call."""
        return {
            "documents": self.store.documents.counts(),
            "jobs": self.store.jobs.counts(),
            "running": [
                schemas.RunningJob(id=j["id"], kind=j["kind"], progress=j["progress"])
                for j in self.store.jobs.find(protocol.RUNNING)
            ],
            "feedback_valid": self.store.feedback.count(),
            "feedback_invalid": self.store.counters.get("feedback.invalid"),
            "feedback_by_source": self.store.feedback.count_by_source(),
            "corpus": corpus_snapshot.summary(self.settings.corpus_dir),
            "sources": self.scheduler.read(),
        }

    def _ingested(self) -> None:
        """The folder worker stored a batch (its events are in the store): wake event
        followers, and let the corpus trigger look at the documents now."""
        self._changed()
        self.corpus_trigger.poke()

    # -- what the API asks ---------------------------------------------------------------------

    async def status(self) -> schemas.Status:
        return (await self._status_once())[0]

    async def status_body(self) -> bytes:
        """The status as JSON, made once for all the requests that arrived together."""
        return (await self._status_once())[1]

    async def _status_once(self) -> tuple[schemas.Status, bytes]:
        """Requests share the status: while nothing has changed since a look (no event stored,
        no batch ingested: what a client did is always in the answer it gets next), a look less
        than STATUS_MAX_AGE old is answered again, and one younger than STATUS_STALE_OK while a
        newer look is made; requests that must wait share one look. So 200 clients polling at
        once cost a few looks a second, not one per request."""
        generation, now = self._changes, time.monotonic()
        last = self._status_last
        current = last is not None and last[0] == generation
        flight = self._status_flights.get(generation)
        if flight is None and (not current or now - self._status_made >= STATUS_MAX_AGE):
            flight = self._status_flights[generation] = asyncio.ensure_future(
                self._make_status(generation)
            )
            flight.add_done_callback(lambda _: self._status_flights.pop(generation, None))
        if last is not None and current and now - self._status_made < STATUS_STALE_OK:
            return last[1]
        assert flight is not None
        return await asyncio.shield(flight)

    async def _make_status(self, generation: int) -> tuple[schemas.Status, bytes]:
        started = time.monotonic()
        status = await self._read_status()
        made = status, json.dumps(status.model_dump(mode="json")).encode()
        if self._status_last is None or self._status_last[0] <= generation:
            self._status_last, self._status_made = (generation, made), started
        return made

    def _changed(self) -> None:
        """Something the status shows changed: the next answer is a new look."""
        self._changes += 1
        self._event_signal.set()
        if self._pipeline_started:
            self.pipeline.poke()

    async def _read_status(self) -> schemas.Status:
        stored = await asyncio.to_thread(self._stored_counts)
        by_status = stored["documents"]["by_status"]
        folders = self.folders.status()
        return schemas.Status(
            version=__version__,
            uptime_s=round(time.time() - self.started, 3),
            pid=os.getpid(),
            watcher=self.folders.watcher_kind,
            documents=schemas.DocumentCounts(
                total=by_status.get("stored", 0),
                failed=by_status.get("failed", 0),
                retired=by_status.get("retired", 0),
                pending=sum(f["pending"] for f in folders) + self.folders.cli_in_flight,
                by_source=stored["documents"]["by_source"],
            ),
            feedback=schemas.FeedbackCounts(
                valid=stored["feedback_valid"],
                invalid=stored["feedback_invalid"],
                by_source=stored["feedback_by_source"],
            ),
            jobs=schemas.JobCounts(
                queued=stored["jobs"].get(protocol.QUEUED, 0),
                running=stored["running"],
                by_state=stored["jobs"],
            ),
            folders=[schemas.FolderStatus(**f) for f in folders],
            corpus=stored["corpus"],
            # the last looks (every few seconds): cost nothing here
            pipeline=self.pipeline.view.model_copy(update={"corpus": self.corpus_trigger.view()})
            if self.pipeline.view is not None
            else None,
            sources=self.scheduler.status(stored["sources"]),
        )

    def documents(
        self, status: str | None, source: str | None, limit: int, after: int
    ) -> list[dict[str, Any]]:
        return self.store.documents.page(status=status, source=source, limit=limit, after_id=after)

    def events_since(self, seq: int, limit: int) -> list[dict[str, Any]]:
        return self.store.events.since(seq, limit)

    def find_jobs(self, state: str | None, limit: int) -> list[dict[str, Any]]:
        return self.jobs.find(state, limit)

    def get_job(self, job_id: int) -> dict[str, Any]:
        return self.jobs.get(job_id)

    def submit_job(self, kind: str, params: dict[str, Any]) -> dict[str, Any]:
        job = self.jobs.submit(kind, params)
        self.runner.wake()
        return job

    async def cancel_job(self, job_id: int) -> dict[str, Any]:
        return await self.runner.cancel(job_id, self.settings.jobs.cancel_grace_seconds)

    def job_log(self, job_id: int, offset: int) -> tuple[bytes, int]:
        self.jobs.get(job_id)  # 404 for an unknown job
        return read_log(self.settings.job_logs_dir, job_id, offset)

    def sources(self) -> list[dict[str, Any]]:
        return [s.model_dump(mode="json") for s in self.scheduler.status(self.scheduler.read())]

    def fetch_source(self, name: str) -> dict[str, Any]:
        return self.scheduler.submit(name, force=True)

    async def ingest_paths(self, paths: list[Path]) -> list[dict[str, Any]]:
        return await self.folders.ingest_paths(paths)

    async def reload(self) -> list[str]:
        """Re-read the config; on success apply it, else keep the old one and say why."""
        try:
            new = await asyncio.to_thread(load_config, self.config_path)
        except ConfigError as exc:
            logger.error("config.reload_refused", problems=exc.problems)
            self.store.events.add("config.reload_refused", {"problems": exc.problems})
            return exc.problems
        for key in ("data_dir", "socket"):
            if getattr(new, key) != getattr(self.settings, key):
                logger.warning("config.needs_restart", key=key)
        log.configure(new.log_level, new.log_format)
        job_kinds.load_plugins(new.jobs.plugins)
        self.settings = new
        await self.folders.reconfigure(new)
        self.feedback.reconfigure(new)
        self.scheduler.configure(new)
        self.store.events.add("config.reloaded", {})
        logger.info("config.reloaded")
        return []

    # -- shutdown ----------------------------------------------------------------------------

    async def shutdown(self) -> None:
        """Stop taking work, let jobs and the batch in progress end (bounded), then unwind."""
        sdnotify.notify("STOPPING=1")
        timeout = self.settings.shutdown_timeout_seconds
        await self.folders.stop()
        grace = min(self.settings.jobs.cancel_grace_seconds, timeout / 2)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.runner.stop(grace), timeout / 2)
        with contextlib.suppress(TimeoutError):
            # An ingest batch in progress finishes; nothing is left half-written.
            await asyncio.wait_for(self.folders.drain(), timeout / 2)
        await self._stack.aclose()
        logger.info("daemon.stopped")


async def _cancel(tasks: list[asyncio.Task[Any]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _unlink_socket(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


# What the daemon keeps in data_dir; the folder itself is tightened only when it is not a
# parent of the user's home (data_dir: ~ would be a mistake to respect, not to chmod).
DATA_ENTRIES = (
    "state.db", "state.db-wal", "state.db-shm", "aicoderd.lock", "documents", "corpus",
    "models", "exports", "feedback", "cache", "logs", "sources",
)  # fmt: skip


def private_data(data_dir: Path) -> int:
    repaired = 0
    if data_dir.resolve() not in (Path.home().resolve(), *Path.home().resolve().parents):
        repaired += fsutil.make_private_entry(data_dir)
    for name in DATA_ENTRIES:
        if (data_dir / name).exists():
            repaired += fsutil.make_private(data_dir / name)
    return repaired


def _lock(path: Path) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise AicoderError(f"another aicoderd already uses {path.parent}") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


async def _serve(settings: Settings, config_path: Path | None) -> int:
    daemon = Daemon(settings, config_path)
    loop = asyncio.get_running_loop()
    interrupts = 0

    def on_interrupt() -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts > 1:
            logger.warning("daemon.forced_exit")
            os._exit(130)
        daemon.request_stop()

    loop.add_signal_handler(signal.SIGTERM, daemon.request_stop)
    loop.add_signal_handler(signal.SIGINT, on_interrupt)
    loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(daemon.reload()))
    try:
        await daemon.start()
    except AicoderError as exc:
        print(f"aicoderd: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"aicoderd: cannot start: {exc}", file=sys.stderr)
        return 1
    await daemon.wait()
    await daemon.shutdown()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="aicoderd",
        description="Run the aicoderd service in the foreground (systemd runs it as a user unit).",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="config file (default $XDG_CONFIG_HOME/aicoderd/config.yaml)",
    )
    parser.add_argument(
        "--check-config", action="store_true", help="validate the configuration and exit"
    )
    parser.add_argument("--version", action="version", version=f"aicoderd {__version__}")
    args = parser.parse_args(argv)
    try:
        settings = load_config(args.config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"aicoderd: config: {problem}", file=sys.stderr)
        sdnotify.notify("STATUS=invalid configuration")
        return protocol.EXIT_USAGE
    if args.check_config:
        print("configuration ok")
        return 0
    os.umask(0o077)  # what the daemon and its children create is the user's alone
    log.configure(settings.log_level, settings.log_format)
    return asyncio.run(_serve(settings, args.config))


if __name__ == "__main__":
    sys.exit(main())
