"""Training data: documents tokenized, joined with the end-of-text token, packed into blocks
of the context length; the token streams cached per (corpus snapshot, tokenizer).

The batch order is a pure function of (seed, position), so a checkpoint stores the position
(epoch, cursor) and a resumed run draws exactly the batches the uninterrupted one would.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from aicoderd.fsutil import atomic_write
from aicoderd.training import prompt
from aicoderd.training import tokenizer as tokenization
from aicoderd.training.corpus import CorpusSplits
from aicoderd.training.fim import Fim, encode_documents

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

Tokens = npt.NDArray[np.integer[Any]]


@dataclass(frozen=True)
class TokenStreams:
    train: Tokens
    eval: Tokens


def stream(
    tok: PreTrainedTokenizerBase, texts: list[str], eot: int, fim: Fim | None = None
) -> Tokens:
    """One array of token ids: every document (transformed by ``fim``) followed by ``eot``."""
    dtype = np.uint16 if len(tok) <= 2**16 else np.uint32
    parts: list[Tokens] = []
    for start in range(0, len(texts), 256):
        for ids in encode_documents(tok, texts[start : start + 256], fim):
            parts.append(np.asarray([*ids, eot], dtype=dtype))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)


def token_streams(
    corpus: CorpusSplits,
    tok: PreTrainedTokenizerBase,
    cache_dir: Path | None,
    fim: Fim | None = None,
) -> TokenStreams:
    """The corpus's token streams, the train split's documents transformed by ``fim`` (the
    eval split stays left to right), from ``cache_dir`` when this snapshot, tokenizer and
    transformation were seen before (tokenizing is the slow part of a short run)."""
    eot = tokenization.token_id(tok, prompt.EOT)
    where = None
    if cache_dir is not None:
        key = fim.key() if fim is not None else Fim(0, 0, 0).key()
        where = cache_dir / f"{corpus.snapshot}-{tokenization.fingerprint(tok)}-{key}"
        try:
            return TokenStreams(np.load(where / "train.npy"), np.load(where / "eval.npy"))
        except (OSError, ValueError):
            pass
    streams = TokenStreams(stream(tok, corpus.train, eot, fim), stream(tok, corpus.eval, eot))
    if where is not None:
        for name, array in (("train", streams.train), ("eval", streams.eval)):
            buf = io.BytesIO()
            np.save(buf, array)
            atomic_write(where / f"{name}.npy", buf.getvalue(), durable=False)
    return streams


def blocks(tokens: Tokens, context: int) -> Tokens:
    """Non-overlapping blocks of ``context`` tokens (the tail is dropped), a view of the stream
    in its own small dtype; a stream shorter than one block becomes a single shorter block."""
    n = len(tokens) // context
    if n == 0:
        return tokens.reshape(1, -1)
    return tokens[: n * context].reshape(n, context)


def batch(blocks: Tokens, rows: list[int], device: torch.device) -> torch.Tensor:
    """The blocks ``rows`` as int64 token ids on ``device`` (only a batch is ever widened)."""
    import torch

    return torch.from_numpy(blocks[rows].astype(np.int64)).to(device, non_blocking=True)


def unigram_loss(train: Tokens, held: Tokens, vocab_size: int) -> float:
    """Cross-entropy (nats/token) of ``held`` under add-one-smoothed train token frequencies:
    the baseline a model that learned nothing about context would reach."""
    counts = np.bincount(train.astype(np.int64), minlength=vocab_size).astype(np.float64) + 1
    logp = np.log(counts / counts.sum())
    return float(-logp[held.astype(np.int64)].mean())


class BatchSampler:
    """Each epoch is a fresh permutation of the blocks, seeded by (seed, epoch)."""

    def __init__(self, n_blocks: int, seed: int) -> None:
        self.n = n_blocks
        self.seed = seed
        self.epoch = 0
        self.cursor = 0
        self._perm = self._permutation()

    def _permutation(self) -> Tokens:
        return np.random.default_rng([self.seed, self.epoch]).permutation(self.n)

    def take(self, count: int) -> list[int]:
        out: list[int] = []
        while len(out) < count:
            if self.cursor >= self.n:
                self.epoch, self.cursor = self.epoch + 1, 0
                self._perm = self._permutation()
            grab = min(count - len(out), self.n - self.cursor)
            out.extend(int(i) for i in self._perm[self.cursor : self.cursor + grab])
            self.cursor += grab
        return out

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "cursor": self.cursor}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.cursor = int(state["epoch"]), int(state["cursor"])
        self._perm = self._permutation()


def planned_steps(max_steps: int, max_tokens: int | None, tokens_per_step: int) -> int:
    """Steps to run: ``max_steps``, fewer when ``max_tokens`` is reached first."""
    if max_tokens is None:
        return max_steps
    return max(1, min(max_steps, math.ceil(max_tokens / tokens_per_step)))
