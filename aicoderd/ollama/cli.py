"""``aicoder deploy``, ``aicoder models`` and ``aicoder rollback``: standalone commands that
talk to Ollama directly (no daemon). Imported by name when one of them runs."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from aicoderd import protocol
from aicoderd.config import Settings
from aicoderd.errors import OllamaError
from aicoderd.export.build import BuildOptions, build, report_path, verified
from aicoderd.ollama.client import Client
from aicoderd.ollama.deploy import DeployOptions, deploy_gguf
from aicoderd.ollama.versions import point_latest, quality_line, versions

# Shown by `aicoder models`, the first one a version's GGUF has.
_LOSSES = ("eval_loss", "train_loss")


def gguf_for(source: Path, settings: Settings, force: bool, quiet: bool) -> Path:
    """``source`` itself when it is a GGUF that passed its parity check (or ``force``); a
    model directory is exported (and checked, unless ``export.verify`` is off) first."""
    if source.is_dir():
        out = settings.exports_dir / f"{source.resolve().name}-{settings.export.type}.gguf"
        build(source, out, BuildOptions.from_settings(settings))
        if not quiet:
            print(f"exported {source} to {out}", file=sys.stderr)
        source = out
    if not force:
        _check_verified(source)
    return source


def _check_verified(gguf: Path) -> None:
    state = verified(gguf)
    if state is None:
        raise OllamaError(
            f"{gguf} has no parity report ({report_path(gguf).name}): it was never checked in"
            " llama.cpp. Export it with `aicoder export --verify`, or deploy it anyway with"
            " --force"
        )
    if state is False:
        raise OllamaError(
            f"{gguf} failed its parity check (see {report_path(gguf).name}); deploy it anyway"
            " with --force"
        )


class _Bar:
    """A one-line progress bar on a terminal, plain status lines otherwise."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty()

    def bytes(self, phase: str, done: int, total: int) -> None:
        if self.quiet or not self.tty:
            return
        pct = done / total if total else 1.0
        bar = "#" * int(pct * 30)
        print(f"\r{phase:<10} [{bar:<30}] {pct:6.1%}", end="", file=sys.stderr, flush=True)
        if done >= total:
            print(file=sys.stderr)

    def status(self, msg: dict[str, Any]) -> None:
        if self.quiet:
            return
        if msg.get("total"):
            self.bytes(str(msg["status"])[:10], int(msg.get("completed") or 0), int(msg["total"]))
        elif self.tty or msg.get("status") in ("success", "writing manifest"):
            print(str(msg.get("status")), file=sys.stderr)


def deploy(args: argparse.Namespace, settings: Settings) -> int:
    bar = _Bar(args.json)
    if not Path(args.source).exists():
        raise OllamaError(f"{args.source}: no such GGUF file or model directory")
    gguf = gguf_for(Path(args.source), settings, args.force, args.json)
    opts = DeployOptions.from_settings(settings).named(args.name)
    if args.quantize:
        opts.quantize = args.quantize
    with Client.from_settings(settings) as client:
        result = deploy_gguf(client, gguf, opts, bar.status, bar.bytes)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        moved = f"; {result['latest']} now points to it" if result["latest"] else ""
        print(f"deployed {result['name']}{moved}")
    return protocol.EXIT_OK


def models(args: argparse.Namespace, settings: Settings) -> int:
    model = args.name or settings.ollama.model
    with Client.from_settings(settings) as client:
        found = versions(client, model)
        where = client.base_url
    for v in found:
        v["loss_plot"] = _loss_plot(settings, v["version"])
    if args.json:
        print(json.dumps(found, indent=2))
        return protocol.EXIT_OK
    if not found:
        print(f"no versions of {model} in Ollama at {where} (`aicoder deploy` adds one)")
    for v in found:
        mark = "*" if v["latest"] else " "
        print(f"{mark} {v['name']:<40} {v['quantization'] or '':<8} {_metrics(v['metrics'])}")
        if quality := quality_line(v["metrics"]):
            print(f"  {'':<40} {'':<8} {quality}")
        if v["loss_plot"]:
            print(f"  {'':<40} {'':<8} loss plot: {v['loss_plot']}")
    return protocol.EXIT_OK


def _loss_plot(settings: Settings, version: str) -> str | None:
    """The version's ``loss.png`` when it was trained here (a tag is a version's name)."""
    if not version or version.startswith(".") or "/" in version:
        return None
    plot = settings.models_dir / version / "loss.png"
    return str(plot) if plot.is_file() else None


def _metrics(m: dict[str, Any]) -> str:
    shown = [str(m["kind"])] if m.get("kind") else []
    loss = next((k for k in _LOSSES if isinstance(m.get(k), float)), None)
    if loss:
        shown.append(f"{loss} {m[loss]:.4f}")
    if isinstance(m.get("steps"), int):
        shown.append(f"{m['steps']} steps")
    return "  ".join(shown)


def rollback(args: argparse.Namespace, settings: Settings) -> int:
    with Client.from_settings(settings) as client:
        result = point_latest(client, args.name or settings.ollama.model, args.version)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['latest']} now points to {result['now']}")
    return protocol.EXIT_OK
