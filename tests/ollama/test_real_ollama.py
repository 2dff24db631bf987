"""The same deploy flow against a real Ollama, when ``OLLAMA_HOST`` (or the default address)
answers; skipped otherwise. Keeps the fake honest."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from aicoderd.errors import OllamaUnavailable
from aicoderd.ollama import deploy as d
from aicoderd.ollama.client import Client
from aicoderd.ollama.host import base_url

pytestmark = pytest.mark.ollama


@pytest.fixture
def real() -> Iterator[Client]:
    client = Client(base_url(os.environ.get("OLLAMA_HOST")))
    try:
        client.version()
    except OllamaUnavailable:
        client.close()
        pytest.skip("no Ollama answers at OLLAMA_HOST")
    yield client
    client.close()


def test_deploy_to_real_ollama(real: Client, ggufs: dict[str, Path]) -> None:
    r = d.deploy_gguf(real, ggufs["f16"], d.DeployOptions(name="aicoderd-test", version="t1"))
    try:
        assert r["statuses"][-1] == "success"
        shown = real.show("aicoderd-test:latest")
        assert shown is not None and shown["details"]["family"] == "llama"
        with pytest.raises(Exception, match=r"only supported|unknown"):
            d.deploy_gguf(
                real, ggufs["f32"], d.DeployOptions(name="aicoderd-test", quantize="q8_0")
            )
    finally:
        for name in ("aicoderd-test:t1", "aicoderd-test:latest"):
            real.delete(name)
