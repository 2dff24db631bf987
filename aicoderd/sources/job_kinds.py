"""The sources stage's job kind: ``source.fetch``."""

from __future__ import annotations

from aicoderd.jobctx import JobKind, JobResult, Lane


class Fetched(JobResult):
    source: str | None = None
    outcome: str | None = None  # succeeded | partial | cancelled
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    retired: int = 0
    failed: int = 0
    errors: list[str] = []


FETCH = JobKind(
    "source.fetch",
    "aicoderd.sources.fetch_job:run",
    Fetched,
    Lane.LIGHT,
    "one run of one configured source (params: source, force)",
)
