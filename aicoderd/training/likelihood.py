"""Log-likelihood of completions given prompts, laid out by the one prompt format; used by the
finetuning objectives (loss on the completion only) and the evaluation gate's margin."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aicoderd.training import fim, prompt
from aicoderd.training import tokenizer as tokenization
from aicoderd.training.preferences import Example

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

IGNORE = -100  # label of a prompt token: no loss there


def encode(tok: PreTrainedTokenizerBase, ex: Example, context: int) -> tuple[list[int], list[int]]:
    """(input ids, labels) of an example: a review, or with a suffix fill-in-the-middle; a
    long prompt loses its start (a FIM prompt the start of its prefix and the end of its
    suffix), never the completion's tokens."""
    if ex.suffix is not None:
        return _encode_fim(tok, ex, ex.suffix, context)
    head, tail = prompt.review_example(ex.prompt, ex.completion)
    p = tok.encode(head, add_special_tokens=False)
    c = tok.encode(tail, add_special_tokens=False)[: context - 1]
    p = p[-(context - len(c)) :]
    return p + c, [IGNORE] * len(p) + c


def _encode_fim(
    tok: PreTrainedTokenizerBase, ex: Example, suffix: str, context: int
) -> tuple[list[int], list[int]]:
    """The PSM layout pretraining uses, its pieces encoded as :mod:`.fim` encodes them."""
    eot = tokenization.token_id(tok, prompt.EOT)
    pre, suf, mid = tokenization.encode_text(tok, [ex.prompt, suffix, ex.completion])
    c = [*mid, eot][: context - 4]
    p = fim.prompt_ids(
        prompt.FIM, lambda t: tokenization.token_id(tok, t), pre, suf, context - len(c)
    )
    return p + c, [IGNORE] * len(p) + c


def collate(
    rows: list[tuple[list[int], list[int]]], pad: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded (input ids, attention mask, labels)."""
    import torch

    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    for i, (x, y) in enumerate(rows):
        ids[i, : len(x)] = torch.tensor(x)
        mask[i, : len(x)] = 1
        labels[i, : len(y)] = torch.tensor(y)
    return ids.to(device), mask.to(device), labels.to(device)


def token_logprobs(
    model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sequence: the summed log-probability of its labelled tokens, and their count."""
    import torch

    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    target = labels[:, 1:]
    keep = target != IGNORE
    logp = torch.log_softmax(logits, dim=-1)
    picked = logp.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (picked * keep).sum(-1), keep.sum(-1)


def mean_logprob(
    model: Any,
    tok: PreTrainedTokenizerBase,
    examples: list[Example],
    device: torch.device,
    batch_size: int = 16,
) -> float:
    """Mean per-token log-likelihood of the completions (nats; higher is likelier)."""
    import torch

    context = int(model.config.max_position_embeddings)
    pad = int(tok.pad_token_id if tok.pad_token_id is not None else 0)
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for start in range(0, len(examples), batch_size):
            rows = [encode(tok, ex, context) for ex in examples[start : start + batch_size]]
            s, n = token_logprobs(model, *collate(rows, pad, device))
            total += float(s.sum())
            count += int(n.sum())
    return total / max(count, 1)
