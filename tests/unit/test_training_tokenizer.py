"""The byte-level BPE tokenizer: byte-exact round trips, special tokens, the saved HF form."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from aicoderd.training import prompt
from aicoderd.training import tokenizer as tokenization
from tests.training_corpus import code_document

CODE = (
    "def f(x):\n\tif x:\n\t\treturn 'naïve — ünïcödé ☃ 数据'\n\n\n\n    return    None  \n"
    "# trailing spaces   \n\r\nx = 1234567 + 0x1F\n\t \t\nemoji = '🐍'\n"
)


@pytest.fixture(scope="module", params=["gpt2", "llama3"])
def tok(request: pytest.FixtureRequest) -> Any:
    rng = random.Random(1)
    texts = [code_document(rng) for _ in range(200)]
    return tokenization.build(texts, 600, request.param)


def test_code_round_trips_byte_for_byte(tok: Any) -> None:
    for text in (CODE, code_document(random.Random(7)), "", " ", "\n\n\t", "x" * 500):
        ids = tokenization.encode_text(tok, [text])[0]
        assert tok.decode(ids) == text


def test_special_tokens_are_single_ids_after_the_vocabulary(tok: Any) -> None:
    ids = [tok.convert_tokens_to_ids(t) for t in prompt.SPECIAL_TOKENS]
    assert ids == list(range(len(tok) - len(prompt.SPECIAL_TOKENS), len(tok)))
    head, tail = prompt.review_example("x = 1\n", "x: int = 1\n")
    encoded = tok.encode(head + tail, add_special_tokens=False)
    assert encoded[0] == ids[prompt.SPECIAL_TOKENS.index(prompt.REVIEW)]
    assert encoded[-1] == ids[0]
    # In corpus text, the same strings stay plain text: a document cannot end itself.
    plain = tokenization.encode_text(tok, ["a <|endoftext|> b"])[0]
    assert ids[0] not in plain
    assert tok.decode(plain) == "a <|endoftext|> b"


def test_saved_tokenizer_loads_with_autotokenizer(tok: Any, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    tok.save_pretrained(str(tmp_path))
    loaded = AutoTokenizer.from_pretrained(str(tmp_path))
    assert loaded.encode(CODE, add_special_tokens=False) == tok.encode(
        CODE, add_special_tokens=False
    )
    assert loaded.decode(loaded.encode(CODE, add_special_tokens=False)) == CODE
    assert loaded.eos_token == prompt.EOT
    assert loaded.chat_template == prompt.chat_template()
    assert _pre(tmp_path) in ("gpt-2", "llama-bpe")


def _pre(directory: Path) -> str:
    """The ``tokenizer.ggml.pre`` the export writes for a saved tokenizer."""
    from aicoderd.export.vocab import detect_pre

    return detect_pre(json.loads((directory / "tokenizer.json").read_text(encoding="utf-8")))


def test_the_export_names_each_pretokenizer_for_llama_cpp(tmp_path: Path) -> None:
    texts = [code_document(random.Random(i)) for i in range(20)]
    for ours, theirs in {"gpt2": "gpt-2", "llama3": "llama-bpe"}.items():
        tokenization.build(texts, 400, ours).save_pretrained(str(tmp_path / ours))
        assert _pre(tmp_path / ours) == theirs


def test_llama3_groups_digits_by_three() -> None:
    from tokenizers import pre_tokenizers

    tok = tokenization.build([code_document(random.Random(3))] * 5, 300, "llama3")
    pieces = tok.backend_tokenizer.pre_tokenizer.pre_tokenize_str("x = 1234567")
    assert [p for p, _ in pieces][-3:] == ["123", "456", "7"]
    assert isinstance(pre_tokenizers.ByteLevel.alphabet(), list)
