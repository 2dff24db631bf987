"""MinHash signatures and de-duplication on exact and near duplicate sets."""

from __future__ import annotations

import random
import re

import numpy as np
import pytest

from aicoderd.config import CorpusConfig
from aicoderd.corpus.dedup import Dedup, exact_key
from aicoderd.corpus.document import Doc
from aicoderd.corpus.minhash import lsh_params, signatures, similarity
from aicoderd.corpus.steps import StepContext, StepStats


def shingles(text: str, k: int = 5) -> set[tuple[str, ...]]:
    tokens = re.findall(r"[A-Za-z0-9_]+", text)
    return {tuple(tokens[i : i + k]) for i in range(len(tokens) - k + 1)}


def jaccard(a: str, b: str) -> float:
    x, y = shingles(a), shingles(b)
    return len(x & y) / len(x | y)


def drop_lines(text: str, share: float, seed: int) -> str:
    rng = random.Random(seed)
    return "\n".join(line for line in text.split("\n") if rng.random() >= share)


@pytest.fixture(scope="module")
def modules(stdlib_texts: dict[str, str]) -> list[str]:
    return [t for t in stdlib_texts.values() if 8_000 < len(t) < 120_000][:20]


def test_signature_estimates_jaccard(modules: list[str]) -> None:
    errors = []
    for i, text in enumerate(modules):
        for share in (0.05, 0.3, 0.6):
            other = drop_lines(text, share, i)
            sig = signatures([text.encode(), other.encode()], 256, 5)
            errors.append(similarity(sig[0], sig[1]) - jaccard(text, other))
    errors_ = np.array(errors)
    # 256 bins: standard error sqrt(J(1-J)/256) <= 0.031
    assert abs(errors_.mean()) < 0.02
    assert errors_.std() < 0.04
    assert np.abs(errors_).max() < 0.15


def test_signature_depends_on_the_document_only(modules: list[str]) -> None:
    blobs = [t.encode() for t in modules]
    together = signatures(blobs, 256, 5)
    alone = np.concatenate([signatures([b], 256, 5) for b in blobs])
    reordered = signatures(blobs[::-1], 256, 5)[::-1]
    assert (together == alone).all() and (together == reordered).all()


def test_too_short_for_a_shingle_has_no_signature() -> None:
    sig = signatures([b"one two three", b"a b c d e f"], 256, 5)
    assert (sig[0] == 0xFFFFFFFF).all()
    assert not (sig[1] == 0xFFFFFFFF).any()  # one shingle fills every bin by densification


def test_lsh_parameters_match_datasketch_choice() -> None:
    assert lsh_params(0.7, 256) == (25, 10)


def dedup(texts: list[str], **config: object) -> list[Doc]:
    step = Dedup(CorpusConfig(**config), StepContext())  # type: ignore[arg-type]
    docs = [Doc(f"d{i}", i, "s", f"u{i}", "code", None, t) for i, t in enumerate(texts)]
    step.run(docs, StepStats())
    return docs


def test_exact_duplicates_ignore_trailing_whitespace(modules: list[str]) -> None:
    a = modules[0]
    b = a.replace("\n", "  \n").rstrip() + "\n\n\t\n"
    assert exact_key(a) == exact_key(b)
    docs = dedup([a, b, modules[1]])
    assert docs[0].live and docs[2].live
    assert docs[1].removal is not None and docs[1].removal.reason == "dedup.exact"
    assert docs[1].removal.dup_of == "d0"


def test_near_duplicates_removed_distinct_documents_kept(modules: list[str]) -> None:
    base = modules[:6]
    near = [drop_lines(t, 0.05, 7) for t in base]  # Jaccard ~0.85
    far = [drop_lines(t, 0.65, 8) for t in base]  # Jaccard ~0.3
    for a, b, c in zip(base, near, far, strict=True):
        assert jaccard(a, b) > 0.75 and jaccard(a, c) < 0.5
    docs = dedup(base + near + far)
    reasons = [d.removal.reason if d.removal else None for d in docs]
    assert reasons[:6] == [None] * 6
    assert reasons[6:12] == ["dedup.near"] * 6
    assert reasons[12:] == [None] * 6
    assert [d.removal.dup_of for d in docs[6:12] if d.removal] == [f"d{i}" for i in range(6)]


def test_near_dedup_off_keeps_near_duplicates(modules: list[str]) -> None:
    docs = dedup([modules[0], drop_lines(modules[0], 0.05, 1)], near_dedup=False)
    assert all(d.live for d in docs)


def test_decisions_do_not_depend_on_batches(modules: list[str]) -> None:
    texts = []
    for i, t in enumerate(modules[:8]):
        texts += [t, drop_lines(t, 0.1, i), t]
    one = dedup(texts)
    # The builder's contract: kept documents of earlier batches are looked up (in the ledger).
    kept: dict[int, tuple[str, object]] = {}
    step = Dedup(CorpusConfig(), StepContext(lookup=kept.__getitem__))  # type: ignore[arg-type]
    docs = [Doc(f"d{i}", i, "s", f"u{i}", "code", None, t) for i, t in enumerate(texts)]
    for start in range(0, len(docs), 5):
        batch = docs[start : start + 5]
        step.run(batch, StepStats())
        kept.update((d.order, (d.doc_id, d.signature)) for d in batch if d.live)
    assert [d.removal for d in docs] == [d.removal for d in one]
