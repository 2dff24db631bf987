"""Training throughput of a preset (``small`` by default) on the CPU, or on CUDA in bf16: our
loop against HF ``Trainer``.

Corpus: the installed ``transformers`` package's Python files (real code, local, ~4 MB), as a
corpus directory in the corpus stage's shape. Three child processes, each measured alone:

- ``peak``: matmul FLOP/s (fp32 2048² GEMMs on the CPU, bf16 8192² on CUDA; best of 3
  one-second runs) — the MFU denominator, measured again at the start and end of the other
  two children, best kept;
- ``ours``: :func:`aicoderd.training.pretrain.pretrain` (tokenizer, packing, the loop) for
  ``warmup + steps + 1`` steps; tokens/s from the progress hook's clock over the ``steps``
  steady steps (the first steps and the final step, which includes eval, are left out);
- ``trainer``: ``transformers.Trainer`` on the same model config, tokenizer, packed blocks,
  batch size, AdamW (fused), warmup + cosine and clipping, timed by a callback over the same
  steady steps.

MFU = 6 · N · tokens/s / peak, N = parameters less the input embedding (a lookup, no matmul);
attention's own FLOPs are left out, as in the 6N rule. Peak RSS is each child's ``ru_maxrss``
(ours includes training the BPE tokenizer, which the Trainer run reuses), and the largest
VmRSS seen during the training steps.

    .venv/bin/python benchmarks/train_throughput.py [--steps 8] [--batch 4] [--context 512]
        [--preset small] [--device cpu|cuda] [--compile]

On CUDA both runs use bf16 autocast (ours through its runtime, Trainer with ``bf16=True``) and
the table adds each run's peak GPU memory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WARMUP = 2


def make_corpus(root: Path, max_bytes: int = 4_000_000) -> Path:
    import datasets
    import transformers

    files = sorted(Path(transformers.__file__).parent.rglob("*.py"))
    texts, size = [], 0
    for f in files:
        text = f.read_text(encoding="utf-8", errors="replace")
        if len(text) < 200:
            continue
        texts.append(text)
        size += len(text)
        if size >= max_bytes:
            break
    split = ["eval" if i % 50 == 0 else "train" for i in range(len(texts))]
    datasets.Dataset.from_dict({"text": texts, "split": split}).save_to_disk(str(root / "dataset"))
    (root / "manifest.json").write_text(json.dumps({"snapshot": "bench"}))
    return root


def matmul_peak(device: str = "cpu") -> dict[str, Any]:
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
    return {"flops": best, "threads": torch.get_num_threads()}


def config(args: argparse.Namespace) -> Any:
    from aicoderd.config import TrainingConfig

    return TrainingConfig(
        preset=args.preset,
        context_length=args.context,
        batch_size=args.batch,
        max_steps=WARMUP + args.steps + 1,
        warmup_steps=2,
        eval_every=10_000,
        eval_batches=1,
        checkpoint_every=10_000,
        device=args.device,
        compile=args.compile,
    )


def run_ours(args: argparse.Namespace) -> dict[str, Any]:
    from aicoderd.training.pretrain import Hooks, pretrain

    cfg = config(args)
    stamps: dict[int, float] = {}
    rss: list[float] = []

    def on_step(f: dict[str, Any]) -> None:
        stamps[f["step"]] = time.perf_counter()
        rss.append(_current_rss_mb())

    hooks = Hooks(progress=on_step)
    out = Path(args.work) / "model"
    metrics = pretrain(
        Path(args.corpus), out, cfg, cache_dir=Path(args.work) / "cache", hooks=hooks
    )
    seconds = stamps[WARMUP + args.steps] - stamps[WARMUP]
    tokens = args.steps * cfg.batch_size * args.context
    result = {"tokens_per_s": tokens / seconds, "parameters": metrics["parameters"], **_rss()}
    return result | {"loop_rss_mb": max(rss), **_gpu_memory(args)}


def run_trainer(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from transformers import (
        LlamaConfig,
        LlamaForCausalLM,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from aicoderd.training import data
    from aicoderd.training import tokenizer as tokenization
    from aicoderd.training.corpus import load_corpus

    cfg = config(args)
    out = Path(args.work) / "model"  # written by the "ours" run: same tokenizer and config
    tok = tokenization.load(out)
    streams = data.token_streams(load_corpus(Path(args.corpus)), tok, Path(args.work) / "cache")
    blocks = data.blocks(streams.train, args.context)

    class Blocks(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
        def __len__(self) -> int:
            return len(blocks)

        def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
            return {"input_ids": blocks[i], "labels": blocks[i]}

    stamps: dict[int, float] = {}
    rss: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, targs: Any, state: Any, control: Any, **kw: Any) -> None:
            stamps[state.global_step] = time.perf_counter()
            rss.append(_current_rss_mb())

    torch.manual_seed(cfg.seed)
    model = LlamaForCausalLM(LlamaConfig.from_pretrained(str(out)))
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
    Trainer(model=model, args=targs, train_dataset=Blocks(), callbacks=[Clock()]).train()
    seconds = stamps[WARMUP + args.steps] - stamps[WARMUP]
    tokens = args.steps * cfg.batch_size * args.context
    return {
        "tokens_per_s": tokens / seconds,
        **_rss(),
        "loop_rss_mb": max(rss),
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


def _rss() -> dict[str, Any]:
    return {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def child(part: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--part", part, "--corpus", args.corpus, "--work", args.work]
    cmd += ["--steps", str(args.steps), "--batch", str(args.batch), "--context", str(args.context)]
    cmd += ["--preset", args.preset, "--device", args.device] + ["--compile"] * args.compile
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": path}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{part} failed:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--part", choices=["peak", "ours", "trainer"])
    p.add_argument("--corpus")
    p.add_argument("--work")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--context", type=int, default=512)
    p.add_argument("--preset", default="small")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--compile", action="store_true", help="torch.compile in both runs")
    args = p.parse_args()
    if args.part:
        run = {"peak": lambda: {}, "ours": lambda: run_ours(args)}
        run["trainer"] = lambda: run_trainer(args)
        before = matmul_peak(args.device)
        result = run[args.part]()
        after = matmul_peak(args.device)
        peaks = [before["flops"], after["flops"]]
        print(json.dumps({**result, "peaks": peaks, "threads": before["threads"]}))
        return
    with tempfile.TemporaryDirectory(prefix="aicoder-bench-") as work:
        args.work = work
        args.corpus = str(make_corpus(Path(work) / "corpus"))
        peak = child("peak", args)
        ours = child("ours", args)
        trainer = child("trainer", args)
    import torch

    from aicoderd.training.shapes import PRESETS

    # The machine is shared: the peak is the best of six measurements (start and end of each
    # child), so a busy moment does not inflate the MFU.
    flops = max(peak["peaks"] + ours["peaks"] + trainer["peaks"])
    n = ours["parameters"] - PRESETS[args.preset].hidden * _vocab(ours, args.preset)
    where = "CUDA bf16" if args.device == "cuda" else f"CPU fp32, {peak['threads']} threads"
    if args.device == "cuda":
        where += f" ({torch.cuda.get_device_name()})"
    compiled = ", torch.compile" if args.compile else ""
    print(f"{args.preset} preset, {where}{compiled}, batch {args.batch} x {args.context}")
    low = min(peak["peaks"] + ours["peaks"] + trainer["peaks"])
    print(
        f"torch {torch.__version__}; matmul peak {flops / 1e9:.1f} GFLOP/s (lowest {low / 1e9:.1f})"
    )
    print(f"parameters {ours['parameters'] / 1e6:.1f} M (matmul {n / 1e6:.1f} M)")
    for name, r in (("aicoderd loop", ours), ("HF Trainer", trainer)):
        mfu = 6 * n * r["tokens_per_s"] / flops
        print(
            f"{name:<14} {r['tokens_per_s']:8.0f} tokens/s  MFU {mfu:6.1%}"
            f"  peak RSS {r['peak_rss_mb']:.0f} MB (during the steps {r['loop_rss_mb']:.0f} MB)"
            + (f"  GPU peak {r['gpu_peak_gb']:.1f} GiB" if "gpu_peak_gb" in r else "")
        )
    print(
        f"ratio ours/Trainer: {ours['tokens_per_s'] / trainer['tokens_per_s']:.2f} (target >= 1.0)"
    )


def _vocab(ours: dict[str, Any], preset: str) -> int:
    """The vocabulary the run ended with (BPE may learn fewer merges than asked for)."""
    from aicoderd.training.shapes import PRESETS, parameter_count

    s = PRESETS[preset]
    return s.vocab + (ours["parameters"] - parameter_count(s)) // (2 * s.hidden)


if __name__ == "__main__":
    main()
