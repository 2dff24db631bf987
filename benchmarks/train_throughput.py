"""Training throughput and memory per preset, and how much of the loop's speed reaches the
user end to end: the loop, the loop with the old loss path, ``aicoder train`` and the daemon's
``train`` job, on the same corpus, preset and threads. Optionally HF ``Trainer`` (``--trainer``).

Corpus: the standard library's ``.py`` files (``--corpus-mb``, 1 MB by default; real code, local),
built into a corpus directory with ``aicoder corpus build``. Each measurement is its own process:

- ``loop`` (the baseline): :func:`aicoderd.training.pretrain.pretrain` in a child process,
  evaluation and checkpoints off; tokens/s over ``--steps`` steady steps (the first
  ``WARMUP`` steps and the last are left out), at the median step time. MFU = 6 N tokens/s
  over a matmul peak measured at the start and end of the child (N: parameters less the input
  embedding). Peak RSS: the child's ``ru_maxrss`` (tokenizer training and all).
- ``before``: the same loop with the old loss path: ``LlamaForCausalLM(input_ids, labels)``
  (full fp32 logits), each micro-batch in one pass, no memory handed back after tokenizing.
- ``cli``: ``aicoder train --json`` as a child process with the default training config (eval and
  checkpoints every 200 steps) for as many steps as the loop trains in ``--e2e-seconds``; tokens/s
  = tokens trained / the process's wall time (start to exit: imports, tokenizer, tokenizing,
  evaluations, checkpoints, saving); its first optimizer step after start; peak RSS (``wait4``).
- ``job``: the same run as the daemon's ``train`` job in a real daemon (started before the
  clock): submit to final state; the first step from the submit; peak RSS of the job's process.
- ``trainer`` (``--trainer``): ``transformers.Trainer`` on the same model, tokenizer and blocks.

    .venv/bin/python benchmarks/train_throughput.py [--presets tiny,starter,small]
        [--steps 8] [--e2e-seconds 60] [--threads 2] [--batch N] [--device cpu|cuda]
        [--parts loop,before,cli,job] [--trainer] [--compile]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import ROOT, Daemon, peak_rss_kb, wait_for

WARMUP = 2
PARTS = ("loop", "before", "cli", "job")


def make_corpus(root: Path, max_bytes: int) -> Path:
    """The standard library's .py files (tests excluded), shuffled with a fixed seed, up to
    ``max_bytes``, built with ``aicoder corpus build``."""
    lib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in lib.rglob("*.py") if not {"test", "tests", "idlelib"} & set(p.parts))
    random.Random(0).shuffle(files)
    src, size = root / "src", 0
    src.mkdir(parents=True)
    for i, f in enumerate(files):
        if not 500 <= f.stat().st_size <= 40_000:
            continue
        shutil.copyfile(f, src / f"{i:05d}_{f.name}")
        size += f.stat().st_size
        if size >= max_bytes:
            break
    out = root / "corpus"
    cmd = [sys.executable, "-m", "aicoderd.cli.main", "corpus", "build", "--input", str(src)]
    subprocess.run([*cmd, "--out", str(out)], check=True, capture_output=True, env=_env())
    return out


def _env() -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AICODER_")}
    return env | {"HF_HUB_OFFLINE": "1", "PYTHONPATH": path}


def matmul_peak(device: str = "cpu") -> float:
    import torch

    cuda = device == "cuda"
    n = 8192 if cuda else 2048
    dtype = torch.bfloat16 if cuda else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    torch.mm(a, b)
    sync()
    best = 0.0
    for _ in range(3):
        count, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < 1.0:
            torch.mm(a, b)
            count += 1
            sync()
        best = max(best, 2 * n**3 * count / (time.perf_counter() - t0))
    return best


def training(args: argparse.Namespace, **changes: Any) -> dict[str, Any]:
    """The training config of every run: the defaults, the preset, the threads."""
    cfg: dict[str, Any] = {"preset": args.preset, "threads": args.threads, "device": args.device}
    if args.batch:
        cfg["batch_size"] = args.batch
    if args.compile:
        cfg["compile"] = True
    return cfg | changes


# -- the children --------------------------------------------------------------------------------


def run_loop(args: argparse.Namespace, old_loss: bool = False) -> dict[str, Any]:
    from aicoderd.config import TrainingConfig
    from aicoderd.training.pretrain import Hooks, pretrain

    cfg = TrainingConfig(
        **training(
            args,
            max_steps=WARMUP + args.steps + 1,
            warmup_steps=2,
            eval_every=10_000,
            eval_batches=1,
            checkpoint_every=10_000,
        )
    )
    if old_loss:
        cfg = cfg.model_copy(update={"pass_tokens": 1 << 30})  # each micro-batch in one pass
        _old_loss_path()
    stamps: dict[int, float] = {}
    rss: list[float] = []

    def on_step(f: dict[str, Any]) -> None:
        stamps[f["step"]] = time.perf_counter()
        rss.append(_current_rss_mb())

    out = Path(args.work) / ("before" if old_loss else "loop")
    peak_before = matmul_peak(args.device)
    metrics = pretrain(Path(args.corpus), out, cfg, hooks=Hooks(progress=on_step))
    peak_after = matmul_peak(args.device)
    return {
        "tokens_per_s": _steady_rate(stamps, metrics["tokens_seen"] // metrics["steps"]),
        "tokens_per_step": metrics["tokens_seen"] // metrics["steps"],
        "parameters": metrics["parameters"],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "loop_rss_mb": max(rss),
        "peak_flops": max(peak_before, peak_after),
        **_gpu_memory(args),
    }


def _steady_rate(stamps: dict[int, float], tokens_per_step: int) -> float:
    """Tokens/s at the median step time over the steady steps (a shared machine's busy
    moments move the mean, not the median)."""
    times = sorted(stamps[s + 1] - stamps[s] for s in range(WARMUP, max(stamps) - 1))
    return tokens_per_step / times[len(times) // 2]


def _old_loss_path() -> None:
    """The loss as before: the model's own (full logits, kept for the backward pass), and
    the tokenizer's and the corpus's memory left where it was."""
    import torch

    from aicoderd.training import loss, runtime

    class FullLogits(torch.nn.Module):
        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.model(input_ids=input_ids, labels=input_ids).loss
            return out

    loss.CausalLMLoss = FullLogits  # type: ignore[misc,assignment]
    runtime.release_memory = lambda: None


def run_trainer(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from transformers import (
        LlamaConfig,
        LlamaForCausalLM,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from aicoderd.config import TrainingConfig
    from aicoderd.training import data
    from aicoderd.training import tokenizer as tokenization
    from aicoderd.training.corpus import load_corpus

    cfg = TrainingConfig(**training(args, max_steps=WARMUP + args.steps + 1, warmup_steps=2))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(args.work) / "loop"  # written by the loop's run: the same tokenizer and config
    tok = tokenization.load(out)
    config = LlamaConfig.from_pretrained(str(out))
    streams = data.token_streams(load_corpus(Path(args.corpus)), tok, None)
    blocks = data.blocks(streams.train, int(config.max_position_embeddings))

    class Blocks(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
        def __len__(self) -> int:
            return len(blocks)

        def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
            x = torch.from_numpy(blocks[i].astype("int64"))
            return {"input_ids": x, "labels": x}

    stamps: dict[int, float] = {}

    class Clock(TrainerCallback):
        def on_step_end(self, targs: Any, state: Any, control: Any, **kw: Any) -> None:
            stamps[state.global_step] = time.perf_counter()

    torch.manual_seed(cfg.seed)
    targs = TrainingArguments(
        output_dir=str(Path(args.work) / "trainer"),
        per_device_train_batch_size=cfg.batch_size,
        max_steps=cfg.max_steps,
        learning_rate=cfg.learning_rate,
        weight_decay=cfg.weight_decay,
        adam_beta1=cfg.beta1,
        adam_beta2=cfg.beta2,
        max_grad_norm=cfg.grad_clip,
        warmup_steps=cfg.warmup_steps,
        lr_scheduler_type="cosine",
        optim="adamw_torch_fused",
        logging_steps=10_000,
        save_strategy="no",
        report_to=[],
        use_cpu=args.device == "cpu",
        bf16=args.device == "cuda",
        torch_compile=args.compile,
        dataloader_num_workers=0,
        disable_tqdm=True,
        seed=cfg.seed,
    )
    model = LlamaForCausalLM(config)
    Trainer(model=model, args=targs, train_dataset=Blocks(), callbacks=[Clock()]).train()
    return {
        "tokens_per_s": _steady_rate(stamps, cfg.batch_size * blocks.shape[1]),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        **_gpu_memory(args),
    }


def _gpu_memory(args: argparse.Namespace) -> dict[str, Any]:
    if args.device != "cuda":
        return {}
    import torch

    return {"gpu_peak_gb": torch.cuda.max_memory_allocated() / 2**30}


def _current_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def child(part: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--part", part, "--corpus", args.corpus, "--work", args.work]
    cmd += ["--steps", str(args.steps), "--batch", str(args.batch or 0)]
    cmd += ["--presets", args.preset, "--device", args.device, "--threads", str(args.threads)]
    cmd += ["--compile"] * args.compile
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{part} failed:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


# -- end to end ----------------------------------------------------------------------------------


def run_cli(args: argparse.Namespace, steps: int) -> dict[str, Any]:
    """``aicoder train`` from process start to exit."""
    work = Path(args.work)
    config = work / "cli.yaml"
    import yaml

    settings = {"data_dir": str(work / "cli-data"), "training": training(args, max_steps=steps)}
    config.write_text(yaml.safe_dump(settings))
    out = work / "cli-model"
    cmd = [sys.executable, "-m", "aicoderd.cli.main", "--config", str(config), "train"]
    cmd += ["--corpus", args.corpus, "--out", str(out), "--json"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=_env())
    assert proc.stdout is not None
    first, result = None, {}
    for line in proc.stdout:
        msg = json.loads(line)
        if msg.get("type") == "progress" and first is None:
            first = time.perf_counter() - t0
        elif msg.get("type") == "result":
            result = msg
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if status != 0 or not result:
        raise SystemExit(f"aicoder train failed with status {status}")
    shutil.rmtree(out, ignore_errors=True)
    return {
        "wall_s": wall,
        "tokens": result["tokens_seen"],
        "tokens_per_s": result["tokens_seen"] / wall,
        "loop_tokens_per_s": result["tokens_per_s"],
        "first_step_s": first,
        "phases": result.get("phases", {}),
        "peak_rss_mb": usage.ru_maxrss / 1024,
    }


def run_job(args: argparse.Namespace, steps: int) -> dict[str, Any]:
    """The daemon's ``train`` job, from submit to its final state (the daemon already up)."""
    config = {"training": training(args), "corpus": {"auto_build": False}}
    with Daemon(config, name="train-bench") as d:
        d.start()
        client = d.client()
        params = {"corpus": args.corpus, "preset": args.preset, "max_steps": steps}
        t0 = time.perf_counter()
        job = client.post("/v1/jobs", json={"kind": "train", "params": params}).json()
        first: float | None = None
        peak = 0

        def done() -> dict[str, Any] | None:
            nonlocal first, peak
            row: dict[str, Any] = client.get(f"/v1/jobs/{job['id']}").json()
            if first is None and (row.get("progress") or {}).get("step"):
                first = time.perf_counter() - t0
            if row.get("pid"):
                peak = max(peak, peak_rss_kb(int(row["pid"])))
            return row if row["state"] not in ("queued", "running") else None

        row = wait_for(done, timeout=3600, interval=0.1)
        wall = time.perf_counter() - t0
        client.close()
    if row["state"] != "succeeded":
        raise SystemExit(f"train job {row['state']}: {row.get('error')}")
    tokens = row["result"]["tokens_seen"]
    return {
        "wall_s": wall,
        "tokens": tokens,
        "tokens_per_s": tokens / wall,
        "first_step_s": first,
        "peak_rss_mb": peak / 1024,
    }


# -- the report ----------------------------------------------------------------------------------


def bench_preset(args: argparse.Namespace) -> None:
    load = _load()
    loop = child("loop", args)
    rows = [("loop (baseline)", loop)]
    if "before" in args.parts.split(","):
        rows.append(("loop, old loss path", child("before", args)))
    if args.trainer:
        rows.append(("HF Trainer", child("trainer", args)))
    steps = max(
        WARMUP + 1, round(args.e2e_seconds * loop["tokens_per_s"] / loop["tokens_per_step"])
    )
    if "cli" in args.parts.split(","):
        rows.append((f"aicoder train, {steps} steps", run_cli(args, steps)))
    if "job" in args.parts.split(","):
        rows.append((f"train job, {steps} steps", run_job(args, steps)))
    _print(args, loop, rows, load)


def _print(
    args: argparse.Namespace, loop: dict[str, Any], rows: list[tuple[str, Any]], load: str
) -> None:
    from aicoderd.training.shapes import PRESETS, parameter_count

    s = PRESETS[args.preset]
    vocab = s.vocab + (loop["parameters"] - parameter_count(s)) // (2 * s.hidden)
    n = loop["parameters"] - s.hidden * vocab  # the input embedding is a lookup
    where = "CUDA bf16" if args.device == "cuda" else f"CPU fp32, {args.threads} threads"
    batch = f"{loop['tokens_per_step']} tokens a step"
    print(f"\n{args.preset}: {loop['parameters'] / 1e6:.1f} M parameters, {where}, {batch}")
    print(f"  load average at the start {load}, at the end {_load()}")
    print(f"  matmul peak {loop['peak_flops'] / 1e9:.1f} GFLOP/s")
    base = loop["tokens_per_s"]
    for name, r in rows:
        rate = r["tokens_per_s"]
        line = f"  {name:<26} {rate:9.0f} tokens/s  {rate / base:5.2f}x loop"
        line += f"  {1e6 / rate:7.1f} s/M tokens  peak RSS {r['peak_rss_mb']:6.0f} MB"
        line += f" ({r['peak_rss_mb'] / loop['peak_rss_mb']:.2f}x loop)"
        if r is loop:
            line += f"  MFU {6 * n * rate / loop['peak_flops']:.1%}"
        if r.get("first_step_s") is not None:
            line += f"  first step after {r['first_step_s']:.1f} s"
        if "gpu_peak_gb" in r:
            line += f"  GPU peak {r['gpu_peak_gb']:.1f} GiB"
        print(line)
        if r.get("phases"):
            print("    " + ", ".join(f"{k} {v:.1f} s" for k, v in r["phases"].items()))


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--part", choices=["loop", "before", "trainer"])
    p.add_argument("--corpus")
    p.add_argument("--work")
    p.add_argument("--presets", default="tiny,small")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--e2e-seconds", type=float, default=60.0)
    p.add_argument("--batch", type=int, default=0, help="sequences a step (0: the default)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--corpus-mb", type=float, default=1.0)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--parts", default=",".join(PARTS))
    p.add_argument("--trainer", action="store_true", help="also HF Trainer")
    p.add_argument("--compile", action="store_true", help="torch.compile in the loop runs")
    args = p.parse_args()
    args.preset = args.presets.split(",")[0]
    if args.part:
        run = {"loop": run_loop, "trainer": run_trainer}
        result = run_loop(args, old_loss=True) if args.part == "before" else run[args.part](args)
        print(json.dumps(result))
        return
    with tempfile.TemporaryDirectory(prefix="aicoder-bench-") as work:
        args.corpus = str(make_corpus(Path(work), int(args.corpus_mb * 1e6)))
        print(f"corpus: {args.corpus_mb} MB of the standard library's .py files")
        for preset in args.presets.split(","):
            args.preset = preset
            args.work = tempfile.mkdtemp(dir=work, prefix=f"{preset}-")
            bench_preset(args)


if __name__ == "__main__":
    main()
