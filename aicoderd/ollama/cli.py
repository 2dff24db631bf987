"""``aicoder deploy``, ``aicoder models`` and ``aicoder rollback``: standalone commands that
talk to Ollama directly (no daemon). Imported by name when one of them runs."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from aicoderd import protocol
from aicoderd.config import Settings
from aicoderd.errors import OllamaError
from aicoderd.ollama import deploy as deploying
from aicoderd.ollama.client import Client
from aicoderd.ollama.host import base_url


def client_for(settings: Settings, environ: dict[str, str] | None = None) -> Client:
    """The configured Ollama, else ``$OLLAMA_HOST``, parsed as Ollama parses it."""
    env = os.environ if environ is None else environ
    return Client(base_url(settings.ollama.host or env.get("OLLAMA_HOST")))


def options(settings: Settings, name: str | None = None) -> deploying.DeployOptions:
    o = settings.ollama
    return deploying.DeployOptions(
        name=name or o.model,
        system=o.system,
        license=o.license,
        num_ctx=o.num_ctx,
        quantize=o.quantize,
        replace=None if name else o.replace,
        min_version=o.min_version,
        check_generate=o.check_generate,
    )


def gguf_for(source: Path, settings: Settings, quiet: bool) -> Path:
    """``source`` itself when it is a GGUF; a model directory is exported (and checked) first."""
    if source.is_file():
        from aicoderd.export.build import verified

        if verified(source) is False:
            raise OllamaError(f"{source} failed its parity check; it is not deployable")
        return source
    from aicoderd.export import cli as export_cli
    from aicoderd.export.build import BuildOptions, build

    out = settings.exports_dir / f"{source.resolve().name}-{settings.export.type}.gguf"
    opts = BuildOptions(
        out_type=settings.export.type,
        verify=settings.export.verify,
        limits=export_cli.limits(settings),
        llama_cpp_dir=export_cli.llama_cpp_dir(settings),
    )
    result = build(source, out, opts)
    if not quiet:
        print(f"exported {source} to {out}", file=sys.stderr)
    return Path(result["gguf"])


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
    gguf = gguf_for(Path(args.source), settings, args.json)
    opts = options(settings, args.name)
    if args.quantize:
        opts.quantize = args.quantize
    with client_for(settings) as client:
        result = deploying.deploy(client, gguf, opts, bar.status, bar.bytes)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        moved = f"; {result['latest']} now points to it" if result["latest"] else ""
        print(f"deployed {result['name']}{moved}")
    return protocol.EXIT_OK


def models(args: argparse.Namespace, settings: Settings) -> int:
    with client_for(settings) as client:
        found = deploying.versions(client, args.name or settings.ollama.model)
    if args.json:
        print(json.dumps(found, indent=2))
        return protocol.EXIT_OK
    for v in found:
        m = v["metrics"]
        loss = f"eval_loss {m['eval_loss']:.4f}" if isinstance(m.get("eval_loss"), float) else ""
        mark = "*" if v["latest"] else " "
        print(f"{mark} {v['name']:<40} {v['quantization'] or '':<8} {loss}")
    return protocol.EXIT_OK


def rollback(args: argparse.Namespace, settings: Settings) -> int:
    with client_for(settings) as client:
        result = deploying.rollback(client, args.name or settings.ollama.model, args.version)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['latest']} now points to {result['now']}")
    return protocol.EXIT_OK
