"""The real daemon with ``adapt.from`` set: files dropped in the inbox become a corpus, and the
pipeline's ``adapt`` job takes the model from the fake Ollama's store to a gated, verified,
deployed ``<name>-mine:<version>`` with nobody submitting a job; the status says what the
stage waits for next."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aicoderd.ollama.client import Client
from aicoderd.ollama.testing import FakeOllama
from tests.adapt.conftest import pull, store_state
from tests.conftest import DaemonProc, wait_for
from tests.integration.test_pipeline_daemon import FILES, STDLIB, drop, jobs


def adapt_done(d: DaemonProc) -> dict[str, Any] | None:
    found = [j for j in jobs(d) if j["kind"] == "adapt"]
    failed = [j for j in jobs(d) if j["state"] == "failed"]
    assert not failed, (failed, d.logs()[-4000:])
    return found[0] if found and found[0]["state"] == "succeeded" else None


def test_the_pipeline_adapts_an_ollama_model(
    make_daemon: Callable[..., DaemonProc],
    ollama: FakeOllama,
    base_ggufs: dict[str, Path],
) -> None:
    pull(ollama, "coder:q8", base_ggufs["llama-q8_0"])
    before = store_state(ollama, "coder:q8")
    d = make_daemon(
        corpus={"debounce_seconds": 0.3},
        training={"device": "cpu"},
        pipeline={"auto_train": False, "auto_finetune": False},
        ollama={"host": ollama.url},
        adapt={
            "from": "coder:q8",
            "ollama_models": str(ollama.root),
            "min_new_tokens": 1,
            "max_steps": 8,
            "batch_size": 4,
            "context_length": 64,
            "learning_rate": 3e-3,
            "eval_bytes": 4096,
        },
    ).start(extra_env={"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2"})
    assert os.path.isdir(d.inbox)
    for name in FILES:
        drop(d.inbox, name, (STDLIB / name).read_text())

    job = wait_for(lambda: adapt_done(d), timeout=300, interval=0.5)
    result = job["result"]
    assert result["gate"]["passed"] and result["stopped"] == "max_steps"
    assert result["deployed"]["latest"] == "coder-mine:latest"
    assert job["params"]["pipeline"]["reason"].startswith("the corpus grew by")
    with Client(ollama.url) as client:
        assert client.show("coder-mine:latest") is not None
    assert store_state(ollama, "coder:q8") == before

    view = wait_for(lambda: (p := d.status()["pipeline"])["adapt"]["state"] == "waiting" and p)
    assert "new tokens in a new snapshot" in view["adapt"]["waiting_for"]
    assert "adapt: waiting" in d.cli("status").stdout
