"""The gate: the adapted model against its own base, on the user's eval split, in the base's
tokens and with the base's own FIM tokens. Both are measured on the one model in memory (the
LoRA switched off gives the base exactly), by the completion metrics every model of the project
is measured with. Loss per byte must improve, and single-line infilling exact match (on the same
cases) must not drop below the base's, or nothing is written for deployment."""

from __future__ import annotations

from typing import Any

from aicoderd.adapt import lora
from aicoderd.adapt.base import Base
from aicoderd.config import AdaptConfig
from aicoderd.training import completion, prompt, runtime
from aicoderd.training.corpus import CorpusSplits


def completion_format(base: Base) -> completion.Format:
    """How the base is asked to complete: its own FIM tokens (none: next line only), its end
    token as the document separator and the stop."""
    tok = base.hf_tokenizer
    eos = str(tok.convert_ids_to_tokens(base.eos))
    if base.fim is None:
        return completion.Format(None, (eos,), eos)
    ids = (base.fim.prefix, base.fim.suffix, base.fim.middle)
    pre, suf, mid = (str(tok.convert_ids_to_tokens(i)) for i in ids)
    return completion.Format(prompt.FimMarkers(pre, suf, mid), (eos, pre), eos)


def measure(
    model: Any,
    base: Base,
    corpus: CorpusSplits,
    rt: runtime.Runtime,
    context: int,
    cfg: AdaptConfig,
) -> dict[str, Any]:
    """Loss and bits per byte of the eval split's start, beside xz and zstd, and the two exact
    matches on ``cfg.completion_cases`` lines (the same lines for every model of the corpus)."""
    backend = completion.TorchBackend(model, base.hf_tokenizer, rt.device, rt.autocast, context)
    return completion.evaluate(
        backend,
        corpus,
        cases=cfg.completion_cases,
        fmt=completion_format(base),
        eval_bytes=cfg.eval_bytes,
    )


def compare(
    model: Any,
    base: Base,
    corpus: CorpusSplits,
    rt: runtime.Runtime,
    context: int,
    cfg: AdaptConfig,
) -> dict[str, Any]:
    """Base and adapted measurements and the verdict: the adapted model's loss per byte must be
    below the base's times (1 - ``gate_tolerance``) and its infilling exact match at least the
    base's minus ``gate_infill_margin``."""
    with lora.disabled(model):
        before = measure(model, base, corpus, rt, context, cfg)
    after = measure(model, base, corpus, rt, context, cfg)
    return {"base": before, "adapted": after} | decide(before, after, cfg)


def decide(before: dict[str, Any], after: dict[str, Any], cfg: AdaptConfig) -> dict[str, Any]:
    """``passed`` and the ``reason``, naming each figure and its limit."""
    limit = before["eval_loss_per_byte"] * (1 - cfg.gate_tolerance)
    passed = after["eval_loss_per_byte"] < limit
    reasons = [
        f"loss/byte {after['eval_loss_per_byte']:.4f} {'<' if passed else '>='} {limit:.4f}"
        f" (base {before['eval_loss_per_byte']:.4f})"
    ]
    fill, held = after.get("infill_exact_match"), before.get("infill_exact_match")
    if fill is not None and held is not None:
        floor = held - cfg.gate_infill_margin
        kept = fill >= floor - 1e-12
        passed = passed and kept
        reasons.append(
            f"infill exact match {fill:.3f} {'>=' if kept else '<'} {max(floor, 0.0):.3f}"
            f" (base {held:.3f})"
        )
    return {"passed": passed, "reason": "; ".join(reasons)}
