"""Pipeline policy: which stage job to queue when. Today: ``corpus.build`` once the stored
documents changed (new ones, or retired ones) and ingestion has been quiet for
``corpus.debounce_seconds`` — one build for a burst of files, not one per batch.

The trigger compares a cheap summary of the document table (how many stored, the newest id)
rather than listening to one ingest path, so files from folders, ``aicoder ingest``, network
sources and mirror deletions all count; an ingest batch only makes it look sooner.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from aicoderd import log, protocol
from aicoderd.config import Settings
from aicoderd.corpus import snapshot
from aicoderd.daemon.jobs import JobQueue
from aicoderd.store import Store

logger = log.get(__name__)

CORPUS_JOB = "corpus.build"
State = tuple[int, int]  # (stored documents, newest stored id)


class CorpusTrigger:
    def __init__(
        self,
        store: Store,
        jobs: JobQueue,
        settings: Callable[[], Settings],
        wake: Callable[[], None],
    ) -> None:
        self.store = store
        self.jobs = jobs
        self.settings = settings
        self.wake = wake  # starts the job runner on a queued job
        self._poked = asyncio.Event()
        self._seen: State | None = None
        self._changed_at = 0.0
        self._queued_for: State | None = None

    def poke(self) -> None:
        """Documents may have changed (an ingest batch ended): look now."""
        self._poked.set()

    async def run(self) -> None:
        self._queued_for = await asyncio.to_thread(self._built_state)
        while True:
            config = self.settings().corpus
            interval = min(2.0, max(0.2, config.debounce_seconds / 2))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poked.wait(), interval)
            self._poked.clear()
            if config.auto_build:
                await asyncio.to_thread(self._check, config.debounce_seconds)

    def _check(self, debounce: float) -> None:
        state = self._documents_state()
        now = time.monotonic()
        if state != self._seen:
            self._seen, self._changed_at = state, now
        if state == self._queued_for or now - self._changed_at < debounce:
            return
        if self._building():
            return  # it may predate the change: look again once it ends
        job = self.jobs.submit(CORPUS_JOB)
        self._queued_for = state
        logger.info("corpus.build_queued", job_id=job["id"], documents=state[0])
        self.wake()

    def _documents_state(self) -> State:
        with self.store.read() as db:
            row = db.execute(
                "SELECT COUNT(*), COALESCE(MAX(id), 0) FROM documents WHERE status='stored'"
            ).fetchone()
        return int(row[0]), int(row[1])

    def _built_state(self) -> State:
        """What the current snapshot was built from; no snapshot counts as built from nothing,
        so an empty store queues nothing."""
        manifest = snapshot.read_manifest(self.settings().corpus_dir)
        inputs = (manifest or {}).get("inputs", {})
        if inputs.get("mode") != "store":
            return (0, 0)
        return int(inputs.get("documents", 0)), int(inputs.get("max_id", 0))

    def _building(self) -> bool:
        active = (protocol.QUEUED, protocol.RUNNING)
        return any(j["kind"] == CORPUS_JOB for s in active for j in self.jobs.find(s, limit=1000))
