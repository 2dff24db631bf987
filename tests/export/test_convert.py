"""The converter's output read back with gguf's own reader: metadata, tokenizer, tensors."""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np
import pytest
from safetensors.numpy import load_file

from aicoderd.errors import ExportError
from aicoderd.export import constants as C
from aicoderd.export import convert, quantize
from aicoderd.gguf_types import OUTPUT_TYPES
from aicoderd.training import prompt


def _field(r: gguf.GGUFReader, key: str) -> object:
    f = r.get_field(key)
    assert f is not None, key
    return f.contents()


def test_metadata_and_tokenizer_read_back(llama_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.gguf"
    meta = convert.Metadata(description="tiny", license="MIT")
    res = convert.export(llama_dir, out, "f16", meta)
    r = gguf.GGUFReader(out)
    assert _field(r, "general.architecture") == "llama"
    assert _field(r, "general.name") == "v1"
    assert _field(r, "general.version") == "v1"
    assert _field(r, "general.license") == "MIT"
    assert _field(r, "general.file_type") == int(gguf.LlamaFileType.MOSTLY_F16)
    assert _field(r, "llama.attention.head_count") == 4
    assert _field(r, "llama.attention.head_count_kv") == 2
    assert _field(r, "llama.context_length") == 256
    assert _field(r, "tokenizer.ggml.model") == "gpt2"
    assert _field(r, "tokenizer.ggml.pre") == "gpt-2"
    assert _field(r, "tokenizer.chat_template") == prompt.chat_template()
    tokens = _field(r, "tokenizer.ggml.tokens")
    assert isinstance(tokens, list)
    tok = json.loads((llama_dir / "tokenizer.json").read_text())
    eot = next(t["id"] for t in tok["added_tokens"] if t["content"] == prompt.EOT)
    assert tokens[eot] == prompt.EOT
    assert _field(r, "tokenizer.ggml.eos_token_id") == eot
    assert _field(r, "tokenizer.ggml.eot_token_id") == eot
    types = _field(r, "tokenizer.ggml.token_type")
    assert isinstance(types, list) and types[eot] == 3 and types[0] == 1  # CONTROL, NORMAL
    assert _field(r, "tokenizer.ggml.add_bos_token") is False
    merges = _field(r, "tokenizer.ggml.merges")
    assert isinstance(merges, list) and merges[0] == " ".join(tok["model"]["merges"][0])
    assert _field(r, "aicoder.corpus.snapshot") == "snap-42"
    assert _field(r, "aicoder.metrics.eval_loss") == pytest.approx(2.5)
    assert r.get_field("aicoder.metrics.history") is None  # only scalars
    names = {t.name: t for t in r.tensors}
    assert names["blk.0.attn_norm.weight"].tensor_type == gguf.GGMLQuantizationType.F32
    assert names["blk.0.attn_q.weight"].tensor_type == gguf.GGMLQuantizationType.F16
    assert "output.weight" in names and res.tensors == len(names)
    assert not list(tmp_path.glob(".*tmp"))  # no temp file left behind


def test_tensors_round_trip_with_llama_permutation(llama_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.gguf"
    convert.export(llama_dir, out, "f32")
    r = gguf.GGUFReader(out)
    got = {t.name: np.asarray(t.data) for t in r.tensors}
    hf = load_file(str(llama_dir / "model.safetensors"))
    np.testing.assert_array_equal(
        got["blk.1.ffn_down.weight"], hf["model.layers.1.mlp.down_proj.weight"]
    )
    np.testing.assert_array_equal(
        got["blk.0.attn_v.weight"], hf["model.layers.0.self_attn.v_proj.weight"]
    )
    q = hf["model.layers.0.self_attn.q_proj.weight"]
    assert not np.array_equal(got["blk.0.attn_q.weight"], q)  # permuted...
    assert sorted(got["blk.0.attn_q.weight"].ravel()) == pytest.approx(
        sorted(q.ravel())
    )  # same values


def test_one_d_tensors_stay_f32_and_quantized_types_recorded(
    llama_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "q.gguf"
    convert.export(llama_dir, out, "q4_0")
    r = gguf.GGUFReader(out)
    kinds = {t.name: t.tensor_type.name for t in r.tensors}
    assert kinds["output_norm.weight"] == "F32"
    assert kinds["blk.0.ffn_up.weight"] == "Q4_0"
    assert _field(r, "general.file_type") == int(gguf.LlamaFileType.MOSTLY_Q4_0)
    assert _field(r, "general.quantization_version") == gguf.GGML_QUANT_VERSION


def test_in_process_types_are_what_gguf_can_quantize() -> None:
    for name in C.IN_PROCESS_TYPES:
        assert quantize.can_quantize(OUTPUT_TYPES[name].ggml), name
    assert not quantize.can_quantize("Q4_K")  # k-quants: llama-quantize or Ollama


def test_refusals(llama_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="is not made in process"):
        convert.export(llama_dir, tmp_path / "k.gguf", "q4_k_m")
    with pytest.raises(ExportError, match="not an HF model directory"):
        convert.export(tmp_path, tmp_path / "x.gguf", "f16")
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in llama_dir.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    cfg = json.loads((bad / "config.json").read_text())
    cfg["architectures"] = ["GPT2LMHeadModel"]
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ExportError, match="not supported by the built-in converter"):
        convert.export(bad, tmp_path / "x.gguf", "f16")
    cfg["architectures"] = ["LlamaForCausalLM"]
    (bad / "config.json").write_text(json.dumps(cfg))
    tok = json.loads((bad / "tokenizer.json").read_text())
    tok["pre_tokenizer"] = {"type": "Whitespace"}
    (bad / "tokenizer.json").write_text(json.dumps(tok))
    with pytest.raises(ExportError, match="not GPT-2's, Llama-3's or Qwen2's regex"):
        convert.export(bad, tmp_path / "x.gguf", "f16")
    assert not list(tmp_path.glob("*.gguf"))
