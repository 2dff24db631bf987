"""The durable job queue and the runner that starts each job in a child process.

Rows live in the store's ``jobs`` table. Each job runs in a child process
(:mod:`aicoderd.daemon.worker`) in its own session, so a cancel reaches the whole process tree;
heavy jobs take turns in one slot. The child speaks on two channels: NDJSON messages (progress,
then the result) on a pipe of their own, and its log on stderr, which the runner keeps in
``data_dir/logs/jobs/<id>.log`` and forwards to the daemon's log (so to the journal), tagged
with the job's id. A job found ``running`` at start-up was interrupted by a crash and goes back
to the queue: its kind decides how it resumes (training resumes from its last checkpoint).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aicoderd import children, log, protocol
from aicoderd.config import Settings
from aicoderd.daemon.job_kinds import REGISTRY, kind
from aicoderd.errors import JobError
from aicoderd.jobctx import JobKind, Lane
from aicoderd.store import Store

logger = log.get(__name__)
WORKER = "aicoderd.daemon.worker"
_LOG_LEVELS = {"debug", "info", "warning", "error", "critical"}


class JobQueue:
    """Job rows and the events that tell about them."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def submit(self, kind_name: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        kind(kind_name)  # refuses an unknown kind
        with self._store.transaction() as tx:
            job_id = tx.jobs.insert(kind_name, params or {})
            tx.events.add("job.queued", {"kind": kind_name}, job_id)
        return self.get(job_id)

    def get(self, job_id: int) -> dict[str, Any]:
        return self._store.jobs.get(job_id)

    def find(self, state: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        return self._store.jobs.find(state, limit)

    def counts(self) -> dict[str, int]:
        return self._store.jobs.counts()

    def requeue_interrupted(self, max_attempts: int) -> list[int]:
        """At start-up: jobs left ``running`` by a dead daemon go back to the queue."""
        moved = []
        for job in self._store.jobs.find(protocol.RUNNING, limit=10_000):
            if job["attempts"] >= max_attempts:
                self._store.jobs.move(
                    job["id"],
                    protocol.FAILED,
                    finished=time.time(),
                    error=f"interrupted {job['attempts']} times; giving up",
                )
            else:
                self._store.jobs.move(job["id"], protocol.QUEUED, pid=None)
                moved.append(job["id"])
                self._store.events.add("job.requeued", {"kind": job["kind"]}, job["id"])
        return moved


class JobRunner:
    """Starts queued jobs in child processes; one heavy job at a time, a few light ones."""

    MAX_LIGHT = 4

    def __init__(self, store: Store, settings: Callable[[], Settings]) -> None:
        self._store = store
        self._settings = settings
        self._procs: dict[int, asyncio.subprocess.Process | None] = {}
        self._heavy: set[int] = set()
        self._cancelling: set[int] = set()
        self._wake = asyncio.Event()
        self._stopping = False

    @property
    def running(self) -> list[int]:
        return sorted(self._procs)

    def wake(self) -> None:
        self._wake.set()

    async def run_forever(self) -> None:
        while not self._stopping:
            self._start_ready()
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=1.0)

    def _next(self) -> tuple[dict[str, Any], JobKind] | None:
        heavy_free = not self._heavy
        light_free = len(self._procs) - len(self._heavy) < self.MAX_LIGHT
        for job in self._store.jobs.queued():
            k = REGISTRY.get(job["kind"])
            if k is None:  # a plugin's kind that is no longer configured
                continue
            if heavy_free if k.lane is Lane.HEAVY else light_free:
                return job, k
        return None

    def _start_ready(self) -> None:
        while not self._stopping:
            found = self._next()
            if found is None:
                return
            job, k = found
            self._store.jobs.move(
                job["id"], protocol.RUNNING, started=time.time(), attempts=job["attempts"] + 1
            )
            if k.lane is Lane.HEAVY:
                self._heavy.add(job["id"])
            self._procs[job["id"]] = None  # reserved until spawned
            asyncio.get_running_loop().create_task(self._run(job, k))

    async def _run(self, job: dict[str, Any], k: JobKind) -> None:
        job_id = job["id"]
        bound = logger.bind(job_id=job_id, kind=k.name)
        self._store.events.add("job.started", {"kind": k.name}, job_id)
        settings = self._settings()
        spec = {
            "job_id": job_id,
            "kind": k.name,
            "entry": k.entry,
            "lane": k.lane.value,
            "params": job["params"],
            "settings": settings.model_dump(mode="json"),
        }
        final: dict[str, Any] = {"state": protocol.FAILED, "error": "worker ended without result"}
        try:
            final = await self._spawn(job_id, k, spec, settings.job_logs_dir, bound) or final
        except OSError as exc:
            final = {"state": protocol.FAILED, "error": f"cannot start worker: {exc}"}
        except Exception as exc:  # never leave a job "running" behind
            bound.exception("job.runner_error")
            final = {"state": protocol.FAILED, "error": f"{type(exc).__name__}: {exc}"}
        finally:
            self._procs.pop(job_id, None)
            self._heavy.discard(job_id)
        self._finish(job_id, k, final, bound)
        self.wake()

    async def _spawn(
        self, job_id: int, k: JobKind, spec: dict[str, Any], logs: Path, bound: Any
    ) -> dict[str, Any] | None:
        """Run the child to its end; its last result message, if any."""
        read_fd, write_fd = os.pipe()
        try:
            proc = await asyncio.create_subprocess_exec(
                *children.python("-m", WORKER, str(write_fd)),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                pass_fds=(write_fd,),
                start_new_session=True,
                env=children.environment(),
                limit=2**24,
            )
        finally:
            os.close(write_fd)
        messages, transport = await _pipe_reader(read_fd)
        self._procs[job_id] = proc
        self._store.jobs.update(job_id, pid=proc.pid)
        assert proc.stdin is not None and proc.stderr is not None
        proc.stdin.write(json.dumps(spec).encode())
        await proc.stdin.drain()
        proc.stdin.close()
        final: dict[str, Any] | None = None
        try:
            results, _ = await asyncio.gather(
                self._messages(job_id, k, messages), _keep_log(proc.stderr, logs, job_id, bound)
            )
            final = results
        finally:
            transport.close()
        code = await proc.wait()
        if code != 0 and final is None:
            return {"state": protocol.FAILED, "error": f"worker exited with status {code}"}
        return final

    async def _messages(
        self, job_id: int, k: JobKind, stream: asyncio.StreamReader
    ) -> dict[str, Any] | None:
        final = None
        async for line in stream:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if msg.get("type") == "progress":
                msg.pop("type")
                self._store.jobs.update(job_id, progress=msg)
                self._store.events.add("job.progress", {"kind": k.name, **msg}, job_id)
            elif msg.get("type") == "result":
                final = dict(msg)
        return final

    def _finish(self, job_id: int, k: JobKind, final: dict[str, Any], bound: Any) -> None:
        state = final.get("state", protocol.FAILED)
        if job_id in self._cancelling:
            self._cancelling.discard(job_id)
            state = protocol.CANCELLED
        if self._stopping and state in (protocol.FAILED, protocol.CANCELLED):
            # Interrupted by our own shutdown: it resumes at the next start.
            self._store.jobs.move(job_id, protocol.QUEUED, pid=None)
            bound.info("job.interrupted_by_shutdown")
            return
        with self._store.transaction() as tx:
            tx.jobs.move(
                job_id,
                state,
                finished=time.time(),
                pid=None,
                result=final.get("result"),
                error=final.get("error"),
            )
            tx.events.add(f"job.{state}", {"kind": k.name, "error": final.get("error")}, job_id)
        bound.info("job.finished", state=state, error=final.get("error"))

    async def cancel(self, job_id: int, grace: float) -> dict[str, Any]:
        job = self._store.jobs.get(job_id)
        if job["state"] == protocol.QUEUED:
            with self._store.transaction() as tx:
                tx.jobs.move(job_id, protocol.CANCELLED, finished=time.time())
                tx.events.add("job.cancelled", {"kind": job["kind"]}, job_id)
            return self._store.jobs.get(job_id)
        if job["state"] != protocol.RUNNING:
            raise JobError(
                f"job {job_id} is {job['state']}; only queued or running jobs can be cancelled"
            )
        self._cancelling.add(job_id)
        await self._terminate(job_id, grace)
        return self._store.jobs.get(job_id)

    async def _terminate(self, job_id: int, grace: float) -> None:
        """SIGTERM to the job's process group, SIGKILL after ``grace`` seconds."""
        proc = self._procs.get(job_id)
        for _ in range(50):  # the child may still be spawning
            if proc is not None:
                break
            await asyncio.sleep(0.02)
            proc = self._procs.get(job_id)
        if proc is None:
            return
        _killpg(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout=grace)
        except TimeoutError:
            _killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
        for _ in range(100):  # let _run record the outcome
            if job_id not in self._procs:
                break
            await asyncio.sleep(0.02)

    async def stop(self, grace: float) -> None:
        self._stopping = True
        self._wake.set()
        await asyncio.gather(*(self._terminate(j, grace) for j in list(self._procs)))


async def _pipe_reader(fd: int) -> tuple[asyncio.StreamReader, asyncio.BaseTransport]:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**24)
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", buffering=0)
    )
    return reader, transport


async def _keep_log(stream: asyncio.StreamReader, logs: Path, job_id: int, bound: Any) -> None:
    """The child's stderr: into its log file, and each line into the daemon's log."""
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / f"{job_id}.log", "ab") as out:
        async for line in stream:
            out.write(line)
            out.flush()
            _forward(line, bound)


def _forward(line: bytes, bound: Any) -> None:
    text = line.decode("utf-8", "replace").rstrip()
    if not text:
        return
    try:
        entry = json.loads(text)
    except ValueError:
        entry = None
    if not isinstance(entry, dict) or "event" not in entry:
        bound.info("job.output", line=text)
        return
    level = str(entry.pop("level", "info"))
    for key in ("timestamp", "job_id", "kind"):
        entry.pop(key, None)
    event = str(entry.pop("event"))
    getattr(bound, level if level in _LOG_LEVELS else "info")(event, **entry)


def read_log(logs: Path, job_id: int, offset: int = 0) -> tuple[bytes, int]:
    """A job's log from ``offset``, and the size it had: ``aicoder jobs log`` follows with it."""
    try:
        with open(logs / f"{job_id}.log", "rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except FileNotFoundError:
        return b"", 0
    return data, offset + len(data)


def prune_logs(logs: Path, keep: int) -> None:
    """Keep the logs of the newest ``keep`` jobs."""
    with contextlib.suppress(FileNotFoundError):
        files = sorted(logs.glob("*.log"), key=lambda p: int(p.stem) if p.stem.isdigit() else 0)
        for old in files[:-keep]:
            with contextlib.suppress(OSError):
                old.unlink()


def _killpg(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


__all__ = ["JobQueue", "JobRunner", "prune_logs", "read_log"]
