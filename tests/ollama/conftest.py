from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"

from aicoderd.export import convert
from aicoderd.export.constants import IN_PROCESS_TYPES
from aicoderd.ollama.client import Client
from aicoderd.ollama.testing import FakeOllama
from tests.export.tiny import Shape, make_model


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny model, version ``20260101-train-00007``."""
    root = tmp_path_factory.mktemp("deploy")
    return make_model(root / "20260101-train-00007", Shape(), {"eval_loss": 2.25})


@pytest.fixture(scope="session")
def exports(tiny_model: Path) -> dict[str, Path]:
    """The tiny model in every type made in process."""
    root = tiny_model.parent
    return {t: convert.export(tiny_model, root / f"{t}.gguf", t).path for t in IN_PROCESS_TYPES}


@pytest.fixture(scope="session")
def ggufs(exports: dict[str, Path]) -> dict[str, Path]:
    """F16, F32 and Q8_0 exports of the tiny model."""
    return {t: exports[t] for t in ("f16", "f32", "q8_0")}


@pytest.fixture
def fake() -> Iterator[FakeOllama]:
    with FakeOllama() as server:
        yield server


@pytest.fixture
def client(fake: FakeOllama) -> Iterator[Client]:
    with Client(fake.url) as c:
        yield c
