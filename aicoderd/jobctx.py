"""The job contract: what a job kind declares, and what its function receives in the job's
child process.

A stage declares each of its job kinds as a :class:`JobKind` (in its ``job_kinds`` module,
which imports nothing heavy, so the daemon can read it): the name, the entry point as
``"module:function"`` (imported in the child process only), the lane it runs in, and the type
of its result. The function is ``run(params: dict, ctx: JobContext) -> dict | None``: it
reports progress with ``ctx.progress(...)`` (relayed by the daemon as events), checks
``ctx.cancelled`` at safe points (SIGTERM sets it; SIGKILL follows after a grace period),
raises :class:`~aicoderd.errors.JobSkipped` when there is nothing to do, and returns its result,
which the result type validates. Log lines go to the job's log (``aicoder jobs log ID``),
never into the message channel.
"""

from __future__ import annotations

import enum
import json
import time
from dataclasses import dataclass
from typing import IO, Any

from pydantic import BaseModel, ConfigDict, ValidationError

from aicoderd.config import Settings


class Lane(enum.StrEnum):
    HEAVY = "heavy"  # CPU/GPU-bound: one at a time
    LIGHT = "light"  # I/O-bound: a few beside the heavy one


class JobResult(BaseModel):
    """Base of the result types: fields the readers rely on, and whatever else a job says."""

    model_config = ConfigDict(extra="allow")


@dataclass(frozen=True)
class JobKind:
    name: str
    entry: str  # "module:function", imported in the job's child process only
    result: type[JobResult]
    lane: Lane = Lane.HEAVY
    description: str = ""

    def parse(self, result: dict[str, Any] | None) -> JobResult | None:
        """A stored result as this kind's type; None when there is none or it does not fit
        (a job of an older release)."""
        if not result:
            return None
        try:
            return self.result.model_validate(result)
        except ValidationError:
            return None


class JobContext:
    def __init__(self, job_id: int, settings: Settings, out: IO[str]) -> None:
        self.job_id = job_id
        self.settings = settings
        self.cancelled = False
        self._out = out  # the message channel to the daemon (progress, then the result)
        self._last = 0.0

    def progress(self, *, force: bool = False, **fields: Any) -> None:
        """Report progress (e.g. ``step``, ``total``, ``message``); at most ~4 per second."""
        now = time.monotonic()
        if not force and now - self._last < 0.25:
            return
        self._last = now
        self.emit({"type": "progress", **fields})

    def emit(self, message: dict[str, Any]) -> None:
        self._out.write(json.dumps(message) + "\n")
        self._out.flush()
