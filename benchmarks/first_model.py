"""Which preset makes the best first model in a fixed wall-time budget on the CPU: each
candidate trains with ``max_wall_seconds`` (the daemon's first-model job) on the same corpus,
then is scored on held-out code.

Corpus: ``--corpus-mb`` (1) of the standard library's ``.py`` files built with
``aicoder corpus build``; held-out: the next ``--heldout-kb`` (200) of files, none of them in the
corpus, in the corpus stage's shape with these documents in the eval split. Each candidate is a
child process running :func:`aicoderd.training.pretrain.pretrain` with the default training
config, ``threads`` and ``max_wall_seconds``; then :func:`aicoderd.training.gate.evaluate`
(what the gate computes) on the held-out text: loss per byte, comparable across tokenizers.
Reported per candidate: steps and tokens trained, wall time, whether the schedule reached its
floor, eval loss against the unigram baseline of the run's own eval split, held-out loss per byte
and its ratio to the best candidate's.

    .venv/bin/python benchmarks/first_model.py [--budget 300] [--threads 2]
        [--candidates tiny,starter,small] [--corpus-mb 1] [--heldout-kb 200]

A candidate is a preset, optionally with explicit dimensions: ``tiny:num_layers=4/vocab_size=4096``.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_throughput import _env, _load


def _stdlib_files() -> list[Path]:
    lib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(
        p
        for p in lib.rglob("*.py")
        if not {"test", "tests", "idlelib"} & set(p.parts) and 500 <= p.stat().st_size <= 40_000
    )
    random.Random(0).shuffle(files)
    return files


def make_corpora(root: Path, corpus_bytes: int, heldout_bytes: int) -> tuple[Path, Path]:
    """The training corpus (built by ``aicoder corpus build``) and a held-out corpus of other
    files in its eval split (a corpus needs a train document too: one line)."""
    import datasets

    files, src, size = iter(_stdlib_files()), root / "src", 0
    src.mkdir(parents=True)
    for i, f in enumerate(files):
        shutil.copyfile(f, src / f"{i:05d}_{f.name}")
        size += f.stat().st_size
        if size >= corpus_bytes:
            break
    corpus = root / "corpus"
    cmd = [sys.executable, "-m", "aicoderd.cli.main", "corpus", "build", "--input", str(src)]
    subprocess.run([*cmd, "--out", str(corpus)], check=True, capture_output=True, env=_env())
    texts: list[str] = []
    while sum(map(len, texts)) < heldout_bytes:
        texts.append(next(files).read_text(encoding="utf-8"))
    heldout = root / "heldout"
    rows = {"text": ["x = 1\n", *texts], "split": ["train"] + ["eval"] * len(texts)}
    datasets.Dataset.from_dict(rows).save_to_disk(str(heldout / "dataset"))
    (heldout / "manifest.json").write_text(json.dumps({"snapshot": "heldout"}))
    return corpus, heldout


def run_candidate(args: argparse.Namespace) -> dict[str, Any]:
    from aicoderd.config import TrainingConfig
    from aicoderd.training.gate import evaluate
    from aicoderd.training.pretrain import pretrain

    preset, _, extra = args.candidate.partition(":")
    dims = {k: int(v) for k, v in (kv.split("=") for kv in extra.split("/") if kv)}
    cfg = TrainingConfig(
        preset=preset, threads=args.threads, max_wall_seconds=args.budget, device="cpu", **dims
    )
    out = Path(args.work) / args.candidate.replace("/", "_").replace(":", "_")
    metrics = pretrain(Path(args.corpus), out, cfg)
    scored = evaluate(out, Path(args.heldout), None, device="cpu")
    keep = ("steps", "tokens_seen", "wall_seconds", "schedule_complete", "eval_loss")
    return {k: metrics[k] for k in keep} | {
        "unigram": metrics["unigram_eval_loss"],
        "parameters": metrics["parameters"],
        "first_step_seconds": metrics["first_step_seconds"],
        "heldout_per_byte": scored["eval_loss_per_byte"],
        "heldout_bytes": scored["eval_bytes"],
        "plan": metrics["plan"],
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--candidate")
    p.add_argument("--corpus")
    p.add_argument("--heldout")
    p.add_argument("--work")
    p.add_argument("--budget", type=float, default=300.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--candidates", default="tiny,starter,small")
    p.add_argument("--corpus-mb", type=float, default=1.0)
    p.add_argument("--heldout-kb", type=float, default=200.0)
    args = p.parse_args()
    if args.candidate:
        print(json.dumps(run_candidate(args)))
        return
    with tempfile.TemporaryDirectory(prefix="aicoder-first-") as work:
        corpus, heldout = make_corpora(
            Path(work), int(args.corpus_mb * 1e6), int(args.heldout_kb * 1e3)
        )
        print(f"budget {args.budget:.0f} s, {args.threads} threads; corpus {args.corpus_mb} MB")
        results = {}
        for name in args.candidates.split(","):
            load = _load()
            cmd = [sys.executable, __file__, "--candidate", name, "--corpus", str(corpus)]
            cmd += ["--heldout", str(heldout), "--work", work, "--budget", str(args.budget)]
            cmd += ["--threads", str(args.threads)]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), check=False)
            if proc.returncode != 0:
                raise SystemExit(f"{name} failed:\n{proc.stderr[-3000:]}")
            results[name] = json.loads(proc.stdout.strip().splitlines()[-1]) | {"load": load}
            _print(name, results[name])
        best = min(r["heldout_per_byte"] for r in results.values())
        for name, r in results.items():
            ratio = r["heldout_per_byte"] / best
            print(f"{name} held-out {r['heldout_per_byte']:.4f} nats/byte = {ratio:.3f}x the best")


def _print(name: str, r: dict[str, Any]) -> None:
    print(
        f"{name} {r['parameters'] / 1e6:5.1f} M  {r['steps']:5d} steps ({r['plan']['bound']},"
        f" warmup {r['plan']['warmup']}, schedule complete: {r['schedule_complete']})"
        f"  {r['tokens_seen'] / 1e6:6.2f} M tokens in {r['wall_seconds']:.0f} s"
        f"  eval {r['eval_loss']:.3f} vs unigram {r['unigram']:.3f}"
        f" ({r['eval_loss'] / r['unigram']:.2f}x)  held-out {r['heldout_per_byte']:.4f} nats/byte"
        f"  first step {r['first_step_seconds']:.1f} s  (load {r['load']})",
        flush=True,
    )


if __name__ == "__main__":
    main()
