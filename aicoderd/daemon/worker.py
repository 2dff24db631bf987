"""Child-process entry point for one job: ``python -m aicoderd.daemon.worker`` reads the job
spec as JSON on stdin and writes NDJSON messages on stdout (progress, then one result)."""

from __future__ import annotations

import importlib
import json
import signal
import sys
import traceback
from typing import Any

from aicoderd.config import Settings
from aicoderd.errors import JobSkipped
from aicoderd.jobctx import JobContext


def _resolve(target: str) -> Any:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def main() -> int:
    spec = json.loads(sys.stdin.read())
    settings = Settings.model_validate(spec["settings"])
    ctx = JobContext(int(spec["job_id"]), settings)

    def on_term(signum: int, frame: object) -> None:
        ctx.cancelled = True

    signal.signal(signal.SIGTERM, on_term)
    try:
        result = _resolve(spec["target"])(spec.get("params") or {}, ctx)
    except JobSkipped as exc:
        ctx.emit({"type": "result", "state": "skipped", "error": str(exc)})
        return 0
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        ctx.emit({"type": "result", "state": "failed", "error": f"{type(exc).__name__}: {exc}"})
        return 1
    state = "cancelled" if ctx.cancelled else "succeeded"
    ctx.emit({"type": "result", "state": state, "result": result or {}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
