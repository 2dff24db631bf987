"""LoRA throughput of ``aicoder adapt`` on the CPU against ``peft`` + HF ``Trainer``, and the
time from ``adapt`` start to a deployed model, for a model shaped like Qwen2.5-Coder-0.5B
(hidden 896, 24 layers, 14 heads / 2 KV heads, MLP 4864, vocabulary 151,936, tied embeddings)
with random weights.

Three child processes, each measured alone (peak RSS is its ``ru_maxrss``):

- ``ours``: :func:`aicoderd.adapt.lora.train` on the model with LoRA (rank 16, every attention
  and MLP projection), random token blocks, ``warmup + steps`` steps, each step timed by the
  progress hook's clock;
- ``trainer``: ``peft.get_peft_model`` + ``transformers.Trainer`` on the same model, blocks,
  batch, LoRA config, AdamW, clipping; each step timed by a callback.

The two alternate for ``--rounds`` rounds (the machine is shared: a burst of other load then
hits both), and tokens/s is reported from the best step (the least disturbed) and the median.
- ``e2e``: the model exported as Q8_0 and placed in a fake Ollama's store as a pulled model,
  then :func:`aicoderd.adapt.run.adapt` timed from its start to the deployed
  ``<name>-mine:<version>``: tokenizer parity, loading (dequantizing the GGUF), ``steps`` LoRA
  steps, the gate (``--eval-bytes`` of eval text, base and adapted), merging, export, parity in
  llama.cpp, upload and create. Per 1 M training tokens = the measured fixed part (everything
  but the LoRA steps) + 1 M x the measured seconds per training token.

    .venv/bin/python benchmarks/adapt_throughput.py [--steps 4] [--batch 1] [--context 128]
        [--rounds 2] [--eval-bytes 8192] [--skip-e2e]

No GPU is used (none is lent to this machine's sessions); the same loop runs under torchrun
on GPUs (``training.launcher``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WARMUP = 2
SHAPE = {
    "hidden_size": 896,
    "num_hidden_layers": 24,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "intermediate_size": 4864,
    "vocab_size": 151936,
    "max_position_embeddings": 32768,
    "rope_theta": 1000000.0,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": True,
}
RANK, ALPHA, LR = 16, 32, 2e-4


def build_model() -> Any:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    return Qwen2ForCausalLM(Qwen2Config(**SHAPE))


def random_blocks(n: int, context: int) -> Any:
    import torch

    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 1000, (n, context), generator=g)


def step_times(stamps: list[float]) -> list[float]:
    """Seconds of each step after the warm-up ones, from the end-of-step clock readings."""
    return [b - a for a, b in itertools.pairwise(stamps[WARMUP - 1 :])]


def child_ours(args: argparse.Namespace) -> dict[str, Any]:
    from aicoderd.adapt import data, lora
    from aicoderd.config import AdaptConfig
    from aicoderd.training import runtime
    from aicoderd.training.pretrain import Hooks

    cfg = AdaptConfig(
        rank=RANK, alpha=ALPHA, learning_rate=LR, batch_size=args.batch,
        max_steps=WARMUP + args.steps, checkpoint_every=10**6,
    )  # fmt: skip
    model = lora.attach(build_model(), cfg)
    inputs = data.TrainingData(random_blocks(64, args.context), [], 0)
    stamps: list[float] = []
    with tempfile.TemporaryDirectory() as out:
        hooks = Hooks(progress=lambda f: stamps.append(time.perf_counter()))
        lora.train(model, inputs, Path(out), cfg, runtime.detect("cpu"), 0, hooks)
    return {"steps_s": step_times(stamps)}


def child_trainer(args: argparse.Namespace) -> dict[str, Any]:
    import datasets
    from peft import LoraConfig, get_peft_model
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from aicoderd.adapt.lora import TARGETS

    config = LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=list(TARGETS), bias="none")
    model = get_peft_model(build_model(), config)
    blocks = random_blocks(64, args.context)
    ds = datasets.Dataset.from_dict({"input_ids": blocks.tolist(), "labels": blocks.tolist()})
    stamps: list[float] = []

    class Clock(TrainerCallback):  # type: ignore[misc]
        def on_step_end(self, *a: Any, **k: Any) -> None:
            stamps.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as out:
        targs = TrainingArguments(
            output_dir=out, per_device_train_batch_size=args.batch,
            max_steps=WARMUP + args.steps, learning_rate=LR, weight_decay=0.0,
            max_grad_norm=1.0, lr_scheduler_type="cosine", warmup_steps=1,
            logging_strategy="no", save_strategy="no", report_to=[], use_cpu=True,
            dataloader_num_workers=0, disable_tqdm=True, seed=1337,
        )  # fmt: skip
        Trainer(model=model, args=targs, train_dataset=ds, callbacks=[Clock()]).train()
    return {"steps_s": step_times(stamps)}


def child_e2e(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="adapt-bench-") as tmp:
        return _e2e(args, Path(tmp))


def _e2e(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from aicoderd.adapt.run import Request, adapt
    from aicoderd.config import Settings
    from aicoderd.export import convert
    from aicoderd.ollama.client import Client
    from aicoderd.ollama.testing import FakeOllama
    from aicoderd.training.pretrain import Hooks
    from tests.export.tiny import train_tokenizer
    from tests.training_corpus import make_corpus

    model_dir = work / "qwen-0.5b-shaped"
    train_tokenizer(model_dir)
    build_model().save_pretrained(str(model_dir))
    gguf = convert.export(model_dir, work / "base-q8_0.gguf", "q8_0").path
    corpus = make_corpus(work / "corpus", documents=400)
    phases: list[tuple[str, float]] = []
    train: dict[str, float] = {}
    with FakeOllama(root=work / "ollama") as fake:
        fake.pull("qwen-shaped:q8", gguf, template="{{ .Prompt }}", parameters={"stop": ["x"]})
        settings = Settings.model_validate(
            {
                "data_dir": str(work / "data"),
                "ollama": {"host": fake.url},
                "training": {"device": "cpu"},
                "adapt": {
                    "ollama_models": str(fake.root), "max_steps": args.steps,
                    "batch_size": args.batch, "context_length": args.context,
                    "checkpoint_every": 10**6, "eval_bytes": args.eval_bytes,
                    "learning_rate": 1e-3,
                },
            }
        )  # fmt: skip

        def progress(f: dict[str, Any]) -> None:
            train.setdefault("first", time.perf_counter())
            train["last"], train["tokens"] = time.perf_counter(), f["step"]

        start = time.perf_counter()
        with Client(fake.url) as client:
            result = adapt(
                Request("qwen-shaped:q8", corpus, work / "v1", "v1", []),
                settings,
                client,
                Hooks(progress=progress),
                lambda m: phases.append((m, time.perf_counter() - start)),
            )
        total = time.perf_counter() - start
    tokens = int(result["training"]["tokens_seen"])
    per_step = (train["last"] - train["first"]) / max(1, train["tokens"] - 1)
    training = per_step * train["tokens"]
    return {
        "total_s": total,
        "training_s": training,
        "training_tokens": tokens,
        "fixed_s": total - training,
        "per_1m_tokens_s": total - training + training / tokens * 1e6,
        "deployed": (result.get("deployed") or {}).get("name"),
        "gate": result.get("gate"),
        "phases": phases,
    }


CHILDREN = {"ours": child_ours, "trainer": child_trainer, "e2e": child_e2e}


def run_child(name: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", name, "--steps", str(args.steps)]
    cmd += ["--batch", str(args.batch), "--context", str(args.context)]
    cmd += ["--eval-bytes", str(args.eval_bytes), "--rounds", str(args.rounds)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{name} failed:\n{out.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--context", type=int, default=128)
    p.add_argument("--eval-bytes", type=int, default=8192)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--skip-e2e", action="store_true")
    p.add_argument("--child", choices=list(CHILDREN))
    args = p.parse_args()
    if args.child:
        result = CHILDREN[args.child](args)
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return
    load = Path("/proc/loadavg").read_text().split()[:3]
    print(f"load average before: {' '.join(load)}; batch {args.batch} x {args.context} tokens")
    steps: dict[str, list[float]] = {"ours": [], "trainer": []}
    rss: dict[str, float] = {"ours": 0.0, "trainer": 0.0}
    for _ in range(args.rounds):  # alternated, so a burst of other load hits both sides
        for name in steps:
            r = run_child(name, args)
            steps[name] += r["steps_s"]
            rss[name] = max(rss[name], r["peak_rss_mb"])
    tokens = args.batch * args.context
    best = {name: tokens / min(s) for name, s in steps.items()}
    median = {name: tokens / statistics.median(s) for name, s in steps.items()}
    for name in steps:
        print(
            f"{name:8} best step {best[name]:7.1f} tokens/s, median {median[name]:7.1f}"
            f" ({len(steps[name])} steps)  peak RSS {rss[name]:6.0f} MB"
        )
    print(
        f"ours / Trainer: {best['ours'] / best['trainer']:.2f}x (best step),"
        f" {median['ours'] / median['trainer']:.2f}x (median step)"
    )
    if not args.skip_e2e:
        e = run_child("e2e", args)
        print(
            f"adapt start → deployed {e['deployed']}: {e['total_s']:.0f} s for"
            f" {e['training_tokens']:,} training tokens ({e['training_s']:.0f} s of LoRA steps,"
            f" {e['fixed_s']:.0f} s fixed); peak RSS {e['peak_rss_mb']:.0f} MB"
        )
        print(f"extrapolated per 1 M training tokens: {e['per_1m_tokens_s'] / 3600:.1f} h")
        for message, at in e["phases"]:
            print(f"  {at:7.1f} s  {message}")
    print(f"load average after: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")


if __name__ == "__main__":
    main()
