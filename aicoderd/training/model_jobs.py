"""The functions of the job kinds ``train``, ``finetune`` and ``eval`` (declared in
:mod:`aicoderd.training.job_kinds`); each runs in the job's child process.

Models are versioned under ``data_dir/models/<version>/``; a run works in
``models/.<version>.partial/`` and is renamed into place once complete, so a version directory
is always a whole model. A ``train`` job interrupted by a daemon crash is re-queued with the
same parameters and resumes from its last checkpoint in the partial directory.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from aicoderd.config import Settings, TrainingConfig
from aicoderd.errors import JobSkipped, TrainingError
from aicoderd.fsutil import fsync_dir
from aicoderd.jobctx import JobContext
from aicoderd.store import Store
from aicoderd.training import gate, launch, preferences, report, versions
from aicoderd.training.pretrain import CHECKPOINTS, Hooks


def _hooks(ctx: JobContext, *, checkpoint_on_stop: bool = True) -> Hooks:
    def progress(fields: dict[str, Any]) -> None:
        ctx.progress(force=fields["step"] == fields["total"] or "eval_loss" in fields, **fields)

    return Hooks(
        progress=progress,
        warn=lambda message: ctx.progress(force=True, message=message),
        should_stop=lambda: ctx.cancelled,
        checkpoint_on_stop=checkpoint_on_stop,
    )


def _config(settings: Settings, params: dict[str, Any]) -> TrainingConfig:
    data = settings.training.model_dump()
    keys = ("preset", "max_steps", "max_wall_seconds", "finetune_steps")
    data.update({k: params[k] for k in keys if k in params})
    return TrainingConfig.model_validate(data)


def _publish(partial: Path, final: Path) -> None:
    """Drop the checkpoints (the run is complete) and rename the model into place."""
    shutil.rmtree(partial / CHECKPOINTS, ignore_errors=True)
    if final.exists():
        raise TrainingError(f"model version {final.name} already exists")
    os.replace(partial, final)
    fsync_dir(final.parent)


def run_train(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """params: corpus (default data_dir/corpus), version, preset, max_steps, max_wall_seconds.
    A cancelled run leaves nothing behind (its partial directory is removed)."""
    settings = ctx.settings
    version = params.get("version") or versions.new_version("train", ctx.job_id)
    final = versions.version_dir(settings.models_dir, version)
    partial = final.with_name(f".{version}.partial")
    corpus = Path(params.get("corpus") or settings.corpus_dir)
    cfg = _config(settings, params)
    if cfg.launcher == "torchrun":
        metrics = launch.run_torchrun(
            "train", {"corpus": str(corpus), "out": str(partial)}, settings, cfg, ctx
        )
    else:
        from aicoderd.training.pretrain import pretrain

        metrics = pretrain(
            corpus,
            partial,
            cfg,
            cache_dir=settings.data_dir / "cache" / "tokens",
            resume=True,  # the partial directory is this job's own: continue what it holds
            hooks=_hooks(ctx, checkpoint_on_stop=False),
        )
    if metrics["stopped"] == "cancelled":
        shutil.rmtree(partial, ignore_errors=True)
        return {"version": version, "stopped": "cancelled", "step": metrics["step"]}
    # The pipeline tells a starter from the model it makes way for by this.
    report.write_metrics(partial, {**report.read_metrics(partial), "preset": cfg.preset})
    _publish(partial, final)
    return {"version": version, "model_dir": str(final), **_summary(metrics)}


def _stored_feedback(settings: Settings) -> preferences.Feedback:
    """The daemon's one truth about feedback: the records its follower stored."""
    store = Store(settings.state_db)
    try:
        return preferences.from_store(store.feedback.records())
    finally:
        store.close()


def run_finetune(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """params: base (default: the current model), version, corpus (replay; default: the base
    model's corpus). The feedback is what the daemon stored in state.db."""
    from aicoderd.training.finetune import finetune

    settings = ctx.settings
    if "feedback" in params:
        raise TrainingError(
            "the finetune job learns from the feedback the daemon stored; for files, run"
            " `aicoder finetune --feedback FILE...`"
        )
    models = settings.models_dir
    base = (
        versions.resolve(models, params["base"]) if params.get("base") else versions.current(models)
    )
    if base is None:
        raise JobSkipped("no current model to finetune (train and promote one first)")
    feedback = _stored_feedback(settings)
    version = params.get("version") or versions.new_version("finetune", ctx.job_id)
    final = versions.version_dir(models, version)
    partial = final.with_name(f".{version}.partial")
    shutil.rmtree(partial, ignore_errors=True)  # finetuning is short: an interrupted one restarts
    recorded = report.read_metrics(base).get("corpus_dir")
    corpus = params.get("corpus") or recorded or settings.corpus_dir
    corpus_dir = Path(corpus) if (Path(corpus) / "manifest.json").exists() else None
    metrics = finetune(
        base,
        feedback,
        partial,
        _config(settings, params),
        corpus_dir=corpus_dir,
        cache_dir=settings.data_dir / "cache" / "tokens",
        hooks=_hooks(ctx),
    )
    if metrics["stopped"] == "cancelled":
        return {"version": version, "stopped": "cancelled"}
    _publish(partial, final)
    return {"version": version, "model_dir": str(final), **_summary(metrics)}


def run_eval(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """params: model (a version or directory), against (default: the current model), corpus,
    promote (default true: move ``current`` to the model when it passes the gate)."""
    settings = ctx.settings
    models = settings.models_dir
    model = versions.resolve(models, params["model"])
    against = versions.resolve(models, params["against"]) if params.get("against") else None
    against = against or versions.current(models)
    recorded = report.read_metrics(model).get("corpus_dir")
    corpus = Path(params.get("corpus") or recorded or settings.corpus_dir)
    fb = _stored_feedback(settings).examples
    outcome = gate.run(model, against, corpus, fb, settings.training)
    gate.record(outcome, model, settings.state_db, settings.training, ctx.job_id)
    promoted = outcome.passed and bool(params.get("promote", True))
    if promoted:
        versions.promote(models, model)
    return {
        "model": str(model),
        "passed": outcome.passed,
        "promoted": promoted,
        "reason": outcome.reason,
        "metrics": outcome.result,
        "against": outcome.against,
    }


def _summary(metrics: dict[str, Any]) -> dict[str, Any]:
    keys = ("steps", "stopped", "eval_loss", "train_loss", "tokens_seen", "wall_seconds")
    return {k: metrics[k] for k in keys if k in metrics}
