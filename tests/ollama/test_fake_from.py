"""The fake's model store and ``from`` creates, as Ollama keeps and answers them: a pulled
model's manifest and blobs on disk, ``/api/show``'s modelfile and Go-printed parameters, a
create ``from`` it sharing its layers, one adapter at most, an adapter refused when asked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aicoderd.errors import CreateFailed, OllamaError
from aicoderd.ollama.client import Client
from aicoderd.ollama.testing import FakeOllama


def test_a_pulled_model_is_on_disk_and_shown_as_ollama_shows_it(
    fake: FakeOllama, client: Client, ggufs: dict[str, Path]
) -> None:
    digest = fake.pull(
        "team/coder:q8",
        ggufs["q8_0"],
        template="{{ .Prompt }}",
        system="Be brief.",
        parameters={"stop": ["<a>", "<b>"], "temperature": 0.5},
    )
    manifest = fake.root / "manifests/registry.ollama.ai/team/coder/q8"
    body = json.loads(manifest.read_text())
    assert body["schemaVersion"] == 2 and body["layers"][0]["digest"] == digest
    assert fake.blob_path(digest).read_bytes() == ggufs["q8_0"].read_bytes()
    shown = client.show("team/coder:q8")
    assert shown is not None
    assert f"FROM {fake.blob_path(digest)}" in shown["modelfile"].splitlines()
    lines = shown["parameters"].splitlines()
    assert [line.split()[0] for line in lines] == ["stop", "stop", "temperature"]
    assert lines[0].split(None, 1)[1] == '"<a>"' and lines[2].endswith(" 0.5")
    assert shown["details"]["quantization_level"] == "Q8_0"
    client.delete("team/coder:q8")
    assert not manifest.exists()


def test_create_from_shares_the_layers_and_limits_adapters(
    fake: FakeOllama, client: Client, ggufs: dict[str, Path]
) -> None:
    fake.pull("coder:f16", ggufs["f16"], template="{{ .Prompt }}", parameters={"top_k": 5})
    statuses = client.create({"model": "coder-x:v1", "from": "coder:f16", "system": "Hi."})
    assert statuses[-1] == "success"
    new, base = fake.lookup("coder-x:v1"), fake.lookup("coder:f16")
    assert new is not None and base is not None
    assert new[1].layers[0]["digest"] == base[1].layers[0]["digest"]
    shown = client.show("coder-x:v1")
    assert shown is not None and (shown["template"], shown["system"]) == ("{{ .Prompt }}", "Hi.")
    with pytest.raises(OllamaError, match="pull model manifest"):
        client.create({"model": "y:v1", "from": "missing:v9"})
    two = {"a.gguf": "sha256:" + "0" * 64, "b.gguf": "sha256:" + "1" * 64}
    with pytest.raises(OllamaError, match="only one adapter"):
        client.create({"model": "y:v1", "from": "coder:f16", "adapters": two})
    with pytest.raises(CreateFailed, match="not an adapter"):  # a model GGUF is no adapter
        digest = "sha256:" + fake.blob_path(base[1].layers[0]["digest"]).name[7:]
        client.create({"model": "y:v1", "from": "coder:f16", "adapters": {"a.gguf": digest}})
    fake.adapters_refused = True
    with pytest.raises(CreateFailed, match="no longer supported"):
        client.create({"model": "y:v1", "from": "coder:f16", "adapters": {"a.gguf": digest}})
