"""``aicoder export``: the standalone stage command (no daemon); the CLI imports this module
by name only when the command runs, so gguf and torch never load at CLI start."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from aicoderd import protocol
from aicoderd.config import Settings
from aicoderd.errors import ExportError
from aicoderd.export import completion, convert
from aicoderd.export.build import BuildOptions, build
from aicoderd.store import Store


def export(args: argparse.Namespace, settings: Settings) -> int:
    opts = replace(
        BuildOptions.from_settings(settings),
        out_type=args.type or settings.export.type,
        verify=args.verify,
        converter=args.converter,
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
    else:
        print("not verified: `aicoder deploy` refuses it without --force (export with --verify)")
    return protocol.EXIT_OK


def evaluate(args: argparse.Namespace, settings: Settings) -> int:
    """``aicoder eval MODEL.gguf``: the completion metrics of the deployed file, in llama.cpp."""
    from aicoderd.training.cli import print_eval

    gguf = Path(args.model)
    if args.against:
        raise ExportError("--against compares model directories (the gate); not a GGUF")
    if not gguf.is_file():
        raise ExportError(f"{gguf}: no such GGUF file")
    corpus = Path(args.corpus) if args.corpus else settings.corpus_dir
    result = completion.evaluate(gguf, corpus, cases=settings.training.completion_cases)
    store = Store(settings.state_db)
    try:
        store.evals.record(result)
    finally:
        store.close()
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_eval(result)
    return protocol.EXIT_OK
