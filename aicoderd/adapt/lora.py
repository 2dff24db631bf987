"""LoRA (``peft``) on the attention and MLP projections, trained by a plain loop: each batch
mixes corpus blocks (continued pretraining, FIM included) with feedback completions.

Resumable after SIGKILL: every ``checkpoint_every`` steps the adapter weights, optimizer,
scheduler, both samplers' positions, the RNG and the progress go to ``checkpoints/step-N.pt``
(atomic, checksummed: :mod:`aicoderd.training.checkpoint`); a restarted run continues from the
newest usable one and draws the batches the uninterrupted run would have. Bounded by steps,
tokens and wall time; under ``torchrun`` it runs as DDP (the first process writes).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aicoderd.adapt.data import TrainingData
from aicoderd.config import AdaptConfig
from aicoderd.training import data, likelihood, optim, runtime
from aicoderd.training.checkpoint import Checkpoints
from aicoderd.training.pretrain import Hooks

if TYPE_CHECKING:
    pass

TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
CHECKPOINTS = "checkpoints"
ADAPTER_DIR = "lora"  # peft's save_pretrained: adapter_config.json + adapter_model.safetensors
WARMUP_FRACTION = 0.05


@dataclass
class Run:
    step: int = 0
    tokens: int = 0
    seconds: float = 0.0
    losses: list[tuple[int, float]] = field(default_factory=list)


def attach(model: Any, cfg: AdaptConfig) -> Any:
    """``model`` with LoRA on every attention and MLP projection (the rest frozen)."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=cfg.rank,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=list(TARGETS),
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def load_adapter(model: Any, adapter_dir: Path) -> Any:
    """A saved adapter on the base ``model``."""
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(adapter_dir))


def split_batch(cfg: AdaptConfig, feedback: int) -> tuple[int, int]:
    """(corpus rows, feedback rows) per step."""
    fb = round(cfg.batch_size * cfg.feedback_fraction) if feedback else 0
    return cfg.batch_size - fb, fb


def train(
    model: Any,
    inputs: TrainingData,
    out_dir: Path,
    cfg: AdaptConfig,
    rt: runtime.Runtime,
    pad: int,
    hooks: Hooks,
) -> dict[str, Any]:
    """Train the LoRA of ``model`` (a peft model); ``stopped`` says why it ended
    (``cancelled`` leaves a checkpoint and no adapter)."""
    import torch
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    ckpts = Checkpoints(out_dir / CHECKPOINTS, keep=2)
    n_corpus, n_fb = split_batch(cfg, len(inputs.feedback))
    blocks = data.BatchSampler(len(inputs.blocks), cfg.seed)
    fb_sampler = data.BatchSampler(max(1, len(inputs.feedback)), cfg.seed + 1)
    per_step = (n_corpus * inputs.blocks.shape[1] + n_fb * _mean_len(inputs)) * rt.world
    total = data.planned_steps(cfg.max_steps, cfg.max_tokens, max(1, int(per_step)))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=0.0)
    warmup = max(1, int(total * WARMUP_FRACTION))
    scheduler = optim.schedule(optimizer, warmup=warmup, total=total, floor=0.1)
    run = Run()
    state = ckpts.latest(hooks.warn)
    if state is not None:
        set_peft_model_state_dict(model, state["lora"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        blocks.load_state_dict(state["blocks"])
        fb_sampler.load_state_dict(state["feedback"])
        torch.set_rng_state(state["rng"])
        run = Run(**state["progress"])
    trained: Any = model
    if rt.distributed:
        trained = torch.nn.parallel.DistributedDataParallel(model)

    def checkpoint() -> None:
        if rt.main:
            ckpts.save(
                run.step,
                {
                    "lora": get_peft_model_state_dict(model),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "blocks": blocks.state_dict(),
                    "feedback": fb_sampler.state_dict(),
                    "rng": torch.get_rng_state(),
                    "progress": run.__dict__,
                },
            )

    stopped, session_tokens, session_seconds, first = "max_steps", 0, 0.0, run.step
    model.train()
    while run.step < total:
        late = cfg.max_wall_seconds is not None and run.seconds >= cfg.max_wall_seconds
        cancel, late = _agree([hooks.should_stop(), late], rt)
        if cancel or late:
            stopped = "cancelled" if cancel else "max_wall_seconds"
            break
        t0 = time.perf_counter()
        rows = [(b, b) for b in inputs.blocks[_mine(blocks, n_corpus, rt)].tolist()]
        if n_fb:
            rows += [inputs.feedback[i] for i in _mine(fb_sampler, n_fb, rt)]
        ids, mask, labels = likelihood.collate(rows, pad, rt.device)
        # no padding (corpus blocks alone): no mask, so attention takes its causal fast path
        padded = {} if bool(mask.all()) else {"attention_mask": mask}
        with rt.autocast():
            loss = trained(input_ids=ids, labels=labels, **padded).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        dt = time.perf_counter() - t0
        tokens = int(mask.sum()) * rt.world
        run.step += 1
        run.tokens += tokens
        run.seconds += dt
        run.losses.append((run.step, float(loss.detach())))
        session_tokens += tokens
        session_seconds += dt
        done = run.step - first
        if rt.main:
            hooks.progress(
                {
                    "step": run.step,
                    "total": total,
                    "loss": round(run.losses[-1][1], 4),
                    "lr": scheduler.get_last_lr()[0],
                    "tokens_per_s": round(session_tokens / session_seconds, 1),
                    "eta_s": round((total - run.step) * session_seconds / done, 1),
                }
            )
        if run.step % cfg.checkpoint_every == 0 and run.step < total:
            checkpoint()
    checkpoint()
    if stopped != "cancelled" and rt.main:
        model.save_pretrained(str(out_dir / ADAPTER_DIR), save_embedding_layers=False)
    tail = [loss for _, loss in run.losses[-20:]]
    return {
        "stopped": stopped,
        "steps": run.step,
        "total_steps": total,
        "tokens_seen": run.tokens,
        "wall_seconds": round(run.seconds, 3),
        "train_loss": sum(tail) / len(tail) if tail else None,
        "tokens_per_s": round(session_tokens / session_seconds, 1) if session_seconds else None,
        "history": run.losses,
    }


def _mean_len(inputs: TrainingData) -> float:
    if not inputs.feedback:
        return 0.0
    return sum(len(ids) for ids, _ in inputs.feedback) / len(inputs.feedback)


def _mine(sampler: data.BatchSampler, count: int, rt: runtime.Runtime) -> list[int]:
    """This process's share of the next ``count`` rows of every process."""
    return sampler.take(count * rt.world)[rt.rank :: rt.world]


def _agree(flags: list[bool], rt: runtime.Runtime) -> list[bool]:
    """Under DDP every process stops at the same step: a flag raised in one holds for all."""
    if not rt.distributed:
        return flags
    import torch

    t = torch.tensor([int(f) for f in flags], device=rt.device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]


def disabled(model: Any) -> contextlib.AbstractContextManager[Any]:
    """The base model's behaviour: the LoRA switched off for the block."""
    return model.disable_adapter()  # type: ignore[no-any-return]
