"""The gate: the adapted model against its own base, on the user's eval split, in the base's
tokens. Both are measured on the one model in memory (the LoRA switched off gives the base
exactly). Loss per byte must improve, or nothing is written for deployment."""

from __future__ import annotations

from typing import Any

from aicoderd.adapt import lora
from aicoderd.adapt.base import Base
from aicoderd.training import gate as training_gate
from aicoderd.training import runtime


def eval_texts(texts: list[str], limit: int) -> list[str]:
    """The eval split from its start, up to ``limit`` bytes (bounds the time on a CPU)."""
    out, size = [], 0
    for text in texts:
        if size >= limit:
            break
        out.append(text)
        size += len(text.encode("utf-8"))
    return out


def measure(
    model: Any, base: Base, texts: list[str], rt: runtime.Runtime, context: int
) -> dict[str, Any]:
    """Eval loss per byte of ``texts`` (documents joined by the base's end token)."""
    nll, tokens = training_gate.stream_nll(
        model, base.hf_tokenizer, texts, rt, eot=base.eos, context=context
    )
    size = sum(len(t.encode("utf-8")) for t in texts)
    return {
        "eval_loss": nll / max(tokens, 1),
        "eval_loss_per_byte": nll / max(size, 1),
        "eval_tokens": tokens,
        "eval_bytes": size,
    }


def compare(
    model: Any,
    base: Base,
    texts: list[str],
    rt: runtime.Runtime,
    context: int,
    tolerance: float = 0.0,
) -> dict[str, Any]:
    """Base and adapted measurements and the verdict: the adapted model's loss per byte must
    be below the base's times (1 - ``tolerance``)."""
    with lora.disabled(model):
        before = measure(model, base, texts, rt, context)
    after = measure(model, base, texts, rt, context)
    limit = before["eval_loss_per_byte"] * (1 - tolerance)
    passed = after["eval_loss_per_byte"] < limit
    word = "<" if passed else ">="
    reason = (
        f"loss/byte {after['eval_loss_per_byte']:.4f} {word} {limit:.4f}"
        f" (base {before['eval_loss_per_byte']:.4f})"
    )
    return {"base": before, "adapted": after, "passed": passed, "reason": reason}
