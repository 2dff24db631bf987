"""The daemon's ``adapt`` job (declared in :mod:`aicoderd.adapt.job_kinds`): the configured
Ollama model adapted in ``data_dir/adapt/<version>/``. A job interrupted by a daemon crash is
re-queued with the same parameters, so the same version directory, and resumes from its last
checkpoint. The feedback is what the daemon stored (``state.db``), the daemon's one truth."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from aicoderd.adapt import lora, merged
from aicoderd.adapt.run import Prepared, Request, finish, prepare_run, train_phase
from aicoderd.config import Settings
from aicoderd.errors import JobSkipped
from aicoderd.jobctx import JobContext
from aicoderd.ollama.client import Client
from aicoderd.sources.feedback_file import FeedbackRecord
from aicoderd.store import Store
from aicoderd.training import launch, versions
from aicoderd.training.corpus import MANIFEST
from aicoderd.training.pretrain import Hooks

LAUNCHER = "aicoderd.adapt.launch"  # the torchrun workers' entry point


def adapt_dir(settings: Settings) -> Path:
    return settings.data_dir / "adapt"


def stored_feedback(settings: Settings) -> list[FeedbackRecord]:
    store = Store(settings.state_db)
    try:
        return [FeedbackRecord.model_validate(r) for r in store.feedback.records()]
    finally:
        store.close()


def hooks(ctx: JobContext) -> Hooks:
    def progress(fields: dict[str, Any]) -> None:
        ctx.progress(force=fields["step"] == fields["total"], **fields)

    return Hooks(
        progress=progress,
        warn=lambda m: ctx.progress(force=True, message=m),
        should_stop=lambda: ctx.cancelled,
    )


def run(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """params: from (default adapt.from), corpus (default data_dir/corpus), version,
    max_steps."""
    s = ctx.settings
    source = params.get("from") or s.adapt.from_
    if not source:
        raise JobSkipped("adapt.from is not set: no model to adapt")
    corpus = Path(params.get("corpus") or s.corpus_dir)
    if not (corpus / MANIFEST).exists():
        raise JobSkipped(f"no corpus in {corpus} yet")
    if params.get("max_steps"):
        steps = {"max_steps": int(params["max_steps"])}
        s = s.model_copy(update={"adapt": s.adapt.model_copy(update=steps)})
    version = params.get("version") or versions.new_version("adapt", ctx.job_id)
    req = Request(source, corpus, adapt_dir(s) / version, version, stored_feedback(s))

    def say(message: str) -> None:
        ctx.progress(force=True, message=message)

    with Client.from_settings(s) as client:
        prepared = prepare_run(req, s, client, say)
        if s.training.launcher == "torchrun":
            model, metrics = _torchrun(prepared, req, s, ctx)
        else:
            model, metrics = train_phase(prepared, req, s, hooks(ctx))
        result = finish(prepared, model, metrics, req, s, client, say)
    if result.get("deployed"):  # Ollama holds the model now: the merged weights can go
        shutil.rmtree(req.out / merged.MERGED_DIR, ignore_errors=True)
    return {
        "version": version,
        "source": prepared.source.label,
        "snapshot": prepared.corpus.snapshot,
        "feedback": len(prepared.feedback),
        "stopped": metrics["stopped"],
        **{k: result.get(k) for k in ("gate", "deployed", "base", "adapted", "paths")},
    }


def _torchrun(
    p: Prepared, req: Request, s: Settings, ctx: JobContext
) -> tuple[Any, dict[str, Any]]:
    """The LoRA steps in torchrun's processes (DDP); the adapter they saved loaded here."""
    from aicoderd.adapt.base import load_model

    weights = str(p.source.gguf or p.source.hf_dir)  # the workers need no Ollama
    args = {"source": weights, "corpus": str(req.corpus), "out": str(req.out)}
    args |= {"version": req.version}
    metrics = launch.run_torchrun("adapt", args, s, s.training, ctx, module=LAUNCHER)
    if metrics.get("stopped") == "cancelled":
        return None, metrics
    return lora.load_adapter(load_model(p.source), req.out / lora.ADAPTER_DIR), metrics
