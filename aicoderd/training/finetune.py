"""Finetuning on code-review feedback: a compact implementation of three objectives summed in
one plain loop (TRL would install with our torch, but runs one objective per trainer; here
each step mixes all three, on our prompt format and tokenizer).

- **Completion loss** on chosen completions (accepted suggestions, corrections of edited ones),
  the prompt tokens masked out; each batch carries ``replay_fraction`` of pretraining blocks
  (full loss) against forgetting.
- **DPO** (Rafailov et al. 2023) on pairs — a prompt with a chosen and a rejected completion:
  ``-log sigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r)))`` with sequence log-probabilities
  and the base model, frozen, as the reference.
- **KTO-style** (Ethayarajh et al. 2024) on unpaired rejected completions: the undesirable term
  ``1 - sigmoid(beta * (z0 - (pi - ref)))`` with the reference point z0 fixed at 0.
"""

from __future__ import annotations

import copy
import math
import random
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aicoderd.config import TrainingConfig
from aicoderd.errors import JobSkipped
from aicoderd.training import data, likelihood, optim, report, runtime
from aicoderd.training.corpus import load_corpus
from aicoderd.training.fim import Fim
from aicoderd.training.gate import load_model
from aicoderd.training.preferences import Example, Feedback, FeedbackSet
from aicoderd.training.pretrain import Hooks

if TYPE_CHECKING:
    import torch


def finetune(
    base_dir: Path,
    feedback: Feedback,
    out_dir: Path,
    cfg: TrainingConfig,
    *,
    corpus_dir: Path | None = None,
    cache_dir: Path | None = None,
    hooks: Hooks | None = None,
) -> dict[str, Any]:
    """Finetune the model in ``base_dir`` into ``out_dir``; :class:`JobSkipped` when the
    feedback holds nothing usable."""
    import torch

    hooks = hooks or Hooks()
    fb = feedback.examples
    if not fb.usable:
        raise JobSkipped(feedback.nothing_usable())
    rt = runtime.detect(cfg.device)
    model, tok = load_model(base_dir, rt.device)
    context = int(model.config.max_position_embeddings)
    pad = int(tok.pad_token_id if tok.pad_token_id is not None else 0)
    reference = None
    if fb.pairs or fb.unpaired:
        reference = copy.deepcopy(model).eval().requires_grad_(False)
    replay = (
        _replay_blocks(corpus_dir, tok, cache_dir, context, cfg) if cfg.replay_fraction else None
    )
    before = _likelihoods(model, tok, fb, rt)

    torch.manual_seed(cfg.seed)
    pick = random.Random(cfg.seed)
    sft = [likelihood.encode(tok, ex, context) for ex in fb.chosen]
    n_replay = round(cfg.finetune_batch_size * cfg.replay_fraction) if replay is not None else 0
    n_sft = cfg.finetune_batch_size - n_replay
    beta = cfg.preference_beta
    optimizer = optim.adamw(model, cfg.finetune_learning_rate, 0.0, (cfg.beta1, cfg.beta2))
    total = cfg.finetune_steps
    scheduler = optim.schedule(
        optimizer, warmup=max(1, total // 10), total=total, floor=cfg.min_lr_ratio
    )
    losses: list[tuple[int, float]] = []
    stopped, started = "max_steps", time.perf_counter()
    model.train()
    for step in range(1, total + 1):
        if hooks.should_stop():
            stopped = "cancelled"
            break
        parts: dict[str, torch.Tensor] = {}
        if sft:
            rows = [pick.choice(sft) for _ in range(n_sft)]
            if replay is not None and n_replay:
                for i in torch.randint(len(replay), (n_replay,)).tolist():
                    block = replay[i].tolist()
                    rows.append((block, block))
            s, n = likelihood.token_logprobs(model, *likelihood.collate(rows, pad, rt.device))
            parts["completion"] = -s.sum() / n.sum().clamp(min=1)
        if fb.pairs and reference is not None:
            batch = [pick.choice(fb.pairs) for _ in range(cfg.finetune_batch_size)]
            chosen = [
                likelihood.encode(tok, Example(p.prompt, p.chosen, p.suffix), context)
                for p in batch
            ]
            rejected = [
                likelihood.encode(tok, Example(p.prompt, p.rejected, p.suffix), context)
                for p in batch
            ]
            margin = _logratio(model, reference, chosen, pad, rt) - _logratio(
                model, reference, rejected, pad, rt
            )
            parts["dpo"] = -torch.nn.functional.logsigmoid(beta * margin).mean()
        if fb.unpaired and reference is not None:
            batch_ex = [pick.choice(fb.unpaired) for _ in range(cfg.finetune_batch_size)]
            rows = [likelihood.encode(tok, ex, context) for ex in batch_ex]
            ratio = _logratio(model, reference, rows, pad, rt)
            parts["kto"] = (1 - torch.sigmoid(beta * (0.0 - ratio))).mean()
        loss = torch.stack(list(parts.values())).sum()
        loss.backward()  # type: ignore[no-untyped-call]
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        lr = optimizer.param_groups[0]["lr"]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append((step, float(loss.detach())))
        fields = {k: round(float(v.detach()), 4) for k, v in parts.items()}
        hooks.progress(
            {"step": step, "total": total, "loss": round(losses[-1][1], 4), "lr": lr, **fields}
        )

    if stopped == "cancelled":
        return {"stopped": stopped, "step": len(losses), "total": total}
    after = _likelihoods(model, tok, fb, rt)
    metrics: dict[str, Any] = {
        "kind": "finetune",
        "base": str(base_dir.absolute()),
        "feedback": feedback.origin,
        "examples": {
            "chosen": len(fb.chosen),
            "pairs": len(fb.pairs),
            "unpaired": len(fb.unpaired),
        },
        "invalid_lines": fb.invalid,
        "replay_fraction": cfg.replay_fraction if replay is not None else 0.0,
        "corpus_dir": str(corpus_dir.absolute()) if corpus_dir else None,
        "steps": len(losses),
        "stopped": stopped,
        "wall_seconds": round(time.perf_counter() - started, 3),
        "train_loss": losses[-1][1] if losses else None,
        "before": before,
        "after": after,
        "history": {"train": losses, "eval": []},
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(str(out_dir))
    model.save_pretrained(str(out_dir))
    report.write_metrics(out_dir, metrics)
    report.plot_losses(out_dir, losses, [], f"{out_dir.name} (finetune)")
    return metrics


def _logratio(
    model: torch.nn.Module,
    reference: torch.nn.Module,
    rows: list[tuple[list[int], list[int]]],
    pad: int,
    rt: runtime.Runtime,
) -> torch.Tensor:
    """log pi(completion | prompt) - log pi_ref(completion | prompt), per sequence."""
    import torch

    batch = likelihood.collate(rows, pad, rt.device)
    policy, _ = likelihood.token_logprobs(model, *batch)
    with torch.no_grad():
        ref, _ = likelihood.token_logprobs(reference, *batch)
    return policy - ref


def _replay_blocks(
    corpus_dir: Path | None, tok: Any, cache_dir: Path | None, context: int, cfg: TrainingConfig
) -> data.Tokens | None:
    """Pretraining blocks, fill-in-the-middle as in pretraining (the skill is kept too)."""
    if corpus_dir is None:
        return None
    streams = data.token_streams(load_corpus(corpus_dir), tok, cache_dir, Fim.from_config(cfg))
    return data.blocks(streams.train, context)


def _likelihoods(model: Any, tok: Any, fb: FeedbackSet, rt: runtime.Runtime) -> dict[str, float]:
    """Mean per-token log-likelihood of the chosen and the rejected completions."""
    out = {}
    if fb.chosen:
        out["chosen_logprob"] = likelihood.mean_logprob(model, tok, fb.chosen, rt.device)
    if fb.rejected:
        out["rejected_logprob"] = likelihood.mean_logprob(model, tok, fb.rejected, rt.device)
    model.train()
    return {k: v for k, v in out.items() if math.isfinite(v)}
