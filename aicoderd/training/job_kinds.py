"""The training stage's job kinds: ``train``, ``finetune`` and ``eval`` (the gate)."""

from __future__ import annotations

from typing import Any

from aicoderd.jobctx import JobKind, JobResult, Lane


class Trained(JobResult):
    """A ``train`` or ``finetune`` job's model (``stopped`` says why the run ended)."""

    version: str | None = None
    model_dir: str | None = None  # None: cancelled, nothing published
    stopped: str | None = None
    steps: int | None = None
    eval_loss: float | None = None
    train_loss: float | None = None
    tokens_seen: int | None = None
    wall_seconds: float | None = None


class Evaluated(JobResult):
    model: str | None = None
    passed: bool = False
    promoted: bool = False
    reason: str = ""
    metrics: dict[str, Any] = {}
    against: dict[str, Any] | None = None


TRAIN = JobKind(
    "train",
    "aicoderd.training.model_jobs:run_train",
    Trained,
    Lane.HEAVY,
    "train a tokenizer and a model from scratch into data_dir/models/<version>"
    " (params: corpus, version, preset, max_steps, max_wall_seconds); resumes from its last"
    " checkpoint",
)
FINETUNE = JobKind(
    "finetune",
    "aicoderd.training.model_jobs:run_finetune",
    Trained,
    Lane.HEAVY,
    "finetune a model on the stored review feedback (params: base, version, corpus);"
    " skipped when there is no usable feedback",
)
EVAL = JobKind(
    "eval",
    "aicoderd.training.model_jobs:run_eval",
    Evaluated,
    Lane.HEAVY,
    "evaluation gate: eval loss and feedback margin, against the current model"
    " (params: model, against, corpus, promote)",
)
