"""Next-token cross-entropy computed from the last hidden states in chunks of rows, so no
[batch, seq, vocab] logits tensor ever exists.

``LlamaForCausalLM(input_ids, labels=...)`` materialises the full fp32 logits and autograd keeps
them (and their softmax) for the backward pass: 268 MB per copy for the ``small`` preset at
batch 16 x 512, most of a CPU run's peak memory. Here the base model gives the hidden states and
:class:`LinearCrossEntropy` multiplies one chunk of rows by ``lm_head`` at a time. The loss is a
scalar, so each chunk's gradients (softmax - one-hot) with respect to the hidden states and to
``lm_head.weight`` are computed in the forward pass and only scaled in the backward: the FLOPs of
the plain loss, the memory of one chunk of logits.

Imported by the training process only (it needs torch at import time).
"""

from __future__ import annotations

from typing import Any

import torch

IGNORE = -100  # label ignored by the loss (HF's convention)
CHUNK_ROWS = 1024  # rows of logits alive at once: 32 MB at a vocabulary of 8,192 in fp32


class LinearCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of ``hidden @ weight.T`` against ``targets`` (``IGNORE`` skipped)."""

    @staticmethod
    def forward(
        ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, grads: bool
    ) -> torch.Tensor:
        total, grad_h, grad_w = _chunks(hidden, weight, targets, want_grads=grads)
        count = (targets != IGNORE).sum().clamp(min=1)
        ctx.save_for_backward(grad_h, grad_w, count)
        return total / count

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[Any, ...]:
        grad_h, grad_w, count = ctx.saved_tensors
        scale = grad_out / count
        return grad_h * scale.to(grad_h.dtype), grad_w * scale.to(grad_w.dtype), None, None


def _chunks(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, *, want_grads: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The summed loss and, when asked for, the gradients of that sum with respect to
    ``hidden`` and ``weight`` (empty tensors otherwise)."""
    device = hidden.device.type
    # Under autocast the matmuls run in its dtype, as lm_head's would; the softmax is fp32.
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else hidden.dtype
    w = weight.to(dtype)
    total = torch.zeros((), dtype=torch.float32, device=hidden.device)
    grad_h = torch.empty_like(hidden) if want_grads else hidden.new_empty(0)
    grad_w = torch.zeros_like(weight, dtype=torch.float32) if want_grads else weight.new_empty(0)
    with torch.autocast(device, enabled=False):
        for start in range(0, hidden.shape[0], CHUNK_ROWS):
            rows = slice(start, start + CHUNK_ROWS)
            h, t = hidden[rows].to(dtype), targets[rows]
            keep = (t != IGNORE).unsqueeze(1)
            picked = t.clamp(min=0).unsqueeze(1)
            logits = (h @ w.T).float()
            lse = torch.logsumexp(logits, dim=1, keepdim=True)
            total += ((lse - logits.gather(1, picked)) * keep).sum()
            if not want_grads:
                continue
            probs = logits.sub_(lse).exp_()  # the softmax, in the logits' memory
            probs.scatter_add_(1, picked, torch.full_like(probs[:, :1], -1.0))
            g = probs.mul_(keep).to(dtype)
            grad_h[rows] = g @ w
            grad_w += (g.T @ h).float()
    return total, grad_h, grad_w.to(weight.dtype)


def linear_cross_entropy(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """Mean cross-entropy of ``hidden @ weight.T`` ([N, H] x [V, H]) against ``targets``
    ([N]), without an [N, V] tensor."""
    grads = torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad)
    loss: torch.Tensor = LinearCrossEntropy.apply(hidden, weight, targets, grads)  # type: ignore[no-untyped-call]
    return loss


def next_tokens(input_ids: torch.Tensor) -> torch.Tensor:
    """Each position's next token, ``IGNORE`` after the last (HF's causal LM loss with
    ``labels=input_ids``), flattened."""
    pad = torch.full_like(input_ids[:, :1], IGNORE)
    return torch.cat([input_ids[:, 1:], pad], dim=1).reshape(-1)


class CausalLMLoss(torch.nn.Module):
    """``LlamaForCausalLM`` returning its mean next-token loss: what the loop trains (and DDP
    or ``torch.compile`` wrap), its parameters those of the model it holds."""

    def __init__(self, model: Any) -> None:  # LlamaForCausalLM (transformers types it loosely)
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        hidden = self.model.model(input_ids=input_ids).last_hidden_state
        flat = hidden.reshape(-1, hidden.shape[-1])
        return linear_cross_entropy(flat, self.model.lm_head.weight, next_tokens(input_ids))
