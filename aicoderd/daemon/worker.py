"""Child-process entry point for one job: ``python -m aicoderd.daemon.worker FD`` reads the job
spec as JSON on stdin and writes NDJSON messages (progress, then one result) to file
descriptor ``FD``. Log lines, and anything a library prints, go to stderr, which the daemon
keeps as the job's log."""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
from typing import Any

import structlog

from aicoderd import children, log, protocol
from aicoderd.config import Settings
from aicoderd.errors import JobSkipped
from aicoderd.jobctx import JobContext

logger = log.get(__name__)


def _resolve(entry: str) -> Any:
    module, _, name = entry.partition(":")
    return getattr(importlib.import_module(module), name)


def main() -> int:
    messages = os.fdopen(int(sys.argv[1]), "w", encoding="utf-8")
    os.dup2(2, 1)  # print() lands in the log, never in the message channel
    spec = json.loads(sys.stdin.read())
    settings = Settings.model_validate(spec["settings"])
    log.configure(settings.log_level, "json", stream=sys.stderr)
    structlog.contextvars.bind_contextvars(job_id=spec["job_id"], kind=spec["kind"])
    if spec.get("lane") == "heavy":
        children.lower_priority(settings.jobs.nice, settings.jobs.idle_io)
    ctx = JobContext(int(spec["job_id"]), settings, messages)

    def on_term(signum: int, frame: object) -> None:
        ctx.cancelled = True

    signal.signal(signal.SIGTERM, on_term)
    logger.info("job.child_started", pid=os.getpid())
    try:
        result = _resolve(spec["entry"])(spec.get("params") or {}, ctx)
    except JobSkipped as exc:
        logger.info("job.skipped", reason=str(exc))
        ctx.emit({"type": "result", "state": protocol.SKIPPED, "error": str(exc)})
        return 0
    except Exception as exc:
        logger.exception("job.error")
        error = f"{type(exc).__name__}: {exc}"
        ctx.emit({"type": "result", "state": protocol.FAILED, "error": error})
        return 1
    state = protocol.CANCELLED if ctx.cancelled else protocol.SUCCEEDED
    ctx.emit({"type": "result", "state": state, "result": result or {}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
