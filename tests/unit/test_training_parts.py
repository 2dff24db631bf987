"""Model shapes, data packing and order, the schedule, checkpoints, feedback parsing and the
gate rule: the training stage's parts, each on its own."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from aicoderd.config import TrainingConfig
from aicoderd.errors import TrainingError
from aicoderd.store import Store
from aicoderd.training import data, gate, optim, preferences, prompt, shapes
from aicoderd.training import tokenizer as tokenization
from aicoderd.training.checkpoint import Checkpoints
from aicoderd.training.corpus import load_corpus
from tests.training_corpus import code_document, feedback_line, make_corpus


def test_presets_have_their_sizes_and_quantizable_widths() -> None:
    ranges = {"tiny": (1e6, 3e6), "small": (15e6, 30e6), "base": (100e6, 150e6)}
    for name, (low, high) in ranges.items():
        s = shapes.shape(TrainingConfig(preset=name))
        assert low <= shapes.parameter_count(s) <= high, name
        assert s.hidden % 256 == 0 and s.intermediate % 256 == 0


def test_explicit_dimensions_override_the_preset_and_must_be_multiples_of_256() -> None:
    s = shapes.shape(TrainingConfig(preset="tiny", hidden_size=512, num_layers=3, num_heads=8))
    assert (s.hidden, s.layers, s.heads, s.intermediate) == (512, 3, 8, 768)
    with pytest.raises(ValidationError, match="multiple of 256"):
        TrainingConfig(intermediate_size=1000)
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM(shapes.llama_config(s, 1000, 0))
    assert sum(p.numel() for p in model.parameters()) == shapes.parameter_count(
        shapes.Shape(512, 768, 3, 8, 1000, s.context)
    )


def test_documents_are_joined_with_eot_and_cached_per_snapshot(tmp_path: Path) -> None:
    corpus = load_corpus(make_corpus(tmp_path / "c", documents=30))
    tok = tokenization.build(corpus.train, 400, "gpt2")
    eot = tok.convert_tokens_to_ids(prompt.EOT)
    streams = data.token_streams(corpus, tok, tmp_path / "cache")
    assert int((streams.train == eot).sum()) == len(corpus.train)
    assert streams.train[-1] == eot
    first = tokenization.encode_text(tok, corpus.train[:1])[0]
    assert streams.train[: len(first) + 1].tolist() == [*first, eot]
    # The second read comes from the cache: tokenizing is not called again.
    cached = list((tmp_path / "cache").iterdir())
    assert len(cached) == 1 and cached[0].name.startswith(corpus.snapshot)
    real, data.stream = data.stream, None  # type: ignore[assignment]
    try:
        again = data.token_streams(corpus, tok, tmp_path / "cache")
    finally:
        data.stream = real
    assert np.array_equal(again.train, streams.train)
    blocks = data.blocks(streams.train, 64)
    assert blocks.shape == (len(streams.train) // 64, 64)


def test_batch_order_resumes_from_its_position() -> None:
    a = data.BatchSampler(10, seed=3)
    first = [a.take(4) for _ in range(3)]  # crosses an epoch boundary
    assert sorted(first[0] + first[1] + first[2][:2]) == list(range(10))
    b = data.BatchSampler(10, seed=3)
    b.take(4)
    state = b.state_dict()
    c = data.BatchSampler(10, seed=3)
    c.load_state_dict(state)
    assert [c.take(4), c.take(4)] == first[1:]


def test_schedule_warms_up_then_decays_to_the_floor() -> None:
    f = [optim.lr_factor(s, warmup=10, total=100, floor=0.1) for s in range(101)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(x >= y for x, y in itertools.pairwise(f[10:]))
    assert f[100] == pytest.approx(0.1)
    assert data.planned_steps(1000, 5000, 1024) == 5
    assert data.planned_steps(3, None, 1024) == 3


def test_unigram_baseline_is_the_entropy_of_token_frequencies() -> None:
    tokens = np.array([0, 0, 1, 1] * 100)
    assert data.unigram_loss(tokens, tokens, 2) == pytest.approx(np.log(2), rel=1e-3)


def test_checkpoints_keep_the_last_k_and_skip_a_corrupt_one(tmp_path: Path) -> None:
    ckpts = Checkpoints(tmp_path, keep=2)
    for step in (5, 10, 15):
        ckpts.save(step, {"step": step, "w": torch.full((3,), float(step))})
    assert ckpts.steps() == [10, 15]
    data_ = ckpts.path(15).read_bytes()
    ckpts.path(15).write_bytes(data_[: len(data_) // 2])  # a torn write
    warnings: list[str] = []
    state = ckpts.latest(warnings.append)
    assert state is not None and state["step"] == 10
    assert torch.equal(state["w"], torch.full((3,), 10.0))
    assert warnings == [
        f"checkpoint {ckpts.path(15)} is corrupt (checksum mismatch); resuming from step 10"
    ]
    flipped = bytearray(ckpts.path(10).read_bytes())
    flipped[len(flipped) // 2] ^= 0xFF
    ckpts.path(10).write_bytes(bytes(flipped))
    with pytest.raises(TrainingError, match="no usable checkpoint"):
        ckpts.latest(warnings.append)
    # A crash between the checkpoint's rename and its checksum's: not trusted.
    ckpts.save(20, {"step": 20})
    Path(str(ckpts.path(20)) + ".sha256").unlink()
    with pytest.raises(TrainingError, match="incomplete"):
        ckpts.read(20)


def test_feedback_becomes_chosen_pairs_and_unpaired(tmp_path: Path) -> None:
    f = tmp_path / "fb.jsonl"
    f.write_text(
        "\n".join(
            [
                feedback_line("p1", "good", "accepted"),
                feedback_line("p1", "bad", "rejected"),
                feedback_line("p2", "meh", "edited", correction="better"),
                feedback_line("p3", "awful", "rejected"),
                "{not json",
            ]
        )
        + "\n"
    )
    fb = preferences.from_files([f, tmp_path / "missing.jsonl"]).examples
    assert [(e.prompt, e.completion) for e in fb.chosen] == [("p1", "good"), ("p2", "better")]
    assert {(p.prompt, p.chosen, p.rejected) for p in fb.pairs} == {
        ("p1", "good", "bad"),
        ("p2", "better", "meh"),
    }
    assert [(e.prompt, e.completion) for e in fb.unpaired] == [("p3", "awful")]
    assert fb.invalid == 1 and fb.usable
    empty = preferences.from_files([tmp_path / "missing.jsonl"]).examples
    assert not empty.usable
    assert (
        preferences.from_files([Path("a.jsonl"), Path("b.jsonl")]).nothing_usable()
        == "no usable feedback in a.jsonl, b.jsonl"
    )


def test_gate_promotes_within_tolerance_and_records_both(tmp_path: Path) -> None:
    current = {"model": "/m/cur", "eval_loss_per_byte": 1.0, "corpus_snapshot": "s"}
    within = {"model": "/m/new", "eval_loss_per_byte": 1.0099, "corpus_snapshot": "s"}
    worse = {"model": "/m/new", "eval_loss_per_byte": 1.0101, "corpus_snapshot": "s"}
    assert gate.decide(within, current, 0.01, 0.02).promoted
    assert not gate.decide(worse, current, 0.01, 0.02).promoted
    store = Store(tmp_path / "state.db")
    decision = gate.decide(within, current, 0.01, 0.02)
    row_id = store.evals.record(within, current, decision.promoted, 0.01, job_id=7)
    with store.db.read() as db:
        row = db.execute("SELECT * FROM model_evals WHERE id=?", (row_id,)).fetchone()
    store.close()
    assert (row["model"], row["against"], row["promoted"], row["job_id"]) == (
        "/m/new",
        "/m/cur",
        1,
        7,
    )
    assert '"eval_loss_per_byte": 1.0' in row["against_metrics"]


def test_a_corpus_without_eval_documents_holds_out_its_tail(tmp_path: Path) -> None:
    import datasets

    root = tmp_path / "c"
    texts = [code_document(random.Random(i)) for i in range(40)]
    datasets.Dataset.from_dict({"text": texts, "split": ["train"] * 40}).save_to_disk(
        str(root / "dataset")
    )
    (root / "manifest.json").write_text('{"snapshot": "x"}')
    c = load_corpus(root)
    assert (len(c.train), len(c.eval)) == (38, 2) and c.eval == texts[38:]
    with pytest.raises(TrainingError, match="no corpus"):
        load_corpus(tmp_path / "nothing")
