from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"

from tests.export.tiny import Shape, make_model

METRICS = {
    "kind": "pretrain",
    "corpus_snapshot": "snap-42",
    "eval_loss": 2.5,
    "steps": 10,
    "history": {"train": [[1, 3.0]]},
}


@pytest.fixture(scope="session")
def llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Grouped-query Llama, untied, GPT-2 pre-tokenizer, with metrics.json."""
    return make_model(tmp_path_factory.mktemp("llama") / "v1", Shape(kv_heads=2), METRICS)
