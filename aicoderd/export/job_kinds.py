"""The export stage's job kind: ``export``."""

from __future__ import annotations

from typing import Any

from aicoderd.jobctx import JobKind, JobResult, Lane


class Exported(JobResult):
    gguf: str | None = None  # the verified file in data_dir/exports
    type: str | None = None
    verify: dict[str, Any] | None = None  # the parity report


EXPORT = JobKind(
    "export",
    "aicoderd.export.export_job:run",
    Exported,
    Lane.HEAVY,
    "convert the promoted (or given) model to GGUF in data_dir/exports and check parity with"
    " llama.cpp (params: model, type)",
)
