"""The corpus stage's job kind: ``corpus.build``."""

from __future__ import annotations

from typing import Any

from aicoderd.jobctx import JobKind, JobResult, Lane


class CorpusBuilt(JobResult):
    snapshot: str | None = None  # None: the build was cancelled
    documents: int = 0
    bytes: int = 0
    tokens_estimate: int = 0
    removed: dict[str, int] = {}
    redactions: dict[str, int] = {}
    build: dict[str, Any] = {}
    cancelled: bool = False


BUILD = JobKind(
    "corpus.build",
    "aicoderd.corpus.build_job:run",
    CorpusBuilt,
    Lane.HEAVY,
    "clean, redact, de-duplicate and split the documents into data_dir/corpus (params: full)",
)
