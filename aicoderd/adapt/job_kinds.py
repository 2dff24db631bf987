"""The adapt stage's job kind: ``adapt``."""

from __future__ import annotations

from typing import Any

from aicoderd.jobctx import JobKind, JobResult, Lane


class Adapted(JobResult):
    """An ``adapt`` job: what it trained on, the gate's verdict, and what it deployed."""

    version: str | None = None
    source: str | None = None
    snapshot: str | None = None  # the corpus snapshot it trained on
    tokens: int | None = None  # that snapshot's tokens_estimate
    feedback: int | None = None  # feedback records it trained on
    stopped: str | None = None
    gate: dict[str, Any] | None = None
    deployed: dict[str, Any] | None = None


ADAPT = JobKind(
    "adapt",
    "aicoderd.adapt.adapt_job:run",
    Adapted,
    Lane.HEAVY,
    "LoRA on an Ollama model (adapt.from) over the corpus and the stored feedback, gated"
    " against the base, deployed beside it as <name>-<suffix>:<version> (params: from,"
    " corpus, version, max_steps); resumes from its last checkpoint",
)
