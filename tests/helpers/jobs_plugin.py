"""A job-kind plugin used by the tests (loaded through the config key ``jobs.plugins``):
``test.sleep`` reports progress every step and honours cancellation; ``test.stubborn`` ignores
SIGTERM so a cancel must end in SIGKILL; ``test.fail`` raises; ``test.skip`` skips."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

from aicoderd.daemon.jobs import JobKind, register
from aicoderd.errors import JobSkipped
from aicoderd.jobctx import JobContext


def sleep(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    steps = int(params.get("steps", 10))
    marker = params.get("marker")
    for i in range(steps):
        if ctx.cancelled:
            return {"stopped_at": i}
        if marker:
            with open(marker, "a") as fh:
                fh.write(f"{ctx.job_id} {i}\n")
        ctx.progress(step=i + 1, total=steps, force=True)
        time.sleep(float(params.get("interval", 0.1)))
    return {"steps": steps}


def stubborn(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    Path(params["marker"]).write_text("started")
    time.sleep(600)
    return {}


def fail(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    raise RuntimeError("this job fails on purpose")


def skip(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    raise JobSkipped("nothing to do")


register(JobKind("test.sleep", "jobs_plugin:sleep", heavy=True))
register(JobKind("test.stubborn", "jobs_plugin:stubborn", heavy=True))
register(JobKind("test.fail", "jobs_plugin:fail", heavy=False))
register(JobKind("test.skip", "jobs_plugin:skip", heavy=False))
