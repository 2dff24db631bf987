"""The durable job queue, the registry of job kinds, and the runner.

Rows live in SQLite (``queued → running → succeeded | failed | cancelled | skipped``). Each job
runs in a child process (``aicoderd.daemon.worker``) in its own session, so a cancel reaches the
whole process tree; heavy jobs take turns in one slot. A job found ``running`` at start-up was
interrupted by a crash and goes back to the queue: its kind decides how it resumes (training
resumes from its last checkpoint).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aicoderd import log, protocol
from aicoderd.config import Settings
from aicoderd.errors import BadRequest, JobError, NotFound
from aicoderd.store import Store

logger = log.get(__name__)


@dataclass(frozen=True)
class JobKind:
    name: str
    target: str  # "module:function", imported in the child process only
    heavy: bool = True
    description: str = ""


REGISTRY: dict[str, JobKind] = {}


def register(kind: JobKind) -> JobKind:
    REGISTRY[kind.name] = kind
    return kind


register(
    JobKind(
        "documents.verify",
        "aicoderd.daemon.verify:run",
        heavy=False,
        description="re-hash every stored document file and report missing or corrupt ones",
    )
)


register(
    JobKind(
        "corpus.build",
        "aicoderd.corpus.job:run",
        heavy=True,
        description="clean, redact, de-duplicate and split the documents into data_dir/corpus"
        " (params: full)",
    )
)


register(
    JobKind(
        "source.fetch",
        "aicoderd.sources.job:run",
        heavy=False,
        description="one run of one configured source (params: source, force)",
    )
)


register(
    JobKind(
        "train",
        "aicoderd.training.jobs:run_train",
        heavy=True,
        description="train a tokenizer and a model from scratch into data_dir/models/<version>"
        " (params: corpus, version, preset, max_steps); resumes from its last checkpoint",
    )
)


register(
    JobKind(
        "finetune",
        "aicoderd.training.jobs:run_finetune",
        heavy=True,
        description="finetune a model on review feedback (params: base, feedback, version,"
        " corpus); skipped when there is no usable feedback",
    )
)


register(
    JobKind(
        "eval",
        "aicoderd.training.jobs:run_eval",
        heavy=True,
        description="evaluation gate: eval loss and feedback margin, against the current model"
        " (params: model, against, corpus, promote)",
    )
)


register(
    JobKind(
        "export",
        "aicoderd.export.job:run",
        heavy=True,
        description="convert the promoted (or given) model to GGUF in data_dir/exports and check"
        " parity with llama.cpp (params: model, type)",
    )
)


register(
    JobKind(
        "deploy",
        "aicoderd.ollama.job:run",
        heavy=False,
        description="import the newest verified GGUF (or params.gguf) into Ollama as"
        " <model>:<version> and move <model>:latest; waits for Ollama (params: gguf, name)",
    )
)


def load_plugins(modules: list[str]) -> None:
    """Import modules that register more job kinds (config ``jobs.plugins``)."""
    for name in modules:
        importlib.import_module(name)


def _row(r: Any) -> dict[str, Any]:
    job = dict(r)
    for key in ("params", "progress", "result"):
        job[key] = json.loads(job[key]) if job[key] else None
    return job


class JobQueue:
    """Job rows and their state machine."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def submit(self, kind: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        if kind not in REGISTRY:
            known = ", ".join(sorted(REGISTRY))
            raise BadRequest(f"unknown job kind {kind!r} (known: {known})")
        with self.store.write() as db:
            cur = db.execute(
                "INSERT INTO jobs (kind, params, state, created) VALUES (?,?,?,?)",
                (kind, json.dumps(params or {}), protocol.QUEUED, time.time()),
            )
            job_id = int(cur.lastrowid or 0)
        self.store.add_event("job.queued", {"kind": kind}, job_id)
        return self.get(job_id)

    def get(self, job_id: int) -> dict[str, Any]:
        with self.store.read() as db:
            r = db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
        if r is None:
            raise NotFound(f"no job {job_id}")
        return _row(r)

    def find(self, state: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        sql, args = "SELECT * FROM jobs", []
        if state:
            sql += " WHERE state=?"
            args.append(state)
        with self.store.read() as db:
            rows = db.execute(sql + " ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
        return [_row(r) for r in rows]

    def counts(self) -> dict[str, int]:
        with self.store.read() as db:
            rows = db.execute("SELECT state, COUNT(*) n FROM jobs GROUP BY state").fetchall()
        return {r["state"]: r["n"] for r in rows}

    def next_queued(self, heavy_free: bool, light_free: bool) -> dict[str, Any] | None:
        with self.store.read() as db:
            rows = db.execute(
                "SELECT * FROM jobs WHERE state=? ORDER BY id LIMIT 50", (protocol.QUEUED,)
            ).fetchall()
        for r in rows:
            kind = REGISTRY.get(r["kind"])
            if kind is None or (heavy_free if kind.heavy else light_free):
                return _row(r)
        return None

    def move(self, job_id: int, new: str, **fields: Any) -> None:
        """Change state, refusing moves the state machine does not allow."""
        with self.store.write() as db:
            r = db.execute("SELECT state FROM jobs WHERE id=?", (job_id,)).fetchone()
            if r is None:
                raise NotFound(f"no job {job_id}")
            if new not in protocol.JOB_TRANSITIONS[r["state"]]:
                raise JobError(f"job {job_id} is {r['state']}; it cannot become {new}")
            sets = ["state=?"] + [f"{k}=?" for k in fields]
            values = [new] + [json.dumps(v) if isinstance(v, dict) else v for v in fields.values()]
            db.execute(f"UPDATE jobs SET {', '.join(sets)} WHERE id=?", (*values, job_id))

    def update(self, job_id: int, **fields: Any) -> None:
        """Change fields other than the state."""
        sets = ", ".join(f"{k}=?" for k in fields)
        values = [json.dumps(v) if isinstance(v, dict) else v for v in fields.values()]
        with self.store.write() as db:
            db.execute(f"UPDATE jobs SET {sets} WHERE id=?", (*values, job_id))

    def requeue_interrupted(self, max_attempts: int) -> list[int]:
        """At start-up: jobs left ``running`` by a dead daemon go back to the queue."""
        moved = []
        for job in self.find(protocol.RUNNING, limit=10_000):
            if job["attempts"] >= max_attempts:
                self.move(
                    job["id"],
                    protocol.FAILED,
                    finished=time.time(),
                    error=f"interrupted {job['attempts']} times; giving up",
                )
            else:
                self.move(job["id"], protocol.QUEUED, pid=None)
                moved.append(job["id"])
                self.store.add_event("job.requeued", {"kind": job["kind"]}, job["id"])
        return moved


class JobRunner:
    """Starts queued jobs in child processes; one heavy job at a time, a few light ones."""

    MAX_LIGHT = 4

    def __init__(self, queue: JobQueue, settings: Callable[[], Settings]) -> None:
        self.queue = queue
        self._settings = settings
        self._procs: dict[int, asyncio.subprocess.Process] = {}
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

    def _start_ready(self) -> None:
        while not self._stopping:
            light = len(self._procs) - len(self._heavy)
            job = self.queue.next_queued(not self._heavy, light < self.MAX_LIGHT)
            if job is None:
                return
            kind = REGISTRY[job["kind"]]
            self.queue.move(
                job["id"], protocol.RUNNING, started=time.time(), attempts=job["attempts"] + 1
            )
            if kind.heavy:
                self._heavy.add(job["id"])
            self._procs[job["id"]] = None  # type: ignore[assignment]  # reserved until spawned
            asyncio.get_running_loop().create_task(self._run(job, kind))

    async def _run(self, job: dict[str, Any], kind: JobKind) -> None:
        job_id = job["id"]
        bound = logger.bind(job_id=job_id, kind=kind.name)
        self.queue.store.add_event("job.started", {"kind": kind.name}, job_id)
        spec = {
            "job_id": job_id,
            "target": kind.target,
            "params": job["params"],
            "settings": self._settings().model_dump(mode="json"),
        }
        final: dict[str, Any] = {"state": protocol.FAILED, "error": "worker ended without result"}
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "aicoderd.daemon.worker",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                start_new_session=True,
                limit=2**24,
            )
            self._procs[job_id] = proc
            self.queue.update(job_id, pid=proc.pid)
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(json.dumps(spec).encode())
            await proc.stdin.drain()
            proc.stdin.close()
            async for line in proc.stdout:
                final = self._on_message(job_id, kind, line) or final
            code = await proc.wait()
            if code != 0 and final["state"] == protocol.FAILED and "result" not in final:
                final.setdefault("error", f"worker exited with status {code}")
        except OSError as exc:
            final = {"state": protocol.FAILED, "error": f"cannot start worker: {exc}"}
        except Exception as exc:  # never leave a job "running" behind
            bound.exception("job.runner_error")
            final = {"state": protocol.FAILED, "error": f"{type(exc).__name__}: {exc}"}
        finally:
            self._procs.pop(job_id, None)
            self._heavy.discard(job_id)
        self._finish(job_id, kind, final, bound)
        self.wake()

    def _on_message(self, job_id: int, kind: JobKind, line: bytes) -> dict[str, Any] | None:
        try:
            msg = json.loads(line)
        except ValueError:
            return None
        if msg.get("type") == "progress":
            msg.pop("type")
            self.queue.update(job_id, progress=msg)
            self.queue.store.add_event("job.progress", {"kind": kind.name, **msg}, job_id)
            return None
        if msg.get("type") == "result":
            return dict(msg)
        return None

    def _finish(self, job_id: int, kind: JobKind, final: dict[str, Any], bound: Any) -> None:
        state = final.get("state", protocol.FAILED)
        if job_id in self._cancelling:
            self._cancelling.discard(job_id)
            state = protocol.CANCELLED
        if self._stopping and state in (protocol.FAILED, protocol.CANCELLED):
            # Interrupted by our own shutdown: it resumes at the next start.
            self.queue.move(job_id, protocol.QUEUED, pid=None)
            bound.info("job.interrupted_by_shutdown")
            return
        self.queue.move(
            job_id,
            state,
            finished=time.time(),
            pid=None,
            result=final.get("result"),
            error=final.get("error"),
        )
        self.queue.store.add_event(
            f"job.{state}", {"kind": kind.name, "error": final.get("error")}, job_id
        )
        bound.info("job.finished", state=state, error=final.get("error"))

    async def cancel(self, job_id: int, grace: float) -> dict[str, Any]:
        job = self.queue.get(job_id)
        if job["state"] == protocol.QUEUED:
            self.queue.move(job_id, protocol.CANCELLED, finished=time.time())
            self.queue.store.add_event("job.cancelled", {"kind": job["kind"]}, job_id)
            return self.queue.get(job_id)
        if job["state"] != protocol.RUNNING:
            raise JobError(
                f"job {job_id} is {job['state']}; only queued or running jobs can be cancelled"
            )
        self._cancelling.add(job_id)
        await self._terminate(job_id, grace)
        return self.queue.get(job_id)

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


def _killpg(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
