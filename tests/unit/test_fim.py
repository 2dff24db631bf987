"""Fill-in-the-middle in pretraining: the document-level transformation (both orders, rate 0 and
1, character-level split points, one draw per (seed, document)), the token stream it makes
(document boundaries kept, markers one token each, never made from text) and the token cache
keyed by its settings; and the finetuning layout of an editor's completion record."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from aicoderd.sources.feedback_file import parse_line
from aicoderd.training import data, fim, likelihood, preferences, prompt
from aicoderd.training import tokenizer as tokenization
from aicoderd.training.corpus import load_corpus
from aicoderd.training.preferences import Example
from tests.training_corpus import code_document, feedback_line, make_corpus

MARKERS = [prompt.FIM_PREFIX, prompt.FIM_SUFFIX, prompt.FIM_MIDDLE]


@pytest.fixture(scope="module")
def texts() -> list[str]:
    import random

    rng = random.Random(3)
    return [code_document(rng) for _ in range(200)]


@pytest.fixture(scope="module")
def tok(texts: list[str]):  # type: ignore[no-untyped-def]
    return tokenization.build(texts, 600, "gpt2")


def _text(pieces: list[fim.Piece]) -> list[str]:
    return [p for p in pieces if not isinstance(p, prompt.Marker)]


def test_rate_0_leaves_every_document_left_to_right(texts: list[str], tok) -> None:  # type: ignore[no-untyped-def]
    off = fim.Fim(0.0, 0.5, 1)
    assert all(fim.pieces(t, off) == [t] for t in texts)
    assert fim.encode_documents(tok, texts, off) == tokenization.encode_text(tok, texts)


def test_rate_1_cuts_every_document_in_both_orders(texts: list[str]) -> None:
    cuts = [fim.split(t, fim.Fim(1.0, 0.5, 7)) for t in texts]
    assert all(c is not None for c in cuts)
    spm = sum(c.spm for c in cuts if c is not None)
    assert 60 < spm < 140  # about half, as StarCoder draws
    for text, cut in zip(texts, cuts, strict=True):
        assert cut is not None and cut.prefix + cut.middle + cut.suffix == text
        pieces = fim.pieces(text, fim.Fim(1.0, 0.5, 7))
        markers = [p for p in pieces if isinstance(p, prompt.Marker)]
        if cut.spm:  # StarCoder's SPM: PRE SUF suffix MID prefix middle
            assert markers == MARKERS
            assert pieces == [*markers[:2], cut.suffix, markers[2], cut.prefix, cut.middle]
        else:  # PSM: PRE prefix SUF suffix MID middle
            assert pieces == [
                markers[0], cut.prefix, markers[1], cut.suffix, markers[2], cut.middle
            ]  # fmt: skip
    assert all(not c.spm for t in texts if (c := fim.split(t, fim.Fim(1.0, 0.0, 7))))
    assert all(c.spm for t in texts if (c := fim.split(t, fim.Fim(1.0, 1.0, 7))))


def test_the_rate_is_the_share_of_documents_cut(texts: list[str]) -> None:
    cut = sum(fim.split(t, fim.Fim(0.5, 0.5, 11)) is not None for t in texts)
    assert 70 < cut < 130


def test_split_points_are_characters_and_the_draw_is_per_seed_and_document() -> None:
    text = "größe = 数据 + naïve\n" * 3
    seen: set[int] = set()
    for seed in range(300):
        cut = fim.split(text, fim.Fim(1.0, 0.5, seed))
        assert cut is not None and cut.prefix + cut.middle + cut.suffix == text
        seen |= {len(cut.prefix), len(cut.prefix) + len(cut.middle)}
    # Every character boundary is reachable, the ones inside multi-byte characters included.
    assert seen == set(range(len(text) + 1))
    one = fim.Fim(1.0, 0.5, 42)
    assert fim.split(text, one) == fim.split(text, fim.Fim(1.0, 0.5, 42))
    others = {fim.split(text, fim.Fim(1.0, 0.5, s)) for s in range(5)}
    assert len(others) > 1


def test_stream_keeps_documents_apart_and_markers_are_single_tokens(
    texts: list[str],
    tok,  # type: ignore[no-untyped-def]
) -> None:
    eot = tokenization.token_id(tok, prompt.EOT)
    ids = {m: tokenization.token_id(tok, m) for m in MARKERS}
    sneaky = f"x = '{prompt.FIM_PREFIX}'  # spelled out{prompt.FIM_MIDDLE}\n" * 4
    docs = [*texts[:40], sneaky]
    setting = fim.Fim(1.0, 0.5, 5)
    stream = data.stream(tok, docs, eot, setting)
    assert int((stream == eot).sum()) == len(docs) and stream[-1] == eot
    bounds = np.flatnonzero(stream == eot)
    starts = np.concatenate([[0], bounds[:-1] + 1])
    for doc, a, b in zip(docs, starts, bounds, strict=True):
        part = stream[a:b].tolist()
        for marker, i in ids.items():
            assert part.count(i) == 1, marker  # one each, inside its own document
        cut = fim.split(doc, setting)
        assert cut is not None
        # The document's pieces, in order, decode back: the markers split the tokens.
        pieces = fim.pieces(doc, setting)
        assert part == fim.encode_pieces(tok, [pieces])[0]
        assert tok.decode(part) == "".join(pieces)
        head = cut.suffix + cut.prefix if cut.spm else cut.prefix + cut.suffix
        assert "".join(_text(pieces)) == head + cut.middle
    # The draw depends on the document, not on where it sits among the others.
    alone = fim.encode_documents(tok, [docs[3]], setting)[0]
    assert fim.encode_documents(tok, docs[:4], setting)[3] == alone
    # A marker spelled out inside code stays text: one marker token each, not three.
    sneaky_ids = fim.encode_documents(tok, [sneaky], fim.Fim(0.0, 0.0, 0))[0]
    assert not set(sneaky_ids) & set(ids.values())


def test_the_token_cache_is_keyed_by_the_fim_settings(tmp_path: Path, tok) -> None:  # type: ignore[no-untyped-def]
    corpus = load_corpus(make_corpus(tmp_path / "c", documents=40))
    cache = tmp_path / "cache"
    plain = data.token_streams(corpus, tok, cache, fim.Fim(0.0, 0.5, 1))
    mixed = data.token_streams(corpus, tok, cache, fim.Fim(0.5, 0.5, 1))
    other_seed = data.token_streams(corpus, tok, cache, fim.Fim(0.5, 0.5, 2))
    assert len({p.name for p in cache.iterdir()}) == 3
    assert not np.array_equal(plain.train, mixed.train)
    assert not np.array_equal(mixed.train, other_seed.train)
    # The eval split stays left to right whatever the settings.
    assert np.array_equal(plain.eval, mixed.eval)
    again = data.token_streams(corpus, tok, cache, fim.Fim(0.5, 0.5, 1))
    assert np.array_equal(again.train, mixed.train)


def test_an_editor_completion_record_trains_as_fill_in_the_middle(tok) -> None:  # type: ignore[no-untyped-def]
    def record(verdict: str, suggestion: str, correction: str | None = None) -> object:
        line = json.loads(feedback_line("templated prompt", suggestion, verdict, correction))
        line |= {"prefix": "def add(a, b):\n    ", "suffix": "\n\nprint(add(1, 2))\n"}
        return parse_line(json.dumps(line).encode())

    fb = preferences.from_records(
        [
            record("accepted", "return a + b"),  # type: ignore[list-item]
            record("edited", "return a - b", "return a + b  # sum"),  # type: ignore[list-item]
            record("rejected", "pass"),  # type: ignore[list-item]
        ]
    )
    assert {ex.prompt for ex in fb.chosen} == {"def add(a, b):\n    "}
    assert {ex.suffix for ex in fb.chosen} == {"\n\nprint(add(1, 2))\n"}
    assert {p.rejected for p in fb.pairs} == {"return a - b", "pass"}  # paired on the context
    ids, labels = likelihood.encode(tok, fb.chosen[0], 128)
    prompt_ids = fim.encode_pieces(
        tok, [prompt.FIM.layout(fb.chosen[0].prompt, fb.chosen[0].suffix)]
    )[0]
    middle = [
        *tokenization.encode_text(tok, ["return a + b"])[0],
        tok.convert_tokens_to_ids(prompt.EOT),
    ]
    assert ids == prompt_ids + middle
    assert labels == [likelihood.IGNORE] * len(prompt_ids) + middle
    # A long context keeps the prefix's end and the suffix's start, and the whole middle.
    long = Example("x = 1\n" * 200 + "y = ", "2", "\nz = 3\n" * 200)
    ids, labels = likelihood.encode(tok, long, 64)
    assert len(ids) <= 64 and ids[-2:] == labels[-2:] and labels[-3] == likelihood.IGNORE
    text = tok.decode(ids)
    assert text.startswith(prompt.FIM_PREFIX) and "y = " + prompt.FIM_SUFFIX + "\nz" in text
    # A record without prefix and suffix stays a review example.
    plain = preferences.from_records([parse_line(feedback_line("p", "s", "accepted").encode())])
    assert plain.chosen == [Example("p", "s")]
