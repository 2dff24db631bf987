"""The base's tokenizer rebuilt from its GGUF: identical to llama.cpp's on code, or refused;
its FIM tokens found; the source described by Ollama's /api/show."""

from __future__ import annotations

from pathlib import Path

import pytest

from aicoderd.adapt import source, vocab
from aicoderd.adapt.base import prepare
from aicoderd.errors import TrainingError
from aicoderd.export import convert
from aicoderd.ollama.client import Client
from aicoderd.ollama.testing import FakeOllama
from tests.adapt.conftest import PARAMETERS, SYSTEM, TEMPLATE, pull
from tests.export.tiny import CODE

DOCS = [CODE, CODE.upper(), "x = 1234567 +  89\n\t\tif a:\n\n\n    b = '<|endoftext|>'\n"]


@pytest.mark.parametrize("name", ["llama-q8_0", "qwen2-f16", "llama-q4_k_m"])
def test_rebuilt_tokenizer_matches_llama_cpp(base_ggufs: dict[str, Path], name: str) -> None:
    if name not in base_ggufs:
        pytest.skip("no k-quant quantizer here")
    v = vocab.read(base_ggufs[name])
    assert v.pre == ("llama-bpe" if name.startswith("llama") else "qwen2")
    parity = vocab.check_parity(base_ggufs[name], vocab.build(v), DOCS)
    assert parity.passed, parity.problems
    assert parity.samples > len(DOCS)


def test_a_different_split_is_caught(base_ggufs: dict[str, Path]) -> None:
    """The check can fail: the Llama vocabulary split with GPT-2's regex differs from llama.cpp
    (which splits by the GGUF's llama-bpe) on digit runs and whitespace."""
    gguf = base_ggufs["llama-q8_0"]
    v = vocab.read(gguf)
    v.pre = "gpt-2"
    parity = vocab.check_parity(gguf, vocab.build(v), DOCS)
    assert not parity.passed
    assert "differ from llama.cpp" in parity.problems[0]


def test_unknown_pre_tokenizers_and_sentencepiece_are_refused(
    base_ggufs: dict[str, Path], tmp_path: Path
) -> None:
    gguf = base_ggufs["qwen2-f16"]
    carried = dict(vocab.read(gguf).fields)
    value, kind, item = carried["tokenizer.ggml.pre"]
    carried["tokenizer.ggml.pre"] = ("deepseek-coder", kind, item)
    model_dir = base_ggufs["qwen2-f16"].parent / "qwen2"
    odd = convert.export(model_dir, tmp_path / "odd.gguf", "f16", convert.Metadata(carry=carried))
    with pytest.raises(TrainingError, match="pre-tokenizer 'deepseek-coder' is not one rebuilt"):
        vocab.read(odd.path)
    carried["tokenizer.ggml.pre"] = (value, kind, item)
    carried["tokenizer.ggml.model"] = ("llama", *carried["tokenizer.ggml.model"][1:])
    spm = convert.export(model_dir, tmp_path / "spm.gguf", "f16", convert.Metadata(carry=carried))
    with pytest.raises(TrainingError, match="SentencePiece"):
        vocab.read(spm.path)


def test_fim_tokens_from_the_gguf_keys_or_a_known_family(base_ggufs: dict[str, Path]) -> None:
    v = vocab.read(base_ggufs["llama-f16"])
    assert v.fim is not None
    assert [v.tokens[i] for i in (v.fim.prefix, v.fim.suffix, v.fim.middle)] == [
        "<|fim_prefix|>",
        "<|fim_suffix|>",
        "<|fim_middle|>",
    ]
    deepseek = ["a", "<｜fim▁hole｜>", "<｜fim▁begin｜>", "<｜fim▁end｜>"]  # noqa: RUF001
    assert vocab.find_fim({}, deepseek) == vocab.Fim(2, 1, 3)
    assert vocab.find_fim({}, ["a", "b"]) is None  # no FIM: left to right only


def test_an_ollama_model_is_found_in_its_store(
    base_ggufs: dict[str, Path], ollama: FakeOllama
) -> None:
    pull(ollama, "team/coder:q8", base_ggufs["llama-q8_0"])
    with Client(ollama.url) as client:
        src = source.resolve("team/coder:q8", client, ollama.root)
        assert (
            src.gguf is not None and src.gguf.read_bytes() == base_ggufs["llama-q8_0"].read_bytes()
        )
        assert src.ollama is not None
        assert (src.ollama.template, src.ollama.system) == (TEMPLATE, SYSTEM)
        assert src.ollama.parameters == PARAMETERS
        assert (src.architecture, src.file_type) == ("llama", "Q8_0")
        with pytest.raises(TrainingError, match=r"ollama pull missing:latest"):
            source.resolve("missing", client, ollama.root)
        with pytest.raises(TrainingError, match="is not in"):
            source.resolve("team/coder:q8", client, ollama.root / "elsewhere")
        with pytest.raises(TrainingError, match=r"no such file or directory: /nope\.gguf"):
            source.resolve("/nope.gguf", client, ollama.root)
        with pytest.raises(TrainingError, match="models directory was not found"):
            source.resolve("team/coder:q8", client, None)
        base = prepare(src, DOCS)
        assert base.out_type == "q8_0" and base.parity is not None and base.parity.passed
