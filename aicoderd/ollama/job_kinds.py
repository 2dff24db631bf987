"""The Ollama stage's job kind: ``deploy``."""

from __future__ import annotations

from aicoderd.jobctx import JobKind, JobResult, Lane


class Deployed(JobResult):
    name: str | None = None  # NAME:TAG as created
    latest: str | None = None  # the alias moved to it
    digest: str | None = None


DEPLOY = JobKind(
    "deploy",
    "aicoderd.ollama.deploy_job:run",
    Deployed,
    Lane.LIGHT,
    "import the newest verified GGUF (or params.gguf) into Ollama as <model>:<version> and"
    " move <model>:latest; waits for Ollama (params: gguf, name)",
)
