"""The evaluation gate: eval loss on the fixed held-out split, and, when feedback exists, how
much likelier the model finds accepted suggestions than rejected ones.

Two models trained on different corpus snapshots have different tokenizers, so their per-token
losses are not comparable; the gate compares the loss per *byte* of the same eval text (for
one tokenizer the two rank identically). A candidate is promoted when its loss per byte ≤ the
current model's * (1 + tolerance). Every evaluation is recorded in ``model_evals``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aicoderd.errors import TrainingError
from aicoderd.training import likelihood, prompt, runtime
from aicoderd.training import tokenizer as tokenization
from aicoderd.training.corpus import load_corpus
from aicoderd.training.preferences import FeedbackSet

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

EVAL_BYTES = 2 * 2**20  # eval text used, from the start of the eval split: bounds the time


@dataclass(frozen=True)
class Decision:
    promoted: bool
    reason: str


def load_model(model_dir: Path, device: torch.device) -> tuple[Any, PreTrainedTokenizerBase]:
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(str(model_dir), local_files_only=True)
        model.to(device)  # type: ignore[arg-type]  # transformers' decorated to()
    except (OSError, ValueError) as exc:
        raise TrainingError(f"cannot load the model in {model_dir}: {exc}") from exc
    return model, tokenization.load(model_dir)


def evaluate(
    model_dir: Path, corpus_dir: Path, feedback: FeedbackSet | None, *, device: str = "auto"
) -> dict[str, Any]:
    """Eval loss (per token and per byte), perplexity and the feedback margin of one model."""
    rt = runtime.detect(device)
    model, tok = load_model(model_dir, rt.device)
    corpus = load_corpus(corpus_dir)
    texts, size = [], 0
    for text in corpus.eval:
        if size >= EVAL_BYTES:
            break
        texts.append(text)
        size += len(text.encode("utf-8"))
    nll, tokens = _stream_nll(model, tok, texts, rt)
    out: dict[str, Any] = {
        "model": str(model_dir.absolute()),
        "corpus_snapshot": corpus.snapshot,
        "eval_loss": nll / tokens,
        "perplexity": math.exp(min(nll / tokens, 50.0)),
        "eval_loss_per_byte": nll / size,
        "eval_tokens": tokens,
        "eval_bytes": size,
    }
    if feedback is not None and feedback.chosen and feedback.rejected:
        good = likelihood.mean_logprob(model, tok, feedback.chosen, rt.device)
        bad = likelihood.mean_logprob(model, tok, feedback.rejected, rt.device)
        out |= {"accepted_logprob": good, "rejected_logprob": bad, "feedback_margin": good - bad}
    return out


def _stream_nll(
    model: Any, tok: PreTrainedTokenizerBase, texts: list[str], rt: runtime.Runtime
) -> tuple[float, int]:
    """Summed negative log-likelihood of every token of the EOT-joined texts (each window
    overlaps the previous by one token, so every token but the first is predicted once)."""
    import torch

    eot = tokenization.token_id(tok, prompt.EOT)
    ids = [eot]
    for doc in tokenization.encode_text(tok, texts):
        ids += [*doc, eot]
    context = int(model.config.max_position_embeddings)
    windows = [ids[s : s + context] for s in range(0, max(len(ids) - 1, 1), context - 1)]
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad(), rt.autocast():
        for w in windows:
            if len(w) < 2:
                continue
            x = torch.tensor([w], device=rt.device)
            loss = model(input_ids=x, labels=x).loss
            total += float(loss) * (len(w) - 1)
            count += len(w) - 1
    return total, count


def decide(candidate: dict[str, Any], current: dict[str, Any], tolerance: float) -> Decision:
    """Promote when the candidate's loss per byte ≤ the current one's * (1 + tolerance)."""
    cand, cur = candidate["eval_loss_per_byte"], current["eval_loss_per_byte"]
    limit = cur * (1 + tolerance)
    if cand <= limit:
        return Decision(True, f"eval loss/byte {cand:.4f} <= {limit:.4f} (current {cur:.4f})")
    return Decision(False, f"eval loss/byte {cand:.4f} > {limit:.4f} (current {cur:.4f})")
