"""The converter's output read back with gguf's own reader: metadata, tokenizer, tensors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import gguf
import numpy as np
import pytest
from safetensors.numpy import load_file

from aicoderd.errors import ExportError
from aicoderd.export import constants as C
from aicoderd.export import convert, quantize, vocab
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


def test_vocabulary_is_read_as_transformers_reads_it(llama_dir: Path, tmp_path: Path) -> None:
    """The training stage's directories are read with ``tokenizers`` alone; the result is
    AutoTokenizer's own pipeline. A model type transformers rebuilds (qwen2) goes through it."""
    config = convert.read_config(llama_dir)
    written = json.loads((llama_dir / "tokenizer.json").read_text())
    assert vocab.loaded_as_written(llama_dir, config, written)
    assert vocab.backend(llama_dir, config).to_str() == vocab.as_loaded(llama_dir).to_str()
    qwen = tmp_path / "qwen"
    shutil.copytree(llama_dir, qwen)
    (qwen / "config.json").write_text(json.dumps(config | {"model_type": "qwen2"}))
    assert not vocab.loaded_as_written(qwen, config | {"model_type": "qwen2"}, written)
    # transformers gives a qwen2 model Qwen2's split regex whatever tokenizer.json says
    assert vocab.read(qwen, config["vocab_size"], convert.read_config(qwen)).pre == C.PRE_QWEN2
    assert vocab.read(llama_dir, config["vocab_size"], config).pre == C.PRE_GPT2


def test_converter_never_imports_transformers(llama_dir: Path, tmp_path: Path) -> None:
    code = (
        "import sys; from pathlib import Path; from aicoderd.export import convert;"
        f"convert.export(Path({str(llama_dir)!r}), Path({str(tmp_path / 'm.gguf')!r}), 'q8_0');"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
@pytest.mark.parametrize("out_type", C.IN_PROCESS_TYPES)
def test_threaded_encoding_gives_the_same_bytes(out_type: str) -> None:
    """Row ranges on several threads against gguf's own quantizer on the whole matrix."""
    ggml = OUTPUT_TYPES[out_type].ggml
    rng = np.random.default_rng(7)
    data = rng.standard_normal((1030, 2048), dtype=np.float32)  # > one piece, uneven split
    data[3, :40] = [0.0, -0.0, 1e-8, 6e-8, 65504.0, 7e4, -7e4, 1e30] * 5  # f16 overflows too
    with quantize.Encoder(threads=3) as encoder:
        got = encoder.encode(data, ggml)
    if ggml == "F32":
        whole = data.view(np.uint8)
    else:
        whole = gguf.quants.quantize(data, gguf.GGMLQuantizationType[ggml]).view(np.uint8)
    np.testing.assert_array_equal(got, whole.reshape(got.shape))
