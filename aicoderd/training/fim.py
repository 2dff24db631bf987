"""Fill-in-the-middle in pretraining (Bavarian et al. 2022; SantaCoder and StarCoder train the
same way): before packing, a share ``rate`` of the documents is cut at two random character
positions into (prefix, middle, suffix) and laid out so that the middle comes last — PSM, or
SPM for a share ``spm_rate`` of them — in the markers of :mod:`aicoderd.training.prompt`. The
model then learns to write a middle from both sides, at almost no cost to left-to-right
quality ("FIM for free", benchmarks/model_quality.py).

Each document's draw is seeded by (seed, a hash of its text), so a resumed run, a rebuilt token
cache and the same document in the next snapshot get the same transformation; the cache key
carries the settings (:meth:`Fim.key`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from aicoderd.training import prompt
from aicoderd.training import tokenizer as tokenization

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from aicoderd.config import TrainingConfig


@dataclass(frozen=True)
class Fim:
    rate: float  # share of documents transformed
    spm_rate: float  # share of those laid out suffix-prefix-middle
    seed: int

    @classmethod
    def from_config(cls, cfg: TrainingConfig) -> Fim:
        return cls(cfg.fim_rate, cfg.fim_spm_rate, cfg.seed)

    def key(self) -> str:
        """Names the transformation in the token cache's key."""
        if self.rate == 0:
            return "fim0"
        return f"fim{self.rate:g}-spm{self.spm_rate:g}-seed{self.seed}"


@dataclass(frozen=True)
class Split:
    prefix: str
    middle: str
    suffix: str
    spm: bool


def split(text: str, fim: Fim) -> Split | None:
    """The document's transformation, or None when it stays left to right."""
    if fim.rate == 0:
        return None
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    rng = np.random.default_rng([fim.seed, int.from_bytes(digest, "little")])
    if rng.random() >= fim.rate:
        return None
    spm = bool(rng.random() < fim.spm_rate)
    a, b = sorted(int(i) for i in rng.integers(0, len(text) + 1, size=2))
    return Split(text[:a], text[a:b], text[b:], spm)


Piece = prompt.Marker | str


def pieces(text: str, fim: Fim) -> list[Piece]:
    """The document as the model is trained on it (the end-of-text token follows)."""
    cut = split(text, fim)
    if cut is None:
        return [text]
    return [*prompt.FIM.layout(cut.prefix, cut.suffix, spm=cut.spm), cut.middle]


def encode_pieces(tok: PreTrainedTokenizerBase, docs: list[list[Piece]]) -> list[list[int]]:
    """Token ids of each document's pieces: a marker is its one special token, text is encoded
    on its own as plain text (as llama.cpp splits a rendered prompt at its special tokens)."""
    texts = [p for doc in docs for p in doc if not isinstance(p, prompt.Marker)]
    encoded = iter(tokenization.encode_text(tok, texts))
    out: list[list[int]] = []
    for doc in docs:
        ids: list[int] = []
        for p in doc:
            marker = isinstance(p, prompt.Marker)
            ids += [tokenization.token_id(tok, p)] if marker else next(encoded)
        out.append(ids)
    return out


def encode_documents(
    tok: PreTrainedTokenizerBase, texts: list[str], fim: Fim | None
) -> list[list[int]]:
    """Each document's training ids, transformed by ``fim`` (None: left to right)."""
    if fim is None or fim.rate == 0:
        return tokenization.encode_text(tok, texts)
    return encode_pieces(tok, [pieces(t, fim) for t in texts])


def prompt_ids(
    markers: prompt.FimMarkers,
    marker_id: Callable[[str], int],
    prefix: list[int],
    suffix: list[int],
    room: int,
) -> list[int]:
    """The PSM prompt from an encoded prefix and suffix, in ``room`` tokens at most: the
    prefix keeps its end and the suffix its start, half the room each, what one side leaves
    going to the other."""
    room -= 3  # the markers
    keep_suf = min(len(suffix), max(room // 2, room - len(prefix)))
    keep_pre = min(len(prefix), room - keep_suf)
    ids: list[int] = []
    for piece in markers.layout(prefix[len(prefix) - keep_pre :], suffix[:keep_suf]):
        ids += [marker_id(piece)] if isinstance(piece, prompt.Marker) else piece
    return ids
