"""The daemon: start-up, main loop, shutdown — as separate steps.

Signals only set flags or schedule work: SIGTERM/SIGINT request a stop (a second SIGINT
forces exit), SIGHUP reloads the configuration and keeps the old one if the new is invalid.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from aicoderd import __version__, log, protocol
from aicoderd import log as logsetup
from aicoderd.config import Settings, load_config
from aicoderd.corpus import snapshot as corpus_snapshot
from aicoderd.daemon import jobs as jobsmod
from aicoderd.daemon import sdnotify
from aicoderd.daemon.feedback import FeedbackFollower
from aicoderd.daemon.folders import FolderSet
from aicoderd.daemon.pipeline import CorpusTrigger, ModelPipeline
from aicoderd.daemon.scheduler import SourceScheduler
from aicoderd.daemon.server import bind_socket, build_app
from aicoderd.errors import AicoderError, ConfigError
from aicoderd.sources.extract import ExtractLimits
from aicoderd.store import DocumentFiles, Store

logger = log.get("aicoderd")


def extract_limits(s: Settings) -> ExtractLimits:
    return ExtractLimits(
        max_file_bytes=int(s.ingest.max_file_bytes),
        archive_max_members=s.ingest.archive_max_members,
        archive_max_total_bytes=int(s.ingest.archive_max_total_bytes),
        archive_max_ratio=s.ingest.archive_max_ratio,
    )


class Daemon:
    def __init__(self, settings: Settings, config_path: Path | None) -> None:
        self.settings = settings
        self.config_path = config_path
        self.started = time.time()
        self.stopping = False
        self._stop = asyncio.Event()
        self._event_signal = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._lock_fd: int | None = None
        self._runner: web.AppRunner | None = None
        self._last_status = 0.0

    # -- start-up ----------------------------------------------------------------------------

    async def start(self) -> None:
        s = self.settings
        s.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = _lock(s.data_dir / "aicoderd.lock")
        loop = asyncio.get_running_loop()
        self.store = Store(s.state_db)

        def event_stored() -> None:  # may run in a worker thread
            loop.call_soon_threadsafe(self._event_signal.set)

        self.store.on_event = event_stored
        self.store.add_event("daemon.started", {"version": __version__, "pid": os.getpid()})
        self.files = DocumentFiles(s.documents_dir)
        jobsmod.load_plugins(s.jobs.plugins)
        self.jobs = jobsmod.JobQueue(self.store)
        requeued = self.jobs.requeue_interrupted(s.jobs.max_attempts)
        self.runner = jobsmod.JobRunner(self.jobs, lambda: self.settings)
        self.folders = FolderSet(
            s,
            worker_args=(s.state_db, s.documents_dir, s.log_level, s.log_format),
            limits=lambda: extract_limits(self.settings),
            on_batch=self._ingested,
        )
        self.corpus_trigger = CorpusTrigger(
            self.store, self.jobs, lambda: self.settings, self.runner.wake
        )
        self.pipeline = ModelPipeline(
            self.store, self.jobs, lambda: self.settings, self.runner.wake
        )
        self.feedback = FeedbackFollower(self.store, s)
        self.scheduler = SourceScheduler(self.jobs, self.runner.wake)
        self.scheduler.start(s)
        # Before the socket: a client that sees it finds the inbox, and files it drops are
        # watched already (seen in the order they arrive, not in a walk's order).
        watcher = await self.folders.start()
        self._sock = bind_socket(s.socket)
        self._runner = web.AppRunner(build_app(self), handle_signals=False, access_log=None)
        await self._runner.setup()
        await web.SockSite(self._runner, self._sock, shutdown_timeout=2.0).start()
        self._spawn(
            self.folders.run(),
            self.feedback.run(),
            self.runner.run_forever(),
            self.corpus_trigger.run(),
            self.pipeline.run(),
            self._housekeeping(),
            self._watchdog(),
        )
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

    def _spawn(self, *coros: Any) -> None:
        for coro in coros:
            self._tasks.append(asyncio.get_running_loop().create_task(coro))

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
            d = status["documents"]
            sdnotify.notify(
                f"STATUS={d['total']} documents, {d['pending']} pending, {d['failed']} refused;"
                f" jobs queued {status['jobs']['queued']}, running {len(status['jobs']['running'])}"
            )
            if time.time() - self._last_status > 600:
                self._last_status = time.time()
                await asyncio.to_thread(self.store.prune_events, self.settings.events.retain)

    def _stored_counts(self) -> dict[str, Any]:
        """Everything status needs from SQLite, in one worker-thread call."""
        return {
            "documents": self.store.document_counts(),
            "jobs": self.jobs.counts(),
            "running": [
                {"id": j["id"], "kind": j["kind"], "progress": j["progress"]}
                for j in self.jobs.find(protocol.RUNNING)
            ],
            "feedback_valid": self.store.feedback_count(),
            "feedback_invalid": self.store.counter("feedback.invalid"),
            "corpus": corpus_snapshot.summary(self.settings.corpus_dir),
            "sources": self.scheduler.read(),
        }

    def _ingested(self) -> None:
        """The folder worker stored a batch (its events are in the store): wake event
        followers, and let the corpus trigger look at the documents now."""
        self._event_signal.set()
        self.corpus_trigger.poke()

    async def status(self) -> dict[str, Any]:
        stored = await asyncio.to_thread(self._stored_counts)
        counts = stored["documents"]
        by_status = counts["by_status"]
        job_counts, running = stored["jobs"], stored["running"]
        folders = self.folders.status()
        return {
            "version": __version__,
            "uptime_s": round(time.time() - self.started, 3),
            "pid": os.getpid(),
            "watcher": self.folders.watcher_kind,
            "documents": {
                "total": by_status.get("stored", 0),
                "failed": by_status.get("failed", 0),
                "retired": by_status.get("retired", 0),
                "pending": sum(f["pending"] for f in folders) + self.folders.cli_in_flight,
                "by_source": counts["by_source"],
            },
            "feedback": {
                "valid": stored["feedback_valid"],
                "invalid": stored["feedback_invalid"],
            },
            "jobs": {
                "queued": job_counts.get(protocol.QUEUED, 0),
                "running": running,
                "by_state": job_counts,
            },
            "folders": folders,
            "corpus": stored["corpus"],
            "pipeline": self.pipeline.view,  # the last look (every few seconds): costs nothing
            "sources": self.scheduler.status(stored["sources"]),
        }

    async def ingest_paths(self, paths: list[Path]) -> list[dict[str, Any]]:
        return await self.folders.ingest_paths(paths)

    async def reload(self) -> list[str]:
        """Re-read the config; on success apply it, else keep the old one and say why."""
        try:
            new = await asyncio.to_thread(load_config, self.config_path)
        except ConfigError as exc:
            logger.error("config.reload_refused", problems=exc.problems)
            self.store.add_event("config.reload_refused", {"problems": exc.problems})
            return exc.problems
        for key in ("data_dir", "socket"):
            if getattr(new, key) != getattr(self.settings, key):
                logger.warning("config.needs_restart", key=key)
        logsetup.configure(new.log_level, new.log_format)
        jobsmod.load_plugins(new.jobs.plugins)
        self.settings = new
        await self.folders.reconfigure(new)
        self.feedback.reconfigure(new)
        self.scheduler.configure(new)
        self.store.add_event("config.reloaded", {})
        logger.info("config.reloaded")
        return []

    # -- shutdown ----------------------------------------------------------------------------

    async def shutdown(self) -> None:
        sdnotify.notify("STOPPING=1")
        timeout = self.settings.shutdown_timeout_seconds
        await self.folders.stop()
        self.scheduler.shutdown()
        grace = min(self.settings.jobs.cancel_grace_seconds, timeout / 2)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.runner.stop(grace), timeout / 2)
        with contextlib.suppress(TimeoutError):
            # An ingest batch in progress finishes; nothing is left half-written.
            await asyncio.wait_for(self.folders.drain(), timeout / 2)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
        await self.folders.close()
        with contextlib.suppress(OSError):
            self.settings.socket.unlink()
        self.store.add_event("daemon.stopped", {})
        self.store.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
        logger.info("daemon.stopped")


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
    logsetup.configure(settings.log_level, settings.log_format)
    return asyncio.run(_serve(settings, args.config))


if __name__ == "__main__":
    sys.exit(main())
