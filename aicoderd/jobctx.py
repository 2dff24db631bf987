"""What a job function receives in its child process.

Contract: a job kind's function is ``run(params: dict, ctx: JobContext) -> dict | None``. It
reports progress with ``ctx.progress(...)`` (relayed by the daemon as events), checks
``ctx.cancelled`` at safe points (SIGTERM sets it; SIGKILL follows after a grace period), raises
:class:`~aicoderd.errors.JobSkipped` when there is nothing to do, and returns its result.
"""

from __future__ import annotations

import json
import sys
import time
from typing import IO, Any

from aicoderd.config import Settings


class JobContext:
    def __init__(self, job_id: int, settings: Settings, out: IO[str] | None = None) -> None:
        self.job_id = job_id
        self.settings = settings
        self.cancelled = False
        self._out = out or sys.stdout
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
