"""Training examples in the base's own tokens: fill-in-the-middle documents that reassemble to
the original, plain documents, feedback completions (FIM records as FIM), the same blocks for
the same seed."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from aicoderd.adapt import data
from aicoderd.adapt.base import Base, prepare
from aicoderd.adapt.source import resolve
from aicoderd.training.likelihood import IGNORE
from tests.adapt.test_adapt import FEEDBACK, record
from tests.export.tiny import CODE

TEXTS = [CODE[i : i + 300] for i in range(0, 1200, 300)]


@pytest.fixture(scope="module")
def base(base_ggufs: dict[str, Path]) -> Base:
    return prepare(resolve(str(base_ggufs["qwen2-q8_0"]), None, None), TEXTS)


def _documents(base: Base, blocks: list[int]) -> list[list[int]]:
    docs, cur = [], []
    for i in blocks:
        if i == base.eos:
            docs.append(cur)
            cur = []
        else:
            cur.append(i)
    return docs


def test_fim_documents_reassemble_to_the_original(base: Base) -> None:
    assert base.fim is not None
    f = base.fim
    blocks, n = data.corpus_blocks(base, TEXTS, 4096, fim_rate=1.0, seed=3)
    assert n == len(TEXTS)
    for text, doc in zip(TEXTS, _documents(base, blocks.flatten().tolist()), strict=True):
        assert doc[0] == f.prefix and doc.count(f.suffix) == doc.count(f.middle) == 1
        s, m = doc.index(f.suffix), doc.index(f.middle)
        prefix, suffix, middle = doc[1:s], doc[s + 1 : m], doc[m + 1 :]
        assert "".join(base.tokenizer.decode(p) for p in (prefix, middle, suffix)) == text


def test_plain_documents_and_bases_without_fim(base: Base) -> None:
    plain, n = data.corpus_blocks(base, TEXTS, 4096, fim_rate=0.0, seed=3)
    assert n == 0
    no_fim = replace(base, fim=None)
    again, m = data.corpus_blocks(no_fim, TEXTS, 4096, fim_rate=1.0, seed=3)
    assert m == 0 and again.tolist() == plain.tolist()
    docs = _documents(base, plain.flatten().tolist())
    assert [base.tokenizer.decode(d) for d in docs] == TEXTS


def test_the_same_seed_packs_the_same_blocks(base: Base) -> None:
    a, _ = data.corpus_blocks(base, TEXTS * 4, 64, fim_rate=0.5, seed=9)
    b, _ = data.corpus_blocks(base, TEXTS * 4, 64, fim_rate=0.5, seed=9)
    c, _ = data.corpus_blocks(base, TEXTS * 4, 64, fim_rate=0.5, seed=10)
    assert a.shape[1] == 64 and a.tolist() == b.tolist() != c.tolist()


def test_feedback_completions(base: Base) -> None:
    assert base.fim is not None
    edited = record("def f():\n", "return 1\n", "edited", correction="return 2\n")
    rows = data.feedback_rows(base, [*FEEDBACK, edited], 64)
    assert len(rows) == 3  # the rejected record teaches nothing here
    plain, fim, fixed = rows
    for ids, labels in rows:
        head = labels.index(next(x for x in labels if x != IGNORE))
        assert labels[:head] == [IGNORE] * head and labels[head:] == ids[head:]
        assert ids[-1] == base.eos and len(ids) <= 64
    assert plain[0][0] != base.fim.prefix
    assert fim[0][0] == base.fim.prefix and base.fim.middle in fim[0]
    tail = [x for x in fixed[1] if x != IGNORE]
    assert base.tokenizer.decode(tail[:-1]) == "return 2\n"


def test_steps_are_bounded_by_tokens_and_wall_time(base: Base, tmp_path: Path) -> None:
    from aicoderd.adapt import lora
    from aicoderd.adapt.base import load_model
    from aicoderd.config import AdaptConfig
    from aicoderd.training import runtime
    from aicoderd.training.pretrain import Hooks

    blocks, _ = data.corpus_blocks(base, TEXTS * 8, 32, fim_rate=0.5, seed=1)
    inputs = data.TrainingData(blocks, [], 0)
    rt = runtime.detect("cpu")
    by_tokens = AdaptConfig(rank=4, batch_size=2, max_steps=50, max_tokens=200)
    model = lora.attach(load_model(base.source), by_tokens)
    done = lora.train(model, inputs, tmp_path / "t", by_tokens, rt, base.eos, Hooks())
    assert (done["stopped"], done["steps"]) == ("max_steps", 4)  # ceil(200 / (2 x 32))
    assert (tmp_path / "t" / lora.ADAPTER_DIR / "adapter_config.json").exists()
    by_time = by_tokens.model_copy(update={"max_tokens": None, "max_wall_seconds": 1e-9})
    model = lora.attach(load_model(base.source), by_time)
    done = lora.train(model, inputs, tmp_path / "w", by_time, rt, base.eos, Hooks())
    assert (done["stopped"], done["steps"]) == ("max_wall_seconds", 1)
