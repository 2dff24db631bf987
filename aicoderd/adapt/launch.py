"""A torchrun worker of the ``adapt`` job (``training.launcher: torchrun``): reads the spec
:func:`aicoderd.training.launch.run_torchrun` wrote, trains the LoRA under DDP (the first
process writes the checkpoints and the adapter), and prints its progress and result as JSON
lines for the job to relay. The feedback is the run's pinned copy (the job wrote it)."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from aicoderd import log
from aicoderd.adapt.run import Request, prepare_run, train_phase
from aicoderd.config import Settings
from aicoderd.training.pretrain import Hooks


def main(argv: list[str] | None = None) -> int:
    messages = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    spec = json.loads(Path((argv or sys.argv[1:])[0]).read_text())
    settings = Settings.model_validate(spec["settings"])
    log.configure(settings.log_level, "json", stream=sys.stderr)
    stop = {"requested": False}
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.update(requested=True))

    def emit(message: dict[str, Any]) -> None:
        messages.write(json.dumps(message) + "\n")
        messages.flush()

    first = os.environ.get("RANK", "0") == "0"  # only the first process speaks
    out = Path(spec["out"])
    req = Request(spec["source"], Path(spec["corpus"]), out, spec["version"], [])
    prepared = prepare_run(req, settings, None, lambda m: None)
    _, metrics = train_phase(
        prepared,
        req,
        settings,
        Hooks(
            progress=lambda f: emit({"type": "progress", **f}),
            warn=lambda m: emit({"type": "progress", "message": m}) if first else None,
            should_stop=lambda: stop["requested"],
        ),
    )
    if first:
        emit({"type": "result", **{k: v for k, v in metrics.items() if k != "history"}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
