"""The training spec a run started with, kept beside its checkpoints as ``train_spec.json``.

A resumed run continues the run its checkpoints belong to: the same model shape, step count,
schedule and data, whatever the configuration says now. The first session writes the spec; a
later one reads it, reports every key the current configuration changed, and goes on with the
spec. Only the keys that say how a run executes (device, threads, launcher...) follow the
current configuration, and the other stages' keys (finetuning, the gate) are no part of it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aicoderd.config import TrainingConfig
from aicoderd.errors import TrainingError
from aicoderd.fsutil import atomic_write

SPEC = "train_spec.json"
HOW_IT_RUNS = frozenset(
    {"device", "compile", "launcher", "torchrun_args", "threads", "pass_tokens", "keep_checkpoints"}
)
OTHER_STAGES = frozenset(
    {
        "finetune_steps",
        "finetune_learning_rate",
        "finetune_batch_size",
        "replay_fraction",
        "preference_beta",
        "gate_tolerance",
    }
)


def _spec(cfg: TrainingConfig) -> dict[str, Any]:
    data = cfg.model_dump(mode="json")
    return {k: v for k, v in data.items() if k not in HOW_IT_RUNS | OTHER_STAGES}


def write(out_dir: Path, cfg: TrainingConfig, **extra: Any) -> None:
    """Record what this run trains (``extra``: facts shown to people, e.g. the shape)."""
    body = {"training": _spec(cfg), **extra}
    atomic_write(out_dir / SPEC, (json.dumps(body, indent=2) + "\n").encode())


def resume(out_dir: Path, cfg: TrainingConfig, warn: Callable[[str], None]) -> TrainingConfig:
    """The configuration a resumed run goes on with: the recorded spec, with the current
    configuration's keys for how it runs; each difference reported through ``warn``."""
    try:
        recorded = json.loads((out_dir / SPEC).read_text(encoding="utf-8"))["training"]
    except FileNotFoundError:
        warn(f"{out_dir / SPEC} is missing: resuming with the current configuration")
        return cfg
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TrainingError(f"cannot read {out_dir / SPEC}: {exc}") from exc
    current = _spec(cfg)
    changed = [k for k in sorted(set(recorded) | set(current)) if recorded.get(k) != current.get(k)]
    if changed:
        diffs = ", ".join(f"{k} {current.get(k)!r} (run: {recorded.get(k)!r})" for k in changed)
        warn(f"the configuration changed since this run started: {diffs}; resuming with {SPEC}")
    merged = cfg.model_dump(mode="json") | {k: v for k, v in recorded.items() if k in current}
    return TrainingConfig.model_validate(merged)
