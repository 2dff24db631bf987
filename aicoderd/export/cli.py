"""``aicoder export``: the standalone stage command (no daemon); the CLI imports this module
by name only when the command runs, so gguf and torch never load at CLI start."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from aicoderd import protocol
from aicoderd.config import Settings
from aicoderd.export import convert
from aicoderd.export.build import BuildOptions, build
from aicoderd.export.verify import Limits


def limits(settings: Settings) -> Limits:
    e = settings.export
    return Limits(e.lossless_kl, e.quantized_kl, e.quantized_top1, dict(e.per_type))


def llama_cpp_dir(settings: Settings) -> Path | None:
    """The configured checkout, else ``./llama.cpp`` when it holds more than its README."""
    if settings.export.llama_cpp_dir:
        return settings.export.llama_cpp_dir.expanduser()
    local = Path("llama.cpp")
    return (
        local if (local / "build").is_dir() or (local / "convert_hf_to_gguf.py").exists() else None
    )


def export(args: argparse.Namespace, settings: Settings) -> int:
    opts = BuildOptions(
        out_type=args.type or settings.export.type,
        verify=args.verify,
        limits=limits(settings),
        converter=args.converter,
        llama_cpp_dir=llama_cpp_dir(settings),
        meta=convert.Metadata(name=args.model_name, version=args.model_version),
    )

    def progress(done: int, total: int, name: str) -> None:
        if not args.json and sys.stderr.isatty():
            print(f"\r{done}/{total} tensors  {name:<40}", end="", file=sys.stderr, flush=True)

    result = build(Path(args.model_dir), Path(args.output), opts, progress)
    if args.json:
        print(json.dumps(result, indent=2))
        return protocol.EXIT_OK
    if sys.stderr.isatty():
        print(file=sys.stderr)
    print(f"wrote {result['gguf']} ({result['type']}, {result.get('bytes', 0) / 2**20:.1f} MiB)")
    if result.get("note"):
        print(result["note"])
    v = result.get("verify")
    if v:
        print(
            f"parity with PyTorch: passed — KL mean {v['kl_mean']:.2e}, max {v['kl_max']:.2e},"
            f" top-1 agreement {v['top1_agreement']:.3f} over {v['positions']} positions"
        )
    return protocol.EXIT_OK
