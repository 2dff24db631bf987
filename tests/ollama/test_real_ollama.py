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


def test_real_ollama_renders_our_template_as_the_fake_does(
    real: Client, ggufs: dict[str, Path]
) -> None:
    """The rendering the fake implements, checked against Ollama's own (``_debug_render_only``)."""
    from aicoderd.training import prompt

    d.deploy_gguf(real, ggufs["f16"], d.DeployOptions(name="aicoderd-test", version="t2"))
    try:
        cases = [
            (
                {"prompt": "def f(", "suffix": "\n    return 1\n"},
                prompt.fim_prompt("def f(", "\n    return 1\n"),
            ),
            ({"prompt": "x = 1\n"}, prompt.review_prompt("x = 1\n")),
            ({"prompt": "x = 1\n", "suffix": ""}, prompt.review_prompt("x = 1\n")),
        ]
        for request, expected in cases:
            body = {"model": "aicoderd-test:latest", "_debug_render_only": True, **request}
            got = real.request("POST", "/api/generate", json=body).json()
            assert got["_debug_info"]["rendered_template"] == expected, request
    finally:
        for name in ("aicoderd-test:t2", "aicoderd-test:latest"):
            real.delete(name)
