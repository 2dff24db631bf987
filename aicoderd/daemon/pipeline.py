"""Pipeline policy: which stage job to queue when, in two parts.

:class:`CorpusTrigger` queues ``corpus.build`` once the stored documents changed (new ones, or
retired ones) and ingestion has been quiet for ``corpus.debounce_seconds`` — one build for a
burst of files, not one per batch. It compares a cheap summary of the document table (how many
stored, the newest id) rather than listening to one ingest path, so files from folders,
``aicoder ingest``, network sources and mirror deletions all count; an ingest batch only makes
it look sooner.

:class:`ModelPipeline` continues from the corpus: train, the eval gate, export, deploy, and
finetune on feedback. It reads the facts (jobs, feedback, the corpus manifest, the current
model) every few seconds and queues what :func:`aicoderd.daemon.policy.decide` says; the
decision, and what each stage waits for, is what ``GET /v1/status`` shows under ``pipeline``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aicoderd import log
from aicoderd.adapt.job_kinds import ADAPT
from aicoderd.config import PRESET_NAMES, Settings
from aicoderd.corpus import snapshot
from aicoderd.corpus.job_kinds import BUILD, CorpusBuilt
from aicoderd.daemon import policy, schemas
from aicoderd.daemon.job_kinds import REGISTRY
from aicoderd.daemon.runner import JobQueue
from aicoderd.errors import CorpusError
from aicoderd.export import inference
from aicoderd.store import Store
from aicoderd.training import report, versions
from aicoderd.training.job_kinds import EVAL, FINETUNE, Evaluated, Trained

logger = log.get(__name__)

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
        self._view = schemas.PipelineStage(state="waiting", waiting_for="the first look")

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
            else:
                self._view = schemas.PipelineStage(
                    state="disabled", waiting_for="corpus.auto_build is false"
                )

    def view(self) -> schemas.PipelineStage:
        """What the corpus build waits for, with a countdown while ingestion settles."""
        view = self._view
        if view.in_s is not None:
            due = self._changed_at + self.settings().corpus.debounce_seconds
            view = view.model_copy(update={"in_s": round(max(0.0, due - time.monotonic()), 1)})
        return view

    def _check(self, debounce: float) -> None:
        state = self._documents_state()
        now = time.monotonic()
        if state != self._seen:
            self._seen, self._changed_at = state, now
        building = self.store.jobs.active((BUILD.name,))
        if state == self._queued_for:
            self._view = _building(building) or schemas.PipelineStage(
                state="waiting", waiting_for="new or removed documents"
            )
            return
        if now - self._changed_at < debounce:
            self._view = schemas.PipelineStage(
                state="waiting",
                waiting_for=f"ingestion to be quiet for {debounce:g} s",
                in_s=round(self._changed_at + debounce - now, 1),
            )
            return
        if building:
            self._view = _building(building) or self._view
            return  # it may predate the change: look again once it ends
        job = self.jobs.submit(BUILD.name)
        self._queued_for = state
        self._view = schemas.PipelineStage(state="queued", job_id=job["id"])
        logger.info("corpus.build_queued", job_id=job["id"], documents=state[0])
        self.wake()

    def _documents_state(self) -> State:
        return self.store.documents.stored_state()

    def _built_state(self) -> State:
        """What the current snapshot was built from; no snapshot counts as built from nothing,
        so an empty store queues nothing."""
        manifest = snapshot.read_manifest(self.settings().corpus_dir)
        inputs = (manifest or {}).get("inputs", {})
        if inputs.get("mode") != "store":
            return (0, 0)
        return int(inputs.get("documents", 0)), int(inputs.get("max_id", 0))


def _building(jobs: list[dict[str, Any]]) -> schemas.PipelineStage | None:
    if not jobs:
        return None
    return schemas.PipelineStage(state=jobs[0]["state"], job_id=jobs[0]["id"])


LINEAGE_MAX = 50  # finetunes of finetunes followed back to the pretrained model
LINEAGE_KEYS = ("kind", "base", "corpus_snapshot", "preset")  # of a model's metrics.json


class ModelPipeline:
    """Queues train, eval, export, deploy and finetune jobs as :mod:`.policy` decides."""

    INTERVAL = 2.0  # seconds between looks; each costs a few indexed queries and small reads
    SOONEST = 0.25  # a poke (a job ended, feedback came) brings the next look forward, to this

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
        self.view: schemas.PipelineStatus | None = None  # the last look, for GET /v1/status
        self._said: dict[str, str | None] = {}  # what each stage last logged it waits for
        self._tokens: dict[str, int | None] = {}  # snapshot id → tokens_estimate (immutable)
        self._metrics: dict[Path, dict[str, Any]] = {}  # model dir → metrics.json (immutable)
        self._figures_seen: dict[tuple[Path, int], schemas.ModelFigures | None] = {}
        self._poked = asyncio.Event()

    def poke(self) -> None:
        """Something the facts hold changed (an event was stored): look soon."""
        self._poked.set()

    async def run(self) -> None:
        while True:
            try:
                plan = await asyncio.to_thread(self.check)
            except Exception:  # a bad look must not end the loop: the next one may succeed
                logger.exception("pipeline.check_failed")
            else:
                if plan.submit:
                    self.wake()
            await asyncio.sleep(self.SOONEST)
            self._poked.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poked.wait(), self.INTERVAL - self.SOONEST)

    def check(self) -> policy.Plan:
        """One look: read the facts, queue what the policy says, remember what stages wait for."""
        settings = self.settings()
        facts = self.facts(settings)
        plan = policy.decide(facts, settings.pipeline, settings.adapt)
        queued: dict[str, int] = {}
        for sub in plan.submit:
            job = self.jobs.submit(sub.kind, sub.params)
            queued[sub.kind] = int(job["id"])
            logger.info("pipeline.queued", kind=sub.kind, job_id=job["id"], reason=sub.reason)
            self.store.events.add(
                "pipeline.queued", {"kind": sub.kind, "reason": sub.reason}, job["id"]
            )
        for name, stage in plan.stages.items():
            if self._said.get(name, "") != stage.waiting_for and stage.waiting_for is not None:
                logger.info("pipeline.waiting", stage=name, waiting_for=stage.waiting_for)
            self._said[name] = stage.waiting_for
        current = versions.current(settings.models_dir)
        plot = current / "loss.png" if current is not None else None
        stages = {
            name: schemas.PipelineStage(
                state=stage.state,
                waiting_for=stage.waiting_for,
                job_id=queued.get(name, stage.job_id),
            )
            for name, stage in plan.stages.items()
        }
        self.view = schemas.PipelineStatus.model_validate(
            {
                "current_model": facts.model,
                "loss_plot": str(plot) if plot is not None and plot.exists() else None,
                "current_metrics": self._figures(current) if current is not None else None,
                "gate": self._gate(facts.newest.get(EVAL.name)),
                "checked": time.time(),
                **stages,
            }
        )
        return plan

    def _gate(self, newest: policy.Job | None) -> schemas.GateVerdict | None:
        """The verdict of the newest eval job that gave one, with both models' figures."""
        if newest is None or newest.result is not None:
            return _verdict(newest) if newest is not None else None
        for row in self.store.jobs.finished(EVAL.name, limit=3):  # while one runs
            if (found := _verdict(_job(row))) is not None:
                return found
        return None

    def _figures(self, model_dir: Path) -> schemas.ModelFigures | None:
        """The figures the last evaluation wrote into the model's metrics.json (re-read when
        the file changes: an eval of the current model rewrites it)."""
        try:
            stamp = (model_dir / report.METRICS).stat().st_mtime_ns
        except OSError:
            return None
        key = (model_dir, stamp)
        if key not in self._figures_seen:
            self._figures_seen = {key: _model_figures(report.read_metrics(model_dir))}
        return self._figures_seen[key]

    # -- facts -------------------------------------------------------------------------------

    def facts(self, s: Settings) -> policy.Facts:
        snap, tokens = self._corpus(s.corpus_dir)
        current = versions.current(s.models_dir)
        lineage = self._lineage(current) if current is not None else []
        root = lineage[-1][1] if lineage else {}
        model_snapshot = root.get("corpus_snapshot") if root.get("kind") == "pretrain" else None
        model_tokens = None
        if model_snapshot is not None:
            known = tokens if model_snapshot == snap else None
            model_tokens = known if known is not None else self._snapshot_tokens(s, model_snapshot)
        active, last, newest = self._jobs()
        model_preset = root.get("preset")
        return policy.Facts(
            snapshot=snap,
            tokens=tokens,
            model=current.name if current is not None else None,
            model_snapshot=model_snapshot,
            model_tokens=model_tokens,
            model_preset=model_preset,
            target_preset=s.training.preset,
            upgrade=_smaller(model_preset, s.training.preset),
            idle=_idle(s.pipeline.idle_load),
            parity_checker=_parity_checker(),
            now=time.time(),
            new_feedback=self._new_feedback([name for name, _ in lineage]) if lineage else 0,
            adapt_feedback=self._feedback_since_adapt(),
            active=active,
            last=last,
            newest=newest,
        )

    def _corpus(self, corpus_dir: Path) -> tuple[str | None, int]:
        snap = snapshot.Layout(corpus_dir).current_id()
        if snap is None:
            return None, 0
        if snap not in self._tokens:
            try:
                manifest = snapshot.read_manifest(corpus_dir) or {}
            except CorpusError:
                manifest = {}
            if manifest.get("snapshot") != snap:
                return snap, 0  # published between the two reads: look again next time
            self._tokens[snap] = int(manifest.get("tokens_estimate", 0))
        return snap, self._tokens[snap] or 0

    def _snapshot_tokens(self, s: Settings, snap: str) -> int | None:
        """A past snapshot's size: from its build job's result (kept in state.db when the
        snapshot itself is cleaned away), else from its manifest if still on disk."""
        if snap not in self._tokens:
            built = BUILD.parse(self.store.jobs.newest_result(BUILD.name, "snapshot", snap))
            found = built.tokens_estimate if isinstance(built, CorpusBuilt) else None
            if found is None:
                path = snapshot.Layout(s.corpus_dir).snapshot_dir(snap) / snapshot.MANIFEST
                with contextlib.suppress(OSError, ValueError):
                    found = json.loads(path.read_text(encoding="utf-8")).get("tokens_estimate")
            self._tokens[snap] = None if found is None else int(found)
        return self._tokens[snap]

    def _lineage(self, model_dir: Path) -> list[tuple[str, dict[str, Any]]]:
        """The model and the models it was finetuned from, newest first, with their metrics."""
        out: list[tuple[str, dict[str, Any]]] = []
        path: Path | None = model_dir
        while path is not None and len(out) < LINEAGE_MAX:
            if path not in self._metrics:  # only what the policy reads: histories are long
                metrics = report.read_metrics(path)
                self._metrics[path] = {k: metrics.get(k) for k in LINEAGE_KEYS}
            metrics = self._metrics[path]
            out.append((path.name, metrics))
            base = metrics.get("base") if metrics.get("kind") == "finetune" else None
            path = Path(base).resolve() if base else None
        return out

    def _new_feedback(self, lineage: list[str]) -> int:
        """Valid records received since the newest finished finetune that started from (or
        made) a model of the current lineage; all records when there is none."""
        since = 0.0
        for job in self.store.jobs.finished(FINETUNE.name):
            base = job["params"].get("base")
            made = FINETUNE.parse(job["result"])
            version = made.version if isinstance(made, Trained) else None
            if (base and Path(str(base)).name in lineage) or version in lineage:
                since = float(job["started"] or job["created"])
                break
        return self.store.feedback.count_since(since)

    def _feedback_since_adapt(self) -> int:
        """Valid records received since the pipeline's last ``adapt`` job started."""
        rows = self.store.jobs.newest_marked((ADAPT.name,), policy.PIPELINE)
        since = float(rows[0]["started"] or rows[0]["created"]) if rows else 0.0
        return self.store.feedback.count_since(since)

    def _jobs(
        self,
    ) -> tuple[dict[str, policy.Job], dict[str, policy.Job], dict[str, policy.Job]]:
        """The queued or running job of each kind the policy cares about, and the newest job
        the pipeline queued of each stage kind."""
        kinds = (*policy.STAGES, BUILD.name)
        active: dict[str, policy.Job] = {}
        for row in self.store.jobs.active(kinds):
            active.setdefault(row["kind"], _job(row))  # the oldest: the one that runs first
        last = self.store.jobs.newest_marked(policy.STAGES, policy.PIPELINE)
        newest = self.store.jobs.newest(policy.STAGES)
        return (
            active,
            {row["kind"]: _job(row) for row in last},
            {row["kind"]: _job(row) for row in newest},
        )


def _job(row: dict[str, Any]) -> policy.Job:
    kind = REGISTRY.get(row["kind"])
    return policy.Job(
        id=int(row["id"]),
        kind=str(row["kind"]),
        state=str(row["state"]),
        params=row["params"] or {},
        result=kind.parse(row["result"]) if kind is not None else None,
        error=row["error"],
        finished=row["finished"],
    )


def _model_figures(metrics: dict[str, Any] | None) -> schemas.ModelFigures | None:
    if not metrics or "eval_loss_per_byte" not in metrics:
        return None
    return schemas.ModelFigures.model_validate(
        {k: metrics.get(k) for k in schemas.ModelFigures.model_fields}
    )


def _verdict(job: policy.Job) -> schemas.GateVerdict | None:
    result = job.result
    if not isinstance(result, Evaluated) or result.model is None:
        return None
    return schemas.GateVerdict(
        job_id=job.id,
        model=Path(result.model).name,
        passed=result.passed,
        promoted=result.promoted,
        reason=result.reason,
        candidate=_model_figures(result.metrics) or schemas.ModelFigures(),
        current=_model_figures(result.against),
    )


def _smaller(preset: str | None, target: str) -> bool:
    """Whether a model of ``preset`` is smaller than the ``target`` preset (unknown: no)."""
    order = list(PRESET_NAMES)
    return preset in order and target in order and order.index(preset) < order.index(target)


def _idle(per_core: float) -> bool:
    """The 1-minute load average per core is below ``per_core``."""
    return os.getloadavg()[0] / (os.cpu_count() or 1) < per_core


PARITY_RECHECK_SECONDS = 30.0  # a missing parity checker is looked for again this often
_parity_found: tuple[bool, float] = (False, -PARITY_RECHECK_SECONDS)


def _parity_checker() -> bool:
    """llama.cpp's binding can be imported now (it may have been installed since the start).
    Looking walks ``sys.path`` afresh, which at every look was most of an idle daemon's CPU:
    once found it stays found, and a missing one is looked for every 30 s."""
    global _parity_found
    found, at = _parity_found
    now = time.monotonic()
    if found or now - at < PARITY_RECHECK_SECONDS:
        return found
    importlib.invalidate_caches()
    _parity_found = (inference.available(), now)
    return _parity_found[0]
