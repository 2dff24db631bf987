"""The standalone commands ``aicoder train``, ``aicoder finetune`` and ``aicoder eval``: the
same code the daemon's jobs run, with no daemon. ``aicoderd.cli.main`` imports this module by
name inside the command, so the CLI never loads torch at start."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

from aicoderd import protocol
from aicoderd.config import Settings, TrainingConfig
from aicoderd.errors import TrainingError
from aicoderd.store import Store
from aicoderd.training import gate, preferences, report, versions
from aicoderd.training.preferences import FeedbackSet
from aicoderd.training.pretrain import Hooks


def _quiet_libraries() -> None:
    import transformers

    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    transformers.utils.logging.set_verbosity_error()  # type: ignore[no-untyped-call]


class ProgressBar:
    """One line on stderr, redrawn with ``\\r``; with --json, one JSON object per event."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.tty = sys.stderr.isatty()
        self._last = 0.0

    def __call__(self, f: dict[str, Any]) -> None:
        if self.as_json:
            print(json.dumps({"type": "progress", **f}), flush=True)
            return
        now = time.monotonic()
        final = f["step"] == f["total"]
        if not final and now - self._last < (0.2 if self.tty else 5.0):
            return
        self._last = now
        width = 30
        done = int(width * f["step"] / f["total"])
        eta = f.get("eta_s")
        extra = f" eval {f['eval_loss']:.3f}" if "eval_loss" in f else ""
        line = (
            f"[{'#' * done}{'.' * (width - done)}] {f['step']}/{f['total']}"
            f" loss {f['loss']:.3f}{extra} lr {f['lr']:.2e}"
            + (f" {f['tokens_per_s']:.0f} tok/s" if f.get("tokens_per_s") else "")
            + (f" eta {eta:.0f}s" if eta is not None else "")
        )
        end = "\n" if final or not self.tty else ""
        print(f"\r{line}", end=end, file=sys.stderr, flush=True)

    def warn(self, message: str) -> None:
        print(f"\naicoder: warning: {message}", file=sys.stderr, flush=True)


class _Stop:
    """SIGTERM / SIGINT: checkpoint and stop at the next step (handlers restored after)."""

    def __init__(self) -> None:
        self.requested = False

    def _on(self, signum: int, frame: object) -> None:
        self.requested = True

    def __enter__(self) -> _Stop:
        self._saved = {s: signal.signal(s, self._on) for s in (signal.SIGTERM, signal.SIGINT)}
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)


def _config(
    settings: Settings, preset: str | None, steps_key: str, steps: int | None
) -> TrainingConfig:
    """The config's training section with the command line's overrides, validated."""
    data = settings.training.model_dump()
    if preset:
        data["preset"] = preset
    if steps:
        data[steps_key] = steps
    return TrainingConfig.model_validate(data)


def train(args: argparse.Namespace, settings: Settings) -> int:
    from aicoderd.training.pretrain import pretrain

    _quiet_libraries()
    cfg = _config(settings, args.preset, "max_steps", args.max_steps)
    bar = ProgressBar(args.json)
    with _Stop() as stop:
        hooks = Hooks(progress=bar, warn=bar.warn, should_stop=lambda: stop.requested)
        metrics = pretrain(
            Path(args.corpus),
            Path(args.out),
            cfg,
            cache_dir=settings.data_dir / "cache" / "tokens",
            resume=args.resume,
            hooks=hooks,
        )
    return _finish(args, metrics, Path(args.out))


def finetune(args: argparse.Namespace, settings: Settings) -> int:
    from aicoderd.training.finetune import finetune as run

    _quiet_libraries()
    cfg = _config(settings, None, "finetune_steps", args.max_steps)
    bar = ProgressBar(args.json)
    base = versions.resolve(settings.models_dir, args.base)
    corpus = _corpus_for(args.corpus, base, settings)
    with _Stop() as stop:
        metrics = run(
            base,
            preferences.from_files([Path(f) for f in args.feedback]),
            Path(args.out),
            cfg,
            corpus_dir=corpus,
            cache_dir=settings.data_dir / "cache" / "tokens",
            hooks=Hooks(progress=bar, warn=bar.warn, should_stop=lambda: stop.requested),
        )
    return _finish(args, metrics, Path(args.out))


def _corpus_for(given: str | None, model_dir: Path, settings: Settings) -> Path | None:
    """--corpus, else the corpus the model was trained on, else data_dir/corpus if present."""
    if given:
        return Path(given)
    recorded = report.read_metrics(model_dir).get("corpus_dir")
    for candidate in (recorded, settings.corpus_dir):
        if candidate and (Path(candidate) / "manifest.json").exists():
            return Path(candidate)
    return None


def _finish(args: argparse.Namespace, metrics: dict[str, Any], out: Path) -> int:
    summary = {k: v for k, v in metrics.items() if k != "history"}
    if args.json:
        print(json.dumps({"type": "result", **summary}), flush=True)
    elif metrics["stopped"] == "cancelled":
        print(f"stopped at step {metrics['step']}; continue with --resume", file=sys.stderr)
    else:
        loss = metrics.get("eval_loss") or metrics.get("train_loss")
        bound = f", bounded by {metrics['stopped']}" if metrics["stopped"] != "max_steps" else ""
        print(f"model in {out} ({metrics['steps']} steps, loss {loss:.4f}{bound})")
    return protocol.EXIT_FAILED if metrics["stopped"] == "cancelled" else protocol.EXIT_OK


def evaluate(args: argparse.Namespace, settings: Settings) -> int:
    _quiet_libraries()
    model = versions.resolve(settings.models_dir, args.model)
    corpus = _corpus_for(args.corpus, model, settings)
    if corpus is None:
        raise TrainingError(f"no corpus to evaluate {model} on: pass --corpus")
    fb = _feedback_for_eval(args, settings)
    against = versions.resolve(settings.models_dir, args.against) if args.against else None
    outcome = gate.run(model, against, corpus, fb, settings.training)
    gate.record(outcome, model, settings.state_db, settings.training)
    out = {**outcome.result, "against": outcome.against}
    if outcome.decision is not None:
        out |= {"promote": outcome.decision.promoted, "reason": outcome.decision.reason}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print_eval(outcome.result)
        if outcome.against is not None and outcome.decision is not None:
            print_eval(outcome.against)
            verb = "promote" if outcome.decision.promoted else "keep current"
            print(f"{verb}: {outcome.decision.reason}")
    refused = outcome.decision is not None and not outcome.decision.promoted
    return protocol.EXIT_FAILED if refused else protocol.EXIT_OK


def _feedback_for_eval(args: argparse.Namespace, settings: Settings) -> FeedbackSet:
    """--feedback files, else the records the daemon stored (none without a state.db)."""
    if args.feedback:
        return preferences.from_files([Path(f) for f in args.feedback]).examples
    if not settings.state_db.exists():
        return FeedbackSet()
    store = Store(settings.state_db)
    try:
        return preferences.from_store(store.feedback.records()).examples
    finally:
        store.close()


def print_eval(r: dict[str, Any]) -> None:
    """One model's figures, three lines (also for a GGUF measured in llama.cpp)."""
    line = (
        f"{r['model']}: eval loss {r['eval_loss']:.4f} (perplexity {r['perplexity']:.2f},"
        f" {r['eval_loss_per_byte']:.4f}/byte over {r['eval_bytes']} bytes)"
    )
    if "feedback_margin" in r:
        line += f", feedback margin {r['feedback_margin']:+.4f}"
    print(line)
    print(
        f"  bits/byte {r['bits_per_byte']:.3f} (xz -9e {r['xz_bits_per_byte']:.3f},"
        f" zstd -19 {r['zstd_bits_per_byte']:.3f})"
    )
    print(
        f"  exact match over {r['completion_cases']} lines: infilling"
        f" {r['infill_exact_match']:.3f}, next line {r['next_line_exact_match']:.3f}"
        f" ({r['completion_seconds']:.1f} s, {r.get('backend', 'pytorch')})"
    )
