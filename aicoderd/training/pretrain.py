"""Pretraining from scratch: a tokenizer trained on the corpus, a Llama model, and a plain
training loop meant to be read top to bottom (nanoGPT's shape).

The loop is ours rather than HF ``Trainer``: it is shorter than the configuration Trainer
would need for exact resume of the data position, per-step progress events and our stop
conditions, and the benchmark (benchmarks/train_throughput.py) measures it at least as fast.

Output directory::

    OUT/config.json, model.safetensors, generation_config.json   save_pretrained, at the end
    OUT/tokenizer.json, tokenizer_config.json, chat_template.jinja   written first
    OUT/metrics.json, loss.png                                      at the end
    OUT/checkpoints/step-NNNNNNNN.pt                                every checkpoint_every steps
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aicoderd.config import TrainingConfig
from aicoderd.errors import TrainingError
from aicoderd.training import data, optim, prompt, report, runtime
from aicoderd.training import model as shapes
from aicoderd.training import tokenizer as tokenization
from aicoderd.training.checkpoint import Checkpoints
from aicoderd.training.corpus import load_corpus
from aicoderd.training.fim import Fim

if TYPE_CHECKING:
    import torch
    from transformers import LlamaConfig, PreTrainedTokenizerBase

CHECKPOINTS = "checkpoints"


def _ignore(_: Any) -> None:
    return None


@dataclass
class Hooks:
    """How a run talks to whoever started it (the CLI's progress bar, a daemon job)."""

    progress: Callable[[dict[str, Any]], None] = _ignore
    warn: Callable[[str], None] = _ignore
    should_stop: Callable[[], bool] = lambda: False  # checked every step: checkpoint and stop


@dataclass
class Progress:
    """What a checkpoint carries besides the tensors."""

    step: int = 0
    tokens: int = 0
    seconds: float = 0.0  # training wall time over all sessions
    train_losses: list[tuple[int, float]] = field(default_factory=list)
    eval_losses: list[tuple[int, float]] = field(default_factory=list)


def pretrain(
    corpus_dir: Path,
    out_dir: Path,
    cfg: TrainingConfig,
    *,
    cache_dir: Path | None = None,
    resume: bool = False,
    hooks: Hooks | None = None,
) -> dict[str, Any]:
    """Train (or continue training) the model in ``out_dir``; its metrics, with ``stopped``
    saying why it ended (``cancelled`` leaves a checkpoint and no final model)."""
    import torch
    from transformers import LlamaForCausalLM

    hooks = hooks or Hooks()
    rt = runtime.detect(cfg.device)
    corpus = load_corpus(corpus_dir)
    ckpts = Checkpoints(out_dir / CHECKPOINTS, cfg.keep_checkpoints)
    if ckpts.steps() and not resume:
        raise TrainingError(f"{out_dir} holds checkpoints: pass --resume, or choose a new --out")
    state = ckpts.latest(hooks.warn) if resume else None
    tok, config = _tokenizer_and_model_config(out_dir, corpus.train, cfg, rt, resumed=bool(state))

    # Data: the token streams (cached per snapshot), cut into blocks of the context length.
    streams = data.token_streams(corpus, tok, cache_dir, Fim.from_config(cfg))
    context = int(config.max_position_embeddings)
    train_blocks = data.blocks(streams.train, context)
    eval_blocks = data.blocks(streams.eval, context)[: cfg.eval_batches * cfg.batch_size]
    sampler = data.BatchSampler(len(train_blocks), cfg.seed)
    per_step = cfg.batch_size * cfg.grad_accum_steps * rt.world  # sequences per optimizer step
    tokens_per_step = per_step * train_blocks.shape[1]
    total = data.planned_steps(cfg.max_steps, cfg.max_tokens, tokens_per_step)

    torch.manual_seed(cfg.seed)
    model = LlamaForCausalLM(config)
    model.to(rt.device)  # type: ignore[arg-type]  # transformers' decorated to()
    optimizer = optim.adamw(model, cfg.learning_rate, cfg.weight_decay, (cfg.beta1, cfg.beta2))
    warmup = min(cfg.warmup_steps, max(1, total // 10))  # at most a tenth of the run
    scheduler = optim.schedule(optimizer, warmup=warmup, total=total, floor=cfg.min_lr_ratio)
    run = Progress()
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        sampler.load_state_dict(state["data"])
        _set_rng(state["rng"])
        run = Progress(**state["progress"])
    compiled = cfg.compile if cfg.compile is not None else rt.device.type == "cuda"
    trained: torch.nn.Module = torch.compile(model) if compiled else model  # type: ignore[assignment]
    if rt.distributed:
        trained = torch.nn.parallel.DistributedDataParallel(trained)

    def checkpoint() -> None:
        if rt.main:
            ckpts.save(run.step, _state(model, optimizer, scheduler, sampler, run))

    # The loop: one optimizer step per iteration, eval and checkpoint every N steps.
    stopped = "max_steps"
    session_start, session_tokens, session_seconds = run.step, 0, 0.0
    while run.step < total:
        out_of_time = cfg.max_wall_seconds is not None and run.seconds >= cfg.max_wall_seconds
        cancel, out_of_time = _agree([hooks.should_stop(), out_of_time], rt)
        if cancel or out_of_time:
            stopped = "cancelled" if cancel else "max_wall_seconds"
            break
        t0 = time.perf_counter()
        model.train()
        indices = sampler.take(per_step)[rt.rank :: rt.world]
        loss_sum = 0.0
        for micro in range(cfg.grad_accum_steps):
            rows = indices[micro * cfg.batch_size : (micro + 1) * cfg.batch_size]
            x = train_blocks[rows].to(rt.device, non_blocking=True)
            last = micro == cfg.grad_accum_steps - 1
            with _maybe_no_sync(trained, rt.distributed and not last), rt.autocast():
                loss = trained(input_ids=x, labels=x).loss / cfg.grad_accum_steps
            loss.backward()
            loss_sum += float(loss.detach())
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        lr = optimizer.param_groups[0]["lr"]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)

        dt = time.perf_counter() - t0
        run.step += 1
        run.tokens += tokens_per_step
        run.seconds += dt
        run.train_losses.append((run.step, loss_sum))
        session_tokens += tokens_per_step
        session_seconds += dt
        rate = session_tokens / session_seconds if session_seconds else 0.0
        steps_done = run.step - session_start
        eta = (total - run.step) * session_seconds / steps_done if steps_done else None
        fields = {"step": run.step, "total": total, "loss": round(loss_sum, 4), "lr": lr}
        fields |= {"tokens": run.tokens, "tokens_per_s": round(rate, 1), "eta_s": eta}
        if run.step % cfg.eval_every == 0 or run.step == total:
            run.eval_losses.append(
                (run.step, evaluate_loss(model, eval_blocks, cfg.batch_size, rt))
            )
            fields["eval_loss"] = round(run.eval_losses[-1][1], 4)
        if rt.main:
            hooks.progress(fields)
        if run.step % cfg.checkpoint_every == 0 and run.step < total:
            checkpoint()

    checkpoint()
    if stopped == "cancelled":
        runtime.finish(rt)
        return {"stopped": stopped, "step": run.step, "total": total}
    if not run.eval_losses or run.eval_losses[-1][0] != run.step:
        run.eval_losses.append((run.step, evaluate_loss(model, eval_blocks, cfg.batch_size, rt)))
    n_params = sum(p.numel() for p in model.parameters())
    metrics = _metrics(run, total, stopped, corpus_dir, corpus.snapshot, n_params, rt)
    metrics["unigram_eval_loss"] = data.unigram_loss(streams.train, streams.eval, len(tok))
    metrics |= {"fim_rate": cfg.fim_rate, "fim_spm_rate": cfg.fim_spm_rate}
    metrics["tokens_per_s"] = session_tokens / session_seconds if session_seconds else None
    if rt.main:
        model.save_pretrained(out_dir)
        report.write_metrics(out_dir, metrics)
        report.plot_losses(out_dir, run.train_losses, run.eval_losses, f"{out_dir.name}")
    runtime.finish(rt)
    return metrics


def _tokenizer_and_model_config(
    out_dir: Path, texts: list[str], cfg: TrainingConfig, rt: runtime.Runtime, *, resumed: bool
) -> tuple[PreTrainedTokenizerBase, LlamaConfig]:
    """A resumed run reuses what the first session wrote; a new one trains the tokenizer."""
    from transformers import LlamaConfig

    if not resumed and rt.main:
        shape = shapes.shape(cfg)
        tok = tokenization.build(texts, shape.vocab, cfg.pretokenizer)
        tok.model_max_length = shape.context
        eot = tokenization.token_id(tok, prompt.EOT)
        config = shapes.llama_config(shape, len(tok), eot)
        out_dir.mkdir(parents=True, exist_ok=True)
        tok.save_pretrained(str(out_dir))
        config.save_pretrained(str(out_dir))
    if rt.distributed:
        import torch

        torch.distributed.barrier()  # the other processes load what the first one wrote
    if resumed or not rt.main:
        return tokenization.load(out_dir), LlamaConfig.from_pretrained(
            str(out_dir), local_files_only=True
        )
    return tok, config


def evaluate_loss(
    model: torch.nn.Module, blocks: torch.Tensor, batch_size: int, rt: runtime.Runtime
) -> float:
    """Mean next-token loss (nats) over ``blocks``."""
    import torch

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad(), rt.autocast():
        for start in range(0, len(blocks), batch_size):
            x = blocks[start : start + batch_size].to(rt.device)
            predicted = x.shape[0] * (x.shape[1] - 1)
            total += float(model(input_ids=x, labels=x).loss) * predicted
            count += predicted
    model.train()
    return total / max(count, 1)


def _agree(flags: list[bool], rt: runtime.Runtime) -> list[bool]:
    """Under DDP every process must stop at the same step: a flag raised in any one holds."""
    if not rt.distributed:
        return flags
    import torch

    t = torch.tensor([int(f) for f in flags], device=rt.device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]


def _maybe_no_sync(model: torch.nn.Module, skip: bool) -> Any:
    """Under DDP, gradients are all-reduced on the last micro-batch only."""
    import contextlib

    return model.no_sync() if skip else contextlib.nullcontext()  # type: ignore[operator]


def _state(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    sampler: data.BatchSampler,
    run: Progress,
) -> dict[str, Any]:
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "data": sampler.state_dict(),
        "rng": _get_rng(),
        "progress": {
            "step": run.step,
            "tokens": run.tokens,
            "seconds": run.seconds,
            "train_losses": run.train_losses,
            "eval_losses": run.eval_losses,
        },
    }


def _get_rng() -> dict[str, Any]:
    import torch

    rng: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return rng


def _set_rng(rng: dict[str, Any]) -> None:
    import torch

    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def _metrics(
    run: Progress,
    total: int,
    stopped: str,
    corpus_dir: Path,
    snapshot: str,
    parameters: int,
    rt: runtime.Runtime,
) -> dict[str, Any]:
    eval_loss = run.eval_losses[-1][1]
    tail = [loss for _, loss in run.train_losses[-20:]]
    return {
        "kind": "pretrain",
        "corpus_dir": str(corpus_dir.absolute()),
        "corpus_snapshot": snapshot,
        "steps": run.step,
        "total_steps": total,
        "stopped": stopped,
        "tokens_seen": run.tokens,
        "wall_seconds": round(run.seconds, 3),
        "train_loss": sum(tail) / len(tail) if tail else None,
        "eval_loss": eval_loss,
        "perplexity": math.exp(min(eval_loss, 50.0)),
        "parameters": parameters,
        "device": str(rt.device),
        "precision": rt.dtype_name,
        "history": {"train": run.train_losses, "eval": run.eval_losses},
    }
