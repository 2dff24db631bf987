"""What the LoRA learns from, in the base model's own tokens.

- **Continued pretraining** on the corpus's train split: documents joined by the base's
  end-of-sequence token, a share ``fim_rate`` of them rearranged as fill-in-the-middle in the
  base's *own* FIM tokens (prefix-suffix-middle, split at two random characters), packed into
  blocks. A base without FIM tokens learns left to right only.
- **Feedback**: each accepted suggestion and each correction of an edited one is a completion
  to learn, loss on the completion only. A record with extra keys ``prefix`` and ``suffix`` is
  a fill-in-the-middle example (the completion is its middle); any other is its prompt
  continued.

The FIM choices are a function of the seed and the document's place, so a resumed run packs
the same blocks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from aicoderd.adapt.base import Base
from aicoderd.sources.feedback_file import FeedbackRecord
from aicoderd.training import data
from aicoderd.training.likelihood import IGNORE

if TYPE_CHECKING:
    import torch

Row = tuple[list[int], list[int]]  # input ids, labels (IGNORE where there is no loss)


@dataclass
class TrainingData:
    blocks: torch.Tensor  # (n, context) corpus blocks, full loss
    feedback: list[Row]
    fim_documents: int  # documents rearranged as fill-in-the-middle

    @property
    def tokens(self) -> int:
        return int(self.blocks.numel()) + sum(len(ids) for ids, _ in self.feedback)


def corpus_blocks(
    base: Base, texts: list[str], context: int, fim_rate: float, seed: int
) -> tuple[torch.Tensor, int]:
    """The train texts as blocks of ``context`` tokens, and how many became FIM examples."""
    rng = np.random.default_rng([seed, 0xF1])
    pieces: list[str] = []
    layout: list[tuple[int, int]] = []  # (first piece, piece count) per document
    for text in texts:
        use_fim = base.fim is not None and len(text) > 2 and rng.random() < fim_rate
        if use_fim:
            a, b = sorted(int(x) for x in rng.integers(0, len(text) + 1, size=2))
            layout.append((len(pieces), 3))
            pieces += [text[:a], text[b:], text[a:b]]  # prefix, suffix, middle
        else:
            layout.append((len(pieces), 1))
            pieces.append(text)
    encoded = _encode_all(base, pieces)
    parts: list[list[int]] = []
    for first, count in layout:
        if count == 1:
            parts.append([*encoded[first], base.eos])
        else:
            prefix, suffix, middle = encoded[first : first + 3]
            parts.append([*fim_ids(base, prefix, suffix), *middle, base.eos])
    stream = np.fromiter((i for p in parts for i in p), dtype=np.int64)
    import torch

    blocks = torch.from_numpy(np.ascontiguousarray(data.blocks(stream, context)))
    return blocks, sum(1 for _, n in layout if n == 3)


def _encode_all(base: Base, texts: list[str]) -> list[list[int]]:
    tok = base.tokenizer
    tok.encode_special_tokens = True  # document text: special-token strings stay text
    try:
        return [e.ids for e in tok.encode_batch(texts, add_special_tokens=False)]
    finally:
        tok.encode_special_tokens = False


def fim_ids(base: Base, prefix: list[int], suffix: list[int]) -> list[int]:
    """A fill-in-the-middle prompt in the base's own tokens: the middle follows it."""
    assert base.fim is not None
    f = base.fim
    return [f.prefix, *prefix, f.suffix, *suffix, f.middle]


def feedback_rows(base: Base, records: list[FeedbackRecord], context: int) -> list[Row]:
    """A completion to learn per accepted or edited record (rejected ones teach nothing to
    continued pretraining)."""
    rows = []
    for r in records:
        target = r.correction if r.verdict == "edited" else r.suggestion
        if r.verdict == "rejected" or not target:
            continue
        tail = [*base.encode_plain(target), base.eos][: context - 1]
        room = context - len(tail)
        extra = r.model_extra or {}
        prefix, suffix = extra.get("prefix"), extra.get("suffix")
        if base.fim is not None and isinstance(prefix, str) and isinstance(suffix, str):
            half = max(1, (room - 3) // 2)
            p = base.encode_plain(prefix)[-half:]
            s = base.encode_plain(suffix)[: max(0, room - 3 - len(p))]
            head = fim_ids(base, p, s)
        else:
            head = base.encode_plain(r.prompt)[-room:]
        rows.append(([*head, *tail], [IGNORE] * len(head) + tail))
    return rows
