"""The model pipeline's decisions: which stage job to queue next, and what each stage waits for.

:func:`decide` is a pure function of :class:`Facts`, which the daemon reads afresh on every look
from state.db (jobs, feedback) and data_dir (the corpus manifest, ``models/current`` and its
``metrics.json``). So a restarted daemon decides as the old one would have, and nothing is
queued twice: a kind with a job queued or running is not queued again, and each continuation
names the job it continues (``params.pipeline.after``), so it happens once per job.

- ``train`` when there is no current model and the corpus snapshot holds
  ``first_model_min_tokens`` — the *starter*: ``starter_preset`` bounded by
  ``starter_wall_seconds``, a first model in minutes —, then the configured ``training.preset``
  when the machine is idle (an upgrade, which the gate lets replace the starter only if it is
  better), or when the corpus grew since the current model's snapshot by
  ``retrain_min_new_tokens`` *and* by ``retrain_min_growth`` of that snapshot's tokens; at most
  one automatic train per snapshot and preset (a failed or refused one waits for the next
  snapshot).
- ``finetune`` of the current model once ``finetune_min_feedback`` valid feedback records
  arrived since the last finetune started from it (for a model no finetune started from: all
  records, so a retrained model learns the feedback too).
- ``eval`` — the gate, which promotes on pass — after each train or finetune queued here.
- ``export`` (always verified) of each model that eval promoted, while it is still current.
- ``deploy`` of each such export, when ``auto_deploy``.
- A failed export or deploy is tried again after ``retry_seconds`` (doubling, at most
  ``retry_max`` times), and at once when what it lacked is there now (the parity checker
  installed); a stage whose newer job, queued by hand or not, succeeded shows no old failure.
- ``adapt`` (LoRA on the Ollama model ``adapt.from``, deployed beside it) when the corpus grew
  by ``adapt.min_new_tokens`` since the last adapt's snapshot, or ``adapt.min_feedback``
  records arrived since it started; at most one per snapshot unless feedback arrives.

Jobs submitted by hand keep the model lane busy but never become links of the chain.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from aicoderd import protocol
from aicoderd.adapt.job_kinds import ADAPT
from aicoderd.config import AdaptConfig, PipelineConfig
from aicoderd.corpus.job_kinds import BUILD
from aicoderd.export.job_kinds import EXPORT, Exported
from aicoderd.jobctx import JobResult
from aicoderd.ollama.job_kinds import DEPLOY
from aicoderd.training.job_kinds import EVAL, FINETUNE, TRAIN, Evaluated, Trained

PIPELINE = "pipeline"  # the params key that marks (and explains) a job the pipeline queued
# One at a time: each changes what "current" is.
MODEL_KINDS = (TRAIN.name, FINETUNE.name, EVAL.name)
STAGES = (TRAIN.name, FINETUNE.name, EVAL.name, EXPORT.name, DEPLOY.name, ADAPT.name)
CORPUS_JOB = BUILD.name


@dataclass(frozen=True)
class Job:
    id: int
    kind: str
    state: str
    params: dict[str, Any]
    result: JobResult | None = None  # the kind's result type
    error: str | None = None
    finished: float | None = None  # when it ended (Unix time)

    @property
    def mark(self) -> dict[str, Any]:
        """What the pipeline noted when it queued this job ({} for a job queued by hand)."""
        value = self.params.get(PIPELINE)
        return value if isinstance(value, dict) else {}

    @property
    def succeeded(self) -> bool:
        return self.state == protocol.SUCCEEDED


@dataclass(frozen=True)
class Facts:
    snapshot: str | None = None  # the current corpus snapshot
    tokens: int = 0  # its tokens_estimate
    model: str | None = None  # the current (promoted) model version
    model_snapshot: str | None = None  # the corpus snapshot its pretraining read
    model_tokens: int | None = None  # that snapshot's tokens_estimate; None: unknown (as 0)
    model_preset: str | None = None  # the preset it was trained with (None: unknown)
    target_preset: str = "small"  # training.preset: what the starter makes way for
    upgrade: bool = False  # the current model's preset is smaller than the target's
    idle: bool = False  # the machine is idle (load average per core below idle_load)
    parity_checker: bool = True  # llama.cpp's Python binding can be imported now
    now: float = 0.0  # Unix time of this look
    new_feedback: int = 0  # valid records since the last finetune of the current model
    adapt_feedback: int = 0  # valid records since the last adapt job started (all: none yet)
    active: dict[str, Job] = field(default_factory=dict)  # a queued or running job per kind
    last: dict[str, Job] = field(default_factory=dict)  # the newest pipeline job per kind
    newest: dict[str, Job] = field(default_factory=dict)  # the newest job per kind, any origin


@dataclass(frozen=True)
class Stage:
    state: str  # disabled | waiting | queued | running
    waiting_for: str | None = None
    job_id: int | None = None


@dataclass(frozen=True)
class Submit:
    kind: str
    params: dict[str, Any]
    reason: str


@dataclass
class Plan:
    submit: list[Submit] = field(default_factory=list)
    stages: dict[str, Stage] = field(default_factory=dict)

    def queue(self, kind: str, params: dict[str, Any], mark: dict[str, Any], why: str) -> None:
        self.submit.append(Submit(kind, {**params, PIPELINE: {**mark, "reason": why}}, why))
        self.stages[kind] = Stage(protocol.QUEUED)

    def wait(self, kind: str, why: str, last: Job | None = None, newest: Job | None = None) -> None:
        """``kind`` waits for ``why``; the failure of ``last`` is told unless a newer job of
        the kind (``newest``, queued by hand or not) has succeeded since."""
        if newest is not None and last is not None and newest.id > last.id and newest.succeeded:
            last = None
        if last is not None and last.state in (protocol.FAILED, protocol.CANCELLED):
            why += f" (the last {kind} job, {last.id}, {last.state}"
            why += f": {last.error})" if last.error else ")"
        self.stages[kind] = Stage("waiting", why)


def decide(f: Facts, cfg: PipelineConfig, adapt: AdaptConfig | None = None) -> Plan:
    """What to queue now, and what each stage waits for."""
    plan = Plan()
    for kind in STAGES:
        job = f.active.get(kind)
        if job is not None:
            plan.stages[kind] = Stage(job.state, job_id=job.id)
    for step in (_evaluate, _export, _deploy, _train, _finetune):
        step(f, cfg, plan)
    _adapt(f, adapt or AdaptConfig(), plan)
    return plan


def _evaluate(f: Facts, cfg: PipelineConfig, plan: Plan) -> None:
    if EVAL.name in plan.stages:
        return
    trained = _newest(f.last.get(TRAIN.name), f.last.get(FINETUNE.name))
    last = f.last.get(EVAL.name)
    version = trained.result.version if trained and isinstance(trained.result, Trained) else None
    if trained is None or not version or not _unanswered(trained, last):
        plan.wait(EVAL.name, "a new model from train or finetune", last)
    else:
        why = f"{trained.kind} job {trained.id} made model {version}: the gate decides"
        plan.queue(EVAL.name, {"model": version}, {"after": trained.id}, why)


def _export(f: Facts, cfg: PipelineConfig, plan: Plan) -> None:
    if EXPORT.name in plan.stages:
        return
    if not cfg.auto_export:
        plan.stages[EXPORT.name] = Stage("disabled", "pipeline.auto_export is false")
        return
    gate = f.last.get(EVAL.name)
    last, newest = f.last.get(EXPORT.name), f.newest.get(EXPORT.name)
    model = gate.params.get("model") if gate is not None else None
    promoted = gate is not None and isinstance(gate.result, Evaluated) and gate.result.promoted
    if gate is None or not promoted or not model:
        plan.wait(EXPORT.name, "a model the evaluation gate promotes", last, newest)
    elif model != f.model:
        text = f"a newly promoted model ({model} is no longer current)"
        plan.wait(EXPORT.name, text, last, newest)
    elif _unanswered(gate, last):
        why = f"eval job {gate.id} promoted {model}"
        plan.queue(EXPORT.name, {"model": model}, {"after": gate.id}, why)
    else:
        _again(f, cfg, plan, EXPORT.name, gate, {"model": model})


def _deploy(f: Facts, cfg: PipelineConfig, plan: Plan) -> None:
    if DEPLOY.name in plan.stages:
        return
    if not cfg.auto_deploy:
        plan.stages[DEPLOY.name] = Stage("disabled", "pipeline.auto_deploy is false")
        return
    export = f.last.get(EXPORT.name)
    last, newest = f.last.get(DEPLOY.name), f.newest.get(DEPLOY.name)
    model = export.params.get("model") if export is not None else None
    gguf = export.result.gguf if export and isinstance(export.result, Exported) else None
    if export is None or not gguf or not export.succeeded:
        plan.wait(DEPLOY.name, "a verified export of a promoted model", last, newest)
    elif model != f.model:
        text = f"a newly promoted model ({model} is no longer current)"
        plan.wait(DEPLOY.name, text, last, newest)
    elif _unanswered(export, last):
        why = f"export job {export.id} wrote and verified {gguf}"
        plan.queue(DEPLOY.name, {"gguf": gguf}, {"after": export.id}, why)
    else:
        _again(f, cfg, plan, DEPLOY.name, export, {"gguf": gguf})


PARITY_CHECKER_MISSING = "llama-cpp-python is not installed"  # in inference.INSTALL_HINT


def _again(
    f: Facts, cfg: PipelineConfig, plan: Plan, kind: str, upstream: Job, params: dict[str, Any]
) -> None:
    """The continuation of ``upstream`` ran: done, or failed and perhaps due again (after a
    back-off, or at once when what it lacked is there now)."""
    last, newest = f.last.get(kind), f.newest.get(kind)
    done_since = newest is not None and last is not None and newest.id > last.id
    done_since = done_since and newest is not None and newest.succeeded
    if last is None or last.state != protocol.FAILED or done_since:
        plan.wait(kind, f"a newer model than {f.model}", last, newest)
        return
    tries = int(last.mark.get("retry", 0))
    mark = {"after": upstream.id, "retry": tries + 1}
    if f.parity_checker and PARITY_CHECKER_MISSING in (last.error or ""):
        why = f"{kind} job {last.id} lacked the parity checker, which is installed now"
        plan.queue(kind, params, mark, why)
    elif tries >= cfg.retry_max:
        plan.wait(kind, f"a newer model than {f.model} (tried {tries + 1} times)", last)
    elif f.now >= (due := (last.finished or f.now) + cfg.retry_seconds * 2**tries):
        why = f"retry {tries + 1} of {cfg.retry_max}: {kind} job {last.id} failed"
        plan.queue(kind, params, mark, why)
    else:
        plan.wait(kind, f"retry {tries + 1} of {cfg.retry_max} in {due - f.now:.0f} s", last)


def _train(f: Facts, cfg: PipelineConfig, plan: Plan) -> None:
    if TRAIN.name in plan.stages:
        return
    if not cfg.auto_train:
        plan.stages[TRAIN.name] = Stage("disabled", "pipeline.auto_train is false")
        return
    last = f.last.get(TRAIN.name)
    if f.snapshot is None:
        plan.wait(TRAIN.name, "the first corpus snapshot", last)
        return
    preset, params = f.target_preset, {}
    if f.model is None:
        need = cfg.first_model_min_tokens
        if f.tokens < need:
            plan.wait(TRAIN.name, f"{f.tokens:,} of {need:,} tokens for the first model", last)
            return
        why = f"snapshot {f.snapshot} has {f.tokens:,} tokens (first model: {need:,})"
        if cfg.starter_preset is not None:
            preset = cfg.starter_preset
            params = {"preset": preset, "max_wall_seconds": cfg.starter_wall_seconds}
            why += f": a {preset} starter, trained for {cfg.starter_wall_seconds:g} s at most"
    else:
        base = f.model_tokens or 0
        grown = f.tokens - base
        need = max(cfg.retrain_min_new_tokens, math.ceil(cfg.retrain_min_growth * base))
        since = f.model_snapshot or "an unknown snapshot"
        growth = f"{max(grown, 0):,} of {need:,} new tokens since {f.model}'s corpus ({since})"
        if grown >= need:
            why = f"the corpus grew by {grown:,} tokens since {f.model}'s (retrain: {need:,})"
        elif f.upgrade and cfg.upgrade_when_idle and f.idle:
            why = f"the machine is idle: a {preset} model to replace the {f.model_preset} starter"
        elif f.upgrade and cfg.upgrade_when_idle:
            text = (
                f"an idle machine for a {preset} model (the current one is a starter), or {growth}"
            )
            plan.wait(TRAIN.name, text, last)
            return
        else:
            plan.wait(TRAIN.name, growth, last)
            return
    if last is not None and (last.mark.get("snapshot"), last.mark.get("preset", preset)) == (
        f.snapshot,
        preset,
    ):
        text = f"a corpus snapshot newer than {f.snapshot} (train job {last.id} used it)"
        plan.wait(TRAIN.name, text, last)
        return
    busy = _busy(f, plan, with_corpus=True)
    if busy:
        plan.wait(TRAIN.name, f"{busy} to end ({why})", last)
        return
    mark = {"snapshot": f.snapshot, "tokens": f.tokens, "preset": preset}
    plan.queue(TRAIN.name, params, mark, why)


def _finetune(f: Facts, cfg: PipelineConfig, plan: Plan) -> None:
    if FINETUNE.name in plan.stages:
        return
    if not cfg.auto_finetune:
        plan.stages[FINETUNE.name] = Stage("disabled", "pipeline.auto_finetune is false")
        return
    last = f.last.get(FINETUNE.name)
    if f.model is None:
        plan.wait(FINETUNE.name, "a current model (the first train and its promotion)", last)
        return
    need = cfg.finetune_min_feedback
    if f.new_feedback < need:
        text = f"{f.new_feedback:,} of {need:,} new feedback records for {f.model}"
        plan.wait(FINETUNE.name, text, last)
        return
    why = f"{f.new_feedback:,} new feedback records for {f.model} (finetune: {need:,})"
    busy = _busy(f, plan, with_corpus=False)
    if busy:
        plan.wait(FINETUNE.name, f"{busy} to end ({why})", last)
        return
    plan.queue(FINETUNE.name, {"base": f.model}, {"feedback": f.new_feedback}, why)


def _adapt(f: Facts, cfg: AdaptConfig, plan: Plan) -> None:
    if ADAPT.name in plan.stages:
        return
    if not cfg.from_ or not cfg.auto:
        why = "adapt.from is not set" if not cfg.from_ else "adapt.auto is false"
        plan.stages[ADAPT.name] = Stage("disabled", why)
        return
    last = f.last.get(ADAPT.name)
    if f.snapshot is None:
        plan.wait(ADAPT.name, "the first corpus snapshot", last)
        return
    grown = f.tokens - int(last.mark.get("tokens", 0)) if last else f.tokens
    new_snapshot = last is None or last.mark.get("snapshot") != f.snapshot
    if new_snapshot and grown >= cfg.min_new_tokens:
        why = f"the corpus grew by {grown:,} tokens since the last adapt ({cfg.min_new_tokens:,})"
    elif f.adapt_feedback >= cfg.min_feedback:
        why = f"{f.adapt_feedback:,} new feedback records ({cfg.min_feedback:,})"
    else:
        text = (
            f"{max(grown, 0):,} of {cfg.min_new_tokens:,} new tokens in a new snapshot, or"
            f" {f.adapt_feedback:,} of {cfg.min_feedback:,} feedback records, to adapt {cfg.from_}"
        )
        plan.wait(ADAPT.name, text, last)
        return
    busy = _busy(f, plan, with_corpus=True)
    if busy:
        plan.wait(ADAPT.name, f"{busy} to end ({why})", last)
        return
    mark = {"snapshot": f.snapshot, "tokens": f.tokens, "feedback": f.adapt_feedback}
    plan.queue(ADAPT.name, {}, mark, why)


def _busy(f: Facts, plan: Plan, *, with_corpus: bool) -> str | None:
    """The job that keeps the model lane busy, described; None when it is free."""
    for s in plan.submit:
        if s.kind in MODEL_KINDS:
            return f"the {s.kind} job queued now"
    kinds = (*MODEL_KINDS, CORPUS_JOB) if with_corpus else MODEL_KINDS
    for kind in kinds:
        job = f.active.get(kind)
        if job is not None:
            return f"{kind} job {job.id} ({job.state})"
    return None


def _unanswered(upstream: Job, last: Job | None) -> bool:
    """``upstream`` succeeded and the pipeline's newest job of the next stage is not its
    continuation (jobs are never deleted, so this holds across restarts)."""
    return upstream.succeeded and (last is None or last.mark.get("after") != upstream.id)


def _newest(*jobs: Job | None) -> Job | None:
    present = [j for j in jobs if j is not None]
    return max(present, key=lambda j: j.id) if present else None
