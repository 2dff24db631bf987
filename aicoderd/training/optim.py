"""The optimizer and the learning-rate schedule shared by pretraining and finetuning."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def adamw(
    model: torch.nn.Module, lr: float, weight_decay: float, betas: tuple[float, float]
) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices only (not on norms), as in GPT-2 / nanoGPT."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    # fused: one kernel for the whole update (CPU and CUDA since torch 2.4).
    return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=True)


def lr_factor(step: int, *, warmup: int, total: int, floor: float) -> float:
    """Linear warmup to 1, then cosine decay to ``floor`` at ``total`` steps."""
    if step < warmup:
        return (step + 1) / warmup
    if step >= total:
        return floor
    progress = (step - warmup) / max(1, total - warmup)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def schedule(
    optimizer: torch.optim.Optimizer, *, warmup: int, total: int, floor: float
) -> torch.optim.lr_scheduler.LambdaLR:
    import functools

    import torch

    factor = functools.partial(lr_factor, warmup=warmup, total=total, floor=floor)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
