"""Tiny public-looking models for the adapt tests: Llama (Llama-3 pre-tokenizer, grouped-query,
untied) and Qwen2 (Qwen2's pre-tokenizer, tied embeddings), exported with the project's
converter and quantized (Q8_0 in process; Q4_K_M with llama.cpp's own quantizer through
llama-cpp-python), then placed in a fake Ollama's store as ``ollama pull`` leaves them."""

from __future__ import annotations

import ctypes
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"

from aicoderd.config import Settings
from aicoderd.export import convert
from aicoderd.ollama.testing import FakeOllama
from tests.export.tiny import Shape, make_model
from tests.training_corpus import make_corpus

# A FIM-aware Go template as Qwen2.5-Coder's, and parameters as a pulled model carries them.
TEMPLATE = (
    "{{- if .Suffix }}<|fim_prefix|>{{ .Prompt }}<|fim_suffix|>{{ .Suffix }}<|fim_middle|>"
    "{{- else }}{{ .Prompt }}{{- end }}"
)
SYSTEM = "You complete code."
PARAMETERS = {"stop": ["<|endoftext|>", "<|fim_prefix|>"], "temperature": 0.2, "num_ctx": 512}
SHAPES = {
    "llama": Shape(arch="llama", kv_heads=2, pretokenizer="llama3"),
    "qwen2": Shape(arch="qwen2", kv_heads=2, tied=True),
}


def kquant(src: Path, dst: Path) -> Path | None:
    """Q4_K_M with llama.cpp's quantizer (llama-cpp-python's binding); None without it."""
    try:
        import llama_cpp
    except ImportError:
        return None
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    return dst if rc == 0 and dst.exists() else None


@pytest.fixture(scope="session")
def base_ggufs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``<arch>-<type>.gguf`` for llama and qwen2 in f16 and q8_0, and q4_k_m when possible."""
    root = tmp_path_factory.mktemp("bases")
    out = {}
    for arch, shape in SHAPES.items():
        model = make_model(root / arch, shape)
        for kind in ("f16", "q8_0"):
            out[f"{arch}-{kind}"] = convert.export(model, root / f"{arch}-{kind}.gguf", kind).path
        made = kquant(out[f"{arch}-f16"], root / f"{arch}-q4_k_m.gguf")
        if made is not None:
            out[f"{arch}-q4_k_m"] = made
    return out


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("corpus") / "corpus", documents=160)


@pytest.fixture
def ollama(tmp_path: Path) -> Iterator[FakeOllama]:
    with FakeOllama(root=tmp_path / "ollama-models") as fake:
        yield fake


def pull(fake: FakeOllama, name: str, gguf: Path) -> None:
    fake.pull(name, gguf, template=TEMPLATE, system=SYSTEM, parameters=PARAMETERS)


def settings_for(fake: FakeOllama, tmp_path: Path, **adapt: object) -> Settings:
    """Small, fast LoRA runs against the fake (its store is the Ollama models directory)."""
    knobs = {
        "ollama_models": str(fake.root),
        "max_steps": 12,
        "batch_size": 4,
        "context_length": 64,
        "rank": 8,
        "learning_rate": 3e-3,
        "checkpoint_every": 4,
        "eval_bytes": 4096,
        **adapt,
    }
    return Settings.model_validate(
        {
            "data_dir": str(tmp_path / "data"),
            "ollama": {"host": fake.url},
            "training": {"device": "cpu"},
            "adapt": knobs,
        }
    )


def store_state(fake: FakeOllama, name: str) -> dict[str, str]:
    """sha256 of a model's manifest file and of every blob it names."""
    key = fake.lookup(name)
    assert key is not None
    manifest = fake.manifest_path(key[0])
    files = [manifest] + [fake.blob_path(layer["digest"]) for layer in key[1].layers]
    files.append(fake.blob_path(key[1].config["digest"]))
    return {str(f): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}
