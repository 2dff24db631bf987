"""Model quality with and without fill-in-the-middle pretraining, on real code nobody here wrote.

Corpus: the Python standard library of this machine (``sysconfig``'s ``stdlib``, test folders
and ``site-packages`` left out), built by ``aicoder corpus build`` (the real corpus stage: its
fixed 2 % eval split by document hash). Two models of the default preset are trained by
``aicoder train`` with the same steps and seed, ``training.fim_rate`` 0 and 0.5, each stopped at
a fixed step budget or a fixed wall budget, whichever comes first. Each is measured by ``aicoder
--json eval`` (PyTorch), and the FIM model's F16 GGUF also in llama.cpp (the deployed model):
bits per byte beside xz -9e and zstd -19, single-line infilling and next-line exact match, and
the wall time the evaluation took (process start and model load included; ``completion s`` is
the exact-match part alone).

    .venv/bin/python benchmarks/model_quality.py [--steps 60] [--wall 720] [--batch 8]
        [--cases 200] [--preset small] [--keep DIR]

Everything runs in child processes (``aicoder`` with a config file in a temp directory); the
load average is printed at the start and end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
SKIP_PARTS = {"test", "tests", "idle_test", "site-packages", "__pycache__"}
ROWS = (
    ("bits_per_byte", "bits/byte", "{:.3f}"),
    ("xz_bits_per_byte", "xz -9e bits/byte", "{:.3f}"),
    ("zstd_bits_per_byte", "zstd -19 bits/byte", "{:.3f}"),
    ("eval_loss", "eval loss (nats/token)", "{:.4f}"),
    ("infill_exact_match", "infilling exact match", "{:.3f}"),
    ("next_line_exact_match", "next-line exact match", "{:.3f}"),
    ("completion_cases", "cases", "{}"),
    ("steps", "training steps", "{}"),
    ("train_wall", "training wall s", "{:.0f}"),
    ("eval_wall", "evaluation wall s", "{:.1f}"),
    ("completion_seconds", "  of which exact match s", "{:.1f}"),
)


def stdlib_files(dest: Path) -> tuple[int, int]:
    """Copy the standard library's modules, tests left out, to ``dest``; (files, bytes)."""
    src = Path(sysconfig.get_paths()["stdlib"])
    files = size = 0
    for path in sorted(src.rglob("*.py")):
        rel = path.relative_to(src)
        if SKIP_PARTS & set(rel.parts) or rel.name.startswith("test_"):
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        files, size = files + 1, size + path.stat().st_size
    return files, size


def aicoder(config: Path, *args: str) -> tuple[dict[str, Any], float]:
    """``aicoder --config CONFIG ARGS``: the last JSON object it printed, and its wall time."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AICODER_")}
    env |= {"HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "aicoderd.cli.main", "--config", str(config), *args]
    started = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - started
    if proc.returncode not in (0, 1):  # eval exits 1 when a gate refuses; none is asked here
        sys.exit(f"{' '.join(args[:2])} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    try:
        return json.loads(proc.stdout), wall
    except ValueError:  # train --json: one object per line, the result last
        return json.loads(proc.stdout.strip().splitlines()[-1]), wall


def config(root: Path, args: argparse.Namespace, fim_rate: float) -> Path:
    training = {
        "preset": args.preset,
        "batch_size": args.batch,
        "max_steps": args.steps,
        "max_wall_seconds": args.wall,
        "eval_every": args.steps,
        "checkpoint_every": args.steps,
        "fim_rate": fim_rate,
        "completion_cases": args.cases,
        "device": "cpu",
    }
    path = root / f"config-fim{fim_rate:g}.yaml"
    path.write_text(yaml.safe_dump({"data_dir": str(root / "data"), "training": training}))
    return path


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--steps", type=int, default=60, help="step budget of each training")
    ap.add_argument("--wall", type=float, default=720, help="wall budget of each training (s)")
    ap.add_argument("--batch", type=int, default=8, help="sequences per step")
    ap.add_argument("--cases", type=int, default=200, help="completion cases")
    ap.add_argument("--preset", default="small")
    ap.add_argument("--rates", type=float, nargs="+", default=[0.0, 0.5])
    ap.add_argument("--no-gguf", action="store_true", help="skip the llama.cpp measurement")
    ap.add_argument("--keep", type=Path, help="work here and keep it (default: a temp dir)")
    args = ap.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="aicoder-quality-"))
    root.mkdir(parents=True, exist_ok=True)
    print(f"load average at start: {loadavg()} ({os.cpu_count()} CPUs); work in {root}")
    try:
        run(root, args)
    finally:
        print(f"load average at end: {loadavg()}")
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


def run(root: Path, args: argparse.Namespace) -> None:
    src = root / "stdlib"
    corpus = root / "corpus"
    if not (corpus / "manifest.json").exists():
        files, size = stdlib_files(src)
        print(f"corpus: {files} stdlib modules, {size / 1e6:.1f} MB")
        manifest, wall = aicoder(
            config(root, args, 0.0), "--json", "corpus", "build", "--input", str(src),
            "--out", str(corpus),
        )  # fmt: skip
        splits = {k: v["bytes"] for k, v in manifest["splits"].items()}
        print(f"corpus built in {wall:.0f} s: {manifest['documents']} documents, bytes {splits}")
    columns: dict[str, dict[str, Any]] = {}
    for rate in args.rates:
        cfg = config(root, args, rate)
        model = root / f"model-fim{rate:g}"
        trained, train_wall = aicoder(
            cfg, "train", "--corpus", str(corpus), "--out", str(model), "--json"
        )
        print(f"fim_rate {rate:g}: {trained['steps']} steps ({trained['stopped']}) in"
              f" {train_wall:.0f} s, load {loadavg()}", flush=True)  # fmt: skip
        measured, eval_wall = aicoder(cfg, "--json", "eval", str(model), "--corpus", str(corpus))
        columns[f"fim {rate:g} (pytorch)"] = measured | {
            "steps": trained["steps"],
            "train_wall": train_wall,
            "eval_wall": eval_wall,
        }
        print(f"  evaluated in {eval_wall:.1f} s, load {loadavg()}", flush=True)
        if rate > 0 and not args.no_gguf:
            gguf = root / f"model-fim{rate:g}.gguf"
            aicoder(cfg, "--json", "export", str(model), "-o", str(gguf), "--type", "f16")
            measured, eval_wall = aicoder(cfg, "--json", "eval", str(gguf), "--corpus", str(corpus))
            columns[f"fim {rate:g} (llama.cpp f16)"] = measured | {"eval_wall": eval_wall}
            print(f"  GGUF evaluated in {eval_wall:.1f} s, load {loadavg()}", flush=True)
    table(columns)


def table(columns: dict[str, dict[str, Any]]) -> None:
    names = list(columns)
    width = max(len(label) for _, label, _ in ROWS) + 2
    print()
    print("".ljust(width) + "".join(n.rjust(24) for n in names))
    for key, label, fmt in ROWS:
        cells = []
        for n in names:
            value = columns[n].get(key)
            cells.append((fmt.format(value) if value is not None else "—").rjust(24))
        print(label.ljust(width) + "".join(cells))


if __name__ == "__main__":
    main()
