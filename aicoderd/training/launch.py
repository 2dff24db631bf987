"""The ``torchrun`` launcher: the daemon's ``train`` job, with ``training.launcher: torchrun``,
runs ``python -m torch.distributed.run <training.torchrun_args> -m aicoderd.training.launch
SPEC`` (DDP over the GPUs torchrun starts; no distribution layer of our own). Every process runs
the same :func:`~aicoderd.training.pretrain.pretrain`; the first writes files and prints its
progress as JSON lines, which the job relays. SIGTERM (a cancel) reaches torchrun, which passes
it to the workers: they checkpoint and stop.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from aicoderd import children, log
from aicoderd.config import Settings, TrainingConfig
from aicoderd.errors import TrainingError
from aicoderd.jobctx import JobContext


def torchrun_command(spec_path: Path, cfg: TrainingConfig, module: str = __name__) -> list[str]:
    """The command line the job runs (``torchrun`` is ``python -m torch.distributed.run``);
    ``module`` is the workers' entry point (another stage's launcher reads the same spec)."""
    return children.python(
        "-m", "torch.distributed.run", *cfg.torchrun_args, "-m", module, str(spec_path)
    )


def run_torchrun(
    action: str,
    args: dict[str, Any],
    settings: Settings,
    cfg: TrainingConfig,
    ctx: JobContext,
    module: str = __name__,
) -> dict[str, Any]:
    """Run ``action`` under torchrun, relaying progress; the first process's result."""
    spec = {"action": action, **args, "settings": settings.model_dump(mode="json")}
    spec["settings"]["training"] = cfg.model_dump(mode="json")
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(spec, fh)
    spec_path = Path(fh.name)
    result: dict[str, Any] | None = None
    try:
        proc = subprocess.Popen(
            torchrun_command(spec_path, cfg, module),
            stdout=subprocess.PIPE,  # the workers' messages; their logs go to our stderr
            text=True,
            bufsize=1,
            env=children.environment(),
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            msg = _message(line)
            if msg.get("type") == "progress":
                msg.pop("type")
                # The ranks report every step; the relay thins them out but never drops the last
                # step, an evaluation or a warning.
                last = msg.get("step") is not None and msg.get("step") == msg.get("total")
                ctx.progress(force=last or "eval_loss" in msg or "message" in msg, **msg)
            elif msg.get("type") == "result":
                msg.pop("type")
                result = msg
            if ctx.cancelled and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        code = proc.wait()
    finally:
        spec_path.unlink(missing_ok=True)
    if result is None:
        raise TrainingError(f"torchrun exited with status {code} without a result")
    return result


def _message(line: str) -> dict[str, Any]:
    try:
        msg = json.loads(line)
    except ValueError:
        return {}
    return msg if isinstance(msg, dict) else {}


def main(argv: list[str] | None = None) -> int:
    """One torchrun worker: read the spec, train, write JSON lines to stdout (first process
    only); everything else that would print goes to stderr, the job's log."""
    from aicoderd.training.pretrain import Hooks, pretrain

    messages = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    spec = json.loads(Path((argv or sys.argv[1:])[0]).read_text())
    settings = Settings.model_validate(spec["settings"])
    log.configure(settings.log_level, "json", stream=sys.stderr)
    stop = {"requested": False}

    def on_term(signum: int, frame: object) -> None:
        stop["requested"] = True

    signal.signal(signal.SIGTERM, on_term)

    def emit(message: dict[str, Any]) -> None:
        messages.write(json.dumps(message) + "\n")
        messages.flush()

    if spec["action"] != "train":
        raise TrainingError(f"unknown launch action {spec['action']!r}")
    metrics = pretrain(
        Path(spec["corpus"]),
        Path(spec["out"]),
        settings.training,
        cache_dir=settings.data_dir / "cache" / "tokens",
        resume=True,
        hooks=Hooks(
            progress=lambda f: emit({"type": "progress", **f}),
            warn=lambda m: emit({"type": "progress", "message": m}),
            should_stop=lambda: stop["requested"],
        ),
    )
    if os.environ.get("RANK", "0") == "0":
        emit({"type": "result", **{k: v for k, v in metrics.items() if k != "history"}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
