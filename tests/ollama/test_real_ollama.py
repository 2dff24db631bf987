"""The same deploy flow against a real Ollama, when ``OLLAMA_HOST`` (or the default address)
answers; skipped otherwise. Keeps the fake honest."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from aicoderd.errors import OllamaError, OllamaUnavailable
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


def test_adapt_against_real_ollama(real: Client, ggufs: dict[str, Path], tmp_path: Path) -> None:
    """A tiny base created in the real Ollama, adapted (adapter mode: a refusal falls back to
    merged) and deployed beside it; the base's blob unchanged. Needs Ollama's models directory
    readable here (adapt.ollama_models as the configuration resolves it)."""
    from aicoderd.adapt.run import Request, adapt
    from aicoderd.config import Settings
    from aicoderd.training.pretrain import Hooks
    from tests.training_corpus import make_corpus

    d.deploy_gguf(real, ggufs["f16"], d.DeployOptions(name="aicoderd-test-base", version="t1"))
    created = ["aicoderd-test-base:t1", "aicoderd-test-base:latest"]
    try:
        settings = Settings.model_validate(
            {
                "data_dir": str(tmp_path / "data"),
                "ollama": {"host": os.environ.get("OLLAMA_HOST")},
                "training": {"device": "cpu"},
                "adapt": {"mode": "adapter", "max_steps": 12, "batch_size": 4,
                          "context_length": 64, "learning_rate": 3e-3, "eval_bytes": 4096},
            }
        )  # fmt: skip
        models = settings.adapt.ollama_models
        shown = real.show("aicoderd-test-base:t1") or {}
        blob = str(shown.get("modelfile", "")).split("sha256-")[-1][:64]
        if models is None or not (models / "blobs" / f"sha256-{blob}").is_file():
            pytest.skip("Ollama's models directory is not readable from here")
        before = (models / "blobs" / f"sha256-{blob}").read_bytes()
        corpus = make_corpus(tmp_path / "corpus", documents=120)
        out = tmp_path / "r1"
        r = adapt(Request("aicoderd-test-base:t1", corpus, out, "r1", []), settings, real,
                  Hooks(), lambda m: None)  # fmt: skip
        created += ["aicoderd-test-base-mine:r1", "aicoderd-test-base-mine:latest"]
        assert r["gate"]["passed"], r["gate"]
        assert r["deployed"]["mode"] in ("adapter", "merged")
        assert ("adapter_refused" in r) == (r["deployed"]["mode"] == "merged")
        mine = real.show("aicoderd-test-base-mine:latest")
        assert mine is not None and mine["template"] == shown["template"]
        assert (models / "blobs" / f"sha256-{blob}").read_bytes() == before
    finally:
        for name in created:
            with contextlib.suppress(OllamaError):
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
