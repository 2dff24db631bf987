"""Every job kind the daemon runs: the stages' declarations, this package's own
(``documents.verify``), and those that ``jobs.plugins`` modules register."""

from __future__ import annotations

import importlib

from aicoderd.adapt.job_kinds import ADAPT
from aicoderd.corpus.job_kinds import BUILD
from aicoderd.errors import BadRequest
from aicoderd.export.job_kinds import EXPORT
from aicoderd.jobctx import JobKind, JobResult, Lane
from aicoderd.ollama.job_kinds import DEPLOY
from aicoderd.sources.job_kinds import FETCH
from aicoderd.training.job_kinds import EVAL, FINETUNE, TRAIN


class DocumentsVerified(JobResult):
    checked: int = 0
    missing: list[int] = []
    corrupt: list[int] = []


VERIFY = JobKind(
    "documents.verify",
    "aicoderd.daemon.documents_verify:run",
    DocumentsVerified,
    Lane.LIGHT,
    "re-hash every stored document file and report missing or corrupt ones",
)

REGISTRY: dict[str, JobKind] = {
    k.name: k for k in (VERIFY, FETCH, BUILD, TRAIN, FINETUNE, EVAL, EXPORT, DEPLOY, ADAPT)
}


def register(kind: JobKind) -> JobKind:
    """Add a kind (a plugin module calls this when imported)."""
    REGISTRY[kind.name] = kind
    return kind


def load_plugins(modules: list[str]) -> None:
    """Import modules that register more job kinds (config ``jobs.plugins``)."""
    for name in modules:
        importlib.import_module(name)


def kind(name: str) -> JobKind:
    found = REGISTRY.get(name)
    if found is None:
        raise BadRequest(f"unknown job kind {name!r} (known: {', '.join(sorted(REGISTRY))})")
    return found
