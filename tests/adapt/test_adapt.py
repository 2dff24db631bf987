"""The whole path against the fake Ollama: a pulled model adapted (tokenizer parity, LoRA steps
on the corpus and feedback, the gate), exported and checked in llama.cpp, created beside the
original as ``<name>-mine:<version>`` with the base's template and parameters, ``:latest``
moved, rolled back; the original's manifest and blobs byte for byte as they were."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from aicoderd.adapt import source, vocab
from aicoderd.adapt.run import Request, adapt
from aicoderd.export.build import verified
from aicoderd.ollama import versions
from aicoderd.ollama.client import Client
from aicoderd.ollama.testing import FakeOllama
from aicoderd.sources.feedback_file import FeedbackRecord
from aicoderd.training.pretrain import Hooks
from tests.adapt.conftest import PARAMETERS, SYSTEM, TEMPLATE, pull, settings_for, store_state


def record(prompt: str, suggestion: str, verdict: str = "accepted", **extra: Any) -> FeedbackRecord:
    return FeedbackRecord.model_validate(
        {
            "schema": 1,
            "id": str(uuid.uuid4()),
            "time": "2026-01-02T03:04:05Z",
            "model": "coder-mine:latest",
            "prompt": prompt,
            "suggestion": suggestion,
            "verdict": verdict,
            **extra,
        }
    )


FEEDBACK = [
    record("def total_items(items, total):\n", "    for i in range(len(items)):\n"),
    record(
        "def size_name(name, size):\n    # TODO\n",
        "        size = size + name[i]\n",
        prefix="def size_name(name, size):\n    # TODO\n    for i in range(len(name)):\n",
        suffix="    return size\n",
    ),
    record("x = ", "1", verdict="rejected"),
]


def run(fake: FakeOllama, name: str, corpus: Path, out: Path, **knobs: Any) -> dict[str, Any]:
    said: list[str] = []
    with Client(fake.url) as client:
        result = adapt(
            Request(name, corpus, out, out.name, FEEDBACK),
            settings_for(fake, out.parent, **knobs),
            client,
            Hooks(),
            said.append,
        )
    result["said"] = said
    return result


def test_merged_llama_deploys_beside_the_original_and_rolls_back(
    ollama: FakeOllama, base_ggufs: dict[str, Path], corpus: Path, tmp_path: Path
) -> None:
    pull(ollama, "llama-coder:q8", base_ggufs["llama-q8_0"])
    before = store_state(ollama, "llama-coder:q8")
    r = run(ollama, "llama-coder:q8", corpus, tmp_path / "v1")

    assert r["gate"]["passed"], r["gate"]
    assert r["adapted"]["eval_loss_per_byte"] < r["base"]["eval_loss_per_byte"]
    for side in (r["base"], r["adapted"]):  # the completion metrics, in the base's FIM tokens
        assert side["completion_cases"] > 0 and side["infill_exact_match"] is not None
        assert side["bits_per_byte"] > 0 and side["xz_bits_per_byte"] > 0
    assert "infill exact match" in r["gate"]["reason"]
    assert r["training"]["feedback_examples"] == 2 and r["training"]["fim_documents"] > 0
    merged = Path(r["paths"]["merged_gguf"])
    assert merged.name.endswith("-q8_0.gguf") and verified(merged) is True
    assert r["export"]["verify"]["tokens_identical"]
    # the base's vocabulary, pre-tokenizer, special ids and chat template, carried over
    assert vocab.read(merged).fields == vocab.read(base_ggufs["llama-q8_0"]).fields

    deployed = r["deployed"]
    assert (deployed["name"], deployed["latest"]) == (
        "llama-coder-mine:v1",
        "llama-coder-mine:latest",
    )
    with Client(ollama.url) as client:
        shown = client.show("llama-coder-mine:latest")
        assert shown is not None
        assert (shown["template"], shown["system"]) == (TEMPLATE, SYSTEM)
        assert source.parse_parameters(shown["parameters"]) == PARAMETERS
        assert shown["details"]["quantization_level"] == "Q8_0"

        second = run(ollama, "llama-coder:q8", corpus, tmp_path / "v2", max_steps=6)
        assert second["deployed"]["name"] == "llama-coder-mine:v2"
        listed = versions.versions(client, "llama-coder-mine")
        assert [(v["version"], v["latest"]) for v in listed] == [("v1", False), ("v2", True)]
        assert versions.point_latest(client, "llama-coder-mine")["now"] == "llama-coder-mine:v1"
        names = {m["name"] for m in client.tags()}
        assert "llama-coder:q8" in names
    assert store_state(ollama, "llama-coder:q8") == before


def test_adapter_on_qwen2_is_created_from_the_original(
    ollama: FakeOllama, base_ggufs: dict[str, Path], corpus: Path, tmp_path: Path
) -> None:
    pull(ollama, "qwen-coder:f16", base_ggufs["qwen2-f16"])
    before = store_state(ollama, "qwen-coder:f16")
    r = run(ollama, "qwen-coder:f16", corpus, tmp_path / "a1", mode="adapter")

    assert r["gate"]["passed"]
    adapter = Path(r["paths"]["adapter_gguf"])
    report = json.loads(adapter.with_name(adapter.name + ".verify.json").read_text())
    assert report["passed"] and report["kl_mean"] < 1e-4  # llama.cpp + LoRA == PEFT
    assert "merged_gguf" not in r["paths"]
    assert r["deployed"]["mode"] == "adapter"
    found = ollama.lookup("qwen-coder-mine:a1")
    assert found is not None
    kinds = {layer["mediaType"].rsplit(".", 1)[1]: layer["digest"] for layer in found[1].layers}
    original = ollama.lookup("qwen-coder:f16")
    assert original is not None
    assert kinds["model"] == original[1].layers[0]["digest"]  # the base's weights, shared
    assert "adapter" in kinds
    assert store_state(ollama, "qwen-coder:f16") == before


def test_a_refused_adapter_falls_back_to_merged(
    ollama: FakeOllama, base_ggufs: dict[str, Path], corpus: Path, tmp_path: Path
) -> None:
    pull(ollama, "llama-coder:f16", base_ggufs["llama-f16"])
    ollama.adapters_refused = True
    r = run(ollama, "llama-coder:f16", corpus, tmp_path / "r1", mode="adapter", max_steps=8)
    assert "no longer supported" in r["adapter_refused"]
    assert any("deploying the merged model instead" in s for s in r["said"])
    assert r["deployed"]["mode"] == "merged"
    assert verified(Path(r["paths"]["merged_gguf"])) is True
    with Client(ollama.url) as client:
        assert client.show("llama-coder-mine:latest") is not None


def test_a_k_quant_base_comes_back_at_its_level(
    ollama: FakeOllama, base_ggufs: dict[str, Path], corpus: Path, tmp_path: Path
) -> None:
    if "qwen2-q4_k_m" not in base_ggufs:
        pytest.skip("no k-quant quantizer here")
    pull(ollama, "qwen-coder:q4", base_ggufs["qwen2-q4_k_m"])
    r = run(ollama, "qwen-coder:q4", corpus, tmp_path / "k1", max_steps=8)
    assert r["gate"]["passed"]
    assert r["export"]["type"] == "q4_k_m"
    # no llama-quantize here: written as F16, verified as F16, quantized by Ollama on create
    assert r["export"].get("ollama_quantize") == "q4_K_M"
    assert r["deployed"]["quantize"] == "q4_K_M"
    with Client(ollama.url) as client:
        shown = client.show("qwen-coder-mine:k1")
        assert shown is not None and shown["details"]["quantization_level"] == "Q4_K_M"


def test_the_gate_refuses_and_nothing_is_deployed(
    ollama: FakeOllama, base_ggufs: dict[str, Path], corpus: Path, tmp_path: Path
) -> None:
    pull(ollama, "llama-coder:q8", base_ggufs["llama-q8_0"])
    r = run(ollama, "llama-coder:q8", corpus, tmp_path / "g1", max_steps=2, gate_tolerance=0.99)
    assert not r["gate"]["passed"]
    assert "deployed" not in r and "merged_gguf" not in r["paths"]
    assert not list((tmp_path / "g1").glob("*.gguf"))
    with Client(ollama.url) as client:
        assert [m["name"] for m in client.tags()] == ["llama-coder:q8"]


def test_an_hf_directory_is_adapted_and_written_not_deployed(
    ollama: FakeOllama, base_ggufs: dict[str, Path], corpus: Path, tmp_path: Path
) -> None:
    model_dir = base_ggufs["llama-f16"].parent / "llama"  # save_pretrained + tokenizer.json
    r = run(ollama, str(model_dir), corpus, tmp_path / "h1", max_steps=8)
    assert r["gate"]["passed"] and r["tokenizer_parity"] is None  # checked by the export
    merged = Path(r["paths"]["merged_gguf"])
    assert merged.name == "llama-mine-h1-f16.gguf" and verified(merged) is True
    assert "deployed" not in r
