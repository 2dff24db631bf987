from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"

from aicoderd.export import convert
from aicoderd.ollama.client import Client
from aicoderd.ollama.testing import FakeOllama
from tests.export.tiny import Shape, make_model


@pytest.fixture(scope="session")
def ggufs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """F16, F32 and Q8_0 exports of one tiny model (version ``20260101-train-00007``)."""
    root = tmp_path_factory.mktemp("deploy")
    model = make_model(root / "20260101-train-00007", Shape(), {"eval_loss": 2.25})
    return {t: convert.export(model, root / f"{t}.gguf", t).path for t in ("f16", "f32", "q8_0")}


@pytest.fixture
def fake() -> Iterator[FakeOllama]:
    with FakeOllama() as server:
        yield server


@pytest.fixture
def client(fake: FakeOllama) -> Iterator[Client]:
    with Client(fake.url) as c:
        yield c
