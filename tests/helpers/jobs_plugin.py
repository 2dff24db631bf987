"""A job-kind plugin used by the tests (loaded through the config key ``jobs.plugins``):
``test.sleep`` reports progress every step and honours cancellation; ``test.stubborn`` ignores
SIGTERM so a cancel must end in SIGKILL; ``test.fail`` raises; ``test.skip`` skips;
``test.chatty`` logs, prints and writes to stderr as a stage's libraries would."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import Any

from aicoderd import log
from aicoderd.daemon.job_kinds import register
from aicoderd.errors import JobSkipped
from aicoderd.jobctx import JobContext, JobKind, JobResult, Lane


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


def chatty(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    log.get("jobs_plugin").info("chatty.working", answer=42)
    print("a library printing to stdout")
    print("a warning on stderr", file=sys.stderr)
    ctx.progress(step=1, total=1, force=True)
    return {"said": 3}


def fail(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    raise RuntimeError("this job fails on purpose")


def skip(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    raise JobSkipped("nothing to do")


register(JobKind("test.sleep", "jobs_plugin:sleep", JobResult, Lane.HEAVY))
register(JobKind("test.stubborn", "jobs_plugin:stubborn", JobResult, Lane.HEAVY))
register(JobKind("test.fail", "jobs_plugin:fail", JobResult, Lane.LIGHT))
register(JobKind("test.skip", "jobs_plugin:skip", JobResult, Lane.LIGHT))
register(JobKind("test.chatty", "jobs_plugin:chatty", JobResult, Lane.LIGHT))
