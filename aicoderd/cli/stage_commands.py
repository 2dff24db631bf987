"""The standalone stage commands: pure transformations with explicit inputs and outputs, no
daemon needed, the same code the daemon's jobs run. Each stage's own command module (which
loads torch, numpy, gguf or llama.cpp) is imported by name only when its command runs, so the
CLI starts without them."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from aicoderd import protocol
from aicoderd.cli.common import JSON_OPTION, settings
from aicoderd.gguf_types import OLLAMA_QUANTIZE

PRESETS = ["tiny", "small", "base"]


def register(sub: Any) -> None:
    def add(name: str, help: str, module: str, action: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(name, help=help, parents=[JSON_OPTION])
        p.set_defaults(func=run_stage, stage_module=module, stage_action=action)
        return p

    corpus = sub.add_parser("corpus", help="build or inspect a training corpus (no daemon)")
    csub = corpus.add_subparsers(dest="action", required=True)
    build = csub.add_parser("build", help="clean, redact, de-duplicate files into a corpus")
    build.add_argument("--input", nargs="+", required=True, help="files or folders")
    build.add_argument("--out", required=True, help="the corpus directory (built incrementally)")
    build.add_argument("--full", action="store_true", help="forget earlier decisions")
    stats = csub.add_parser("stats", help="what the current snapshot holds")
    stats.add_argument("dir", nargs="?", help="corpus directory (default: data_dir/corpus)")
    stats.add_argument("--removed", action="store_true", help="list every removed document")
    for p in (build, stats):
        p.set_defaults(func=cmd_corpus)
        p.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="JSON")

    train = add("train", "train a tokenizer and a model from scratch", "training", "train")
    train.add_argument("--corpus", required=True, help="corpus directory (aicoder corpus build)")
    train.add_argument("--out", required=True, help="the model directory")
    train.add_argument("--preset", choices=PRESETS, help="model size")
    train.add_argument("--max-steps", type=int, help="optimizer steps (default from config)")
    train.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    ft = add("finetune", "finetune a model on review feedback files", "training", "finetune")
    ft.add_argument("--base", required=True, help="model directory (or version) to start from")
    ft.add_argument("--feedback", nargs="+", required=True, help="feedback JSONL files")
    ft.add_argument("--out", required=True, help="the finetuned model directory")
    ft.add_argument("--corpus", help="corpus for replay (default: the base model's)")
    ft.add_argument("--max-steps", type=int, help="finetuning steps (default from config)")
    ev = add("eval", "evaluate a model; with --against, apply the gate", "training", "evaluate")
    ev.set_defaults(func=run_eval)
    ev.add_argument("model", help="model directory (or version), or a GGUF (run in llama.cpp)")
    ev.add_argument("--against", help="the current model: promote only if not worse")
    ev.add_argument("--corpus", help="corpus whose eval split is used (default: the model's)")
    ev.add_argument("--feedback", nargs="+", help="feedback files (default: the daemon's)")

    ex = add("export", "convert a model directory to GGUF", "export", "export")
    ex.add_argument("model_dir", help="an HF model directory (save_pretrained)")
    ex.add_argument("-o", "--output", required=True, help="the GGUF file to write")
    ex.add_argument("--type", help="f32 f16 bf16 q8_0 q4_0 … q4_k_m (default from config)")
    ex.add_argument("--verify", action="store_true", help="check parity with llama.cpp")
    ex.add_argument("--converter", choices=["builtin", "llamacpp"], default="builtin")
    ex.add_argument("--model-name", help="general.name (default: the directory's name)")
    ex.add_argument("--model-version", help="general.version (default: the directory's name)")
    dep = add("deploy", "import a GGUF (or export a model) into Ollama", "ollama", "deploy")
    dep.add_argument("source", help="a .gguf file, or a model directory to export first")
    dep.add_argument("--name", help="NAME[:TAG] (default: ollama.model, tagged by version)")
    dep.add_argument("--quantize", type=str.lower, choices=OLLAMA_QUANTIZE, help="by Ollama")
    dep.add_argument("--force", action="store_true", help="deploy a GGUF not verified in llama.cpp")
    models = add("models", "the deployed versions in Ollama, with metrics", "ollama", "models")
    models.add_argument("--name", help="model name (default: ollama.model)")
    ad = add(
        "adapt", "teach an Ollama model your code (LoRA), deployed beside it", "adapt", "adapt"
    )
    ad.add_argument("--from", dest="source", required=True, help="NAME[:TAG], PATH.gguf or HF dir")
    ad.add_argument("--corpus", required=True, help="corpus directory (aicoder corpus build)")
    ad.add_argument("--out", required=True, help="working directory (run again to resume)")
    ad.add_argument("--max-steps", type=int, help="LoRA steps (default from config)")
    ad.add_argument("--feedback", nargs="+", help="feedback JSONL files to learn from")
    ad.add_argument("--mode", choices=["merged", "adapter"], help="default: adapt.mode")
    ad.add_argument("--version", help="the version tag (default: the --out folder's name)")
    ad.add_argument("--no-deploy", action="store_true", help="write and check, deploy nothing")
    rb = add("rollback", "point <model>:latest back to an earlier version", "ollama", "rollback")
    rb.add_argument("version", nargs="?", help="default: the version before the current")
    rb.add_argument("--name", help="model name (default: ollama.model)")


def run_stage(args: argparse.Namespace) -> int:
    """The stage's ``cli`` module, imported by name now: ``function(args, settings)``."""
    module = importlib.import_module(f"aicoderd.{args.stage_module}.cli")
    code: int = getattr(module, args.stage_action)(args, settings(args))
    return code


def run_eval(args: argparse.Namespace) -> int:
    """A GGUF is measured in llama.cpp by the export stage, a model directory by training."""
    if args.model.endswith(".gguf"):
        args.stage_module = "export"
    return run_stage(args)


def cmd_corpus(args: argparse.Namespace) -> int:
    """The build module loads numpy and ``datasets``: imported by name, only when one runs."""
    from aicoderd.corpus import snapshot

    config = settings(args)
    if args.action == "build":
        missing = [p for p in args.input if not os.path.lexists(p)]
        if missing:
            print(f"aicoder: no such file: {', '.join(missing)}", file=sys.stderr)
            return protocol.EXIT_USAGE
        corpus_cli = importlib.import_module("aicoderd.corpus.cli")
        manifest = corpus_cli.build(
            [Path(p) for p in args.input], Path(args.out), config, full=args.full, quiet=args.json
        )
        if manifest is None:
            manifest = snapshot.read_manifest(Path(args.out))
            if not args.json:
                print(f"corpus in {args.out} is up to date")
    else:
        root = Path(args.dir) if args.dir else config.corpus_dir
        manifest = snapshot.read_manifest(root)
        if manifest is None:
            print(f"aicoder: no corpus snapshot in {root}", file=sys.stderr)
            return protocol.EXIT_FAILED
        if args.removed:
            removed = list(snapshot.read_removed(root))
            if args.json:
                print(json.dumps(removed, indent=2))
            else:
                for r in removed:
                    print(f"{r['reason']:<28} {r['uri']}  {r['detail'] or ''}")
            return protocol.EXIT_OK
    if args.json:
        print(json.dumps(manifest, indent=2))
    elif manifest is not None:
        _print_corpus(manifest)
    return protocol.EXIT_OK


def _print_corpus(m: dict[str, Any]) -> None:
    print(
        f"snapshot {m['snapshot']} ({m['created']}): {m['documents']:,} documents,"
        f" {m['bytes']:,} bytes, ~{m['tokens_estimate']:,} tokens"
    )
    for name, split in m["splits"].items():
        print(f"  {name}: {split['documents']:,} documents, {split['bytes']:,} bytes")
    removed = ", ".join(f"{k} {v}" for k, v in m["removed"].items()) or "none"
    print(f"removed: {removed}")
    redactions = ", ".join(f"{k} {v}" for k, v in m["redactions"].items()) or "none"
    print(f"redactions: {redactions}")
