"""``aicoder adapt``: the same code the daemon's ``adapt`` job runs, with no daemon.
``aicoderd.cli.stage_commands`` imports this module by name inside the command, so the CLI
never loads torch at start."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from aicoderd import protocol
from aicoderd.adapt.run import Request
from aicoderd.adapt.run import adapt as run_adapt
from aicoderd.config import Settings
from aicoderd.ollama.client import Client
from aicoderd.training.cli import ProgressBar, _quiet_libraries, _Stop
from aicoderd.training.preferences import read_records
from aicoderd.training.pretrain import Hooks


def adapt(args: argparse.Namespace, settings: Settings) -> int:
    _quiet_libraries()
    overrides: dict[str, Any] = {}
    if args.max_steps:
        overrides["max_steps"] = args.max_steps
    if args.mode:
        overrides["mode"] = args.mode
    if overrides:
        settings = settings.model_copy(
            update={"adapt": settings.adapt.model_copy(update=overrides)}
        )
    records, invalid = read_records([Path(f) for f in args.feedback or []])
    out = Path(args.out)
    bar = ProgressBar(args.json)

    def say(message: str) -> None:
        if args.json:
            print(json.dumps({"type": "progress", "message": message}), flush=True)
        else:
            print(f"aicoder: {message}", file=sys.stderr, flush=True)

    if invalid:
        say(f"{invalid} invalid feedback lines skipped")
    req = Request(args.source, Path(args.corpus), out, args.version or out.name, records)
    req.deploy = not args.no_deploy
    with _Stop() as stop, Client.from_settings(settings) as client:
        hooks = Hooks(progress=bar, warn=bar.warn, should_stop=lambda: stop.requested)
        result = run_adapt(req, settings, client, hooks, say)
    if args.json:
        print(json.dumps({"type": "result", **result}, default=str), flush=True)
    else:
        _print(result)
    if result.get("stopped") == "cancelled" or not (result.get("gate") or {}).get("passed"):
        return protocol.EXIT_FAILED
    return protocol.EXIT_OK


def _print(r: dict[str, Any]) -> None:
    if r.get("stopped") == "cancelled":
        print(f"stopped; run the same command again to resume from {r['paths']['out']}")
        return
    base, adapted, gate = r["base"], r["adapted"], r["gate"]
    print(f"base    {r['source']}: {_figures(base)}")
    print(f"adapted {r['version']}: {_figures(adapted)}")
    print(f"gate: {'passed' if gate['passed'] else 'refused'} ({gate['reason']})")
    for key, path in r["paths"].items():
        print(f"  {key}: {path}")
    deployed = r.get("deployed")
    if deployed:
        print(f"deployed {deployed['name']} ({deployed['mode']}), {deployed.get('latest')} moved")


def _figures(m: dict[str, Any]) -> str:
    """Loss per byte, bits per byte, and the exact matches of one side of the gate."""
    out = f"loss/byte {m['eval_loss_per_byte']:.4f}, {m['bits_per_byte']:.3f} bits/byte"
    if m.get("infill_exact_match") is not None:
        out += f", infill exact match {m['infill_exact_match']:.3f}"
    return out + f", next line {m['next_line_exact_match']:.3f} ({m['completion_cases']} cases)"
