"""The unattended chain in the real daemon: files dropped in the inbox become a corpus, a first
model, a verified GGUF and an Ollama model (the fake Ollama server) with nobody submitting a
job; feedback then makes a finetuned version go the same way. A restart queues nothing twice."""

from __future__ import annotations

import json
import os
import sysconfig
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from aicoderd.ollama.client import Client
from aicoderd.ollama.testing import FakeOllama
from tests.conftest import DaemonProc, wait_for

STDLIB = Path(sysconfig.get_paths()["stdlib"])
FILES = ("textwrap.py", "shlex.py", "getopt.py", "colorsys.py", "bisect.py")
TRAINING = {  # a small, quick run on the CPU: the chain is under test, not the model
    "preset": "tiny",
    "device": "cpu",
    "batch_size": 4,
    "max_steps": 8,
    "warmup_steps": 2,
    "eval_every": 8,
    "eval_batches": 1,
    "checkpoint_every": 100,
    "finetune_steps": 3,
    "finetune_batch_size": 2,
    "replay_fraction": 0.0,
    "gate_tolerance": 100.0,  # a three-step finetune is promoted whatever its eval loss
}
PIPELINE = {
    "first_model_min_tokens": 10_000_000,  # lowered by a reload once the status says so
    "retrain_min_new_tokens": 10_000_000,
    "finetune_min_feedback": 3,
}


@pytest.fixture
def fake() -> Iterator[FakeOllama]:
    with FakeOllama() as server:
        yield server


def drop(inbox: Path, name: str, text: str) -> None:
    tmp = inbox / f".{name}.part"
    tmp.write_text(text)
    os.rename(tmp, inbox / name)


def jobs(d: DaemonProc) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = d.get("/v1/jobs", params={"limit": 100}).json()["jobs"]
    return sorted(found, key=lambda j: j["id"])


def chain(d: DaemonProc) -> list[tuple[str, str]]:
    return [(j["kind"], j["state"]) for j in jobs(d) if j["kind"] != "corpus.build"]


def succeeded(*kinds: str) -> list[tuple[str, str]]:
    return [(kind, "succeeded") for kind in kinds]


def settled(d: DaemonProc, expected: list[tuple[str, str]]) -> bool:
    now = chain(d)
    failed = [j for j in jobs(d) if j["state"] == "failed"]
    assert not failed, (failed, d.logs()[-4000:])
    return now == expected


def pipeline(d: DaemonProc) -> dict[str, Any]:
    view: dict[str, Any] = d.status()["pipeline"]
    return view


def feedback_line() -> str:
    return json.dumps(
        {
            "schema": 1,
            "id": str(uuid.uuid4()),
            "time": "2026-11-24T10:00:00Z",
            "model": "aicoder:latest",
            "file": "src/app.py",
            "language": "python",
            "prompt": "def add(a, b):\n",
            "suggestion": "    return a + b\n",
            "verdict": "accepted",
        }
    )


def test_inbox_to_ollama_then_feedback_to_a_new_version(
    make_daemon: Callable[..., DaemonProc], fake: FakeOllama
) -> None:
    d = make_daemon(
        corpus={"debounce_seconds": 0.3},
        training=TRAINING,
        pipeline=PIPELINE,
        ollama={"host": fake.url, "retry_initial_seconds": 1},
    ).start(extra_env={"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2"})
    for name in FILES:
        drop(d.inbox, name, (STDLIB / name).read_text())

    # The corpus is built by itself; the first model waits for its token threshold.
    wait_for(lambda: d.status()["corpus"]["documents"] == len(FILES), timeout=90, interval=0.3)
    tokens = d.status()["corpus"]["tokens_estimate"]
    want = f"{tokens:,} of 10,000,000 tokens for the first model"
    view = wait_for(lambda: (p := pipeline(d))["train"]["waiting_for"] == want and p, timeout=10)
    assert view["current_model"] is None and view["finetune"]["state"] == "waiting"
    assert view["export"]["waiting_for"] == "a model the evaluation gate promotes"
    assert chain(d) == []

    # Lower the threshold: train → eval (the gate) → export → deploy, unattended.
    d.write_config({**d.config, "pipeline": {**PIPELINE, "first_model_min_tokens": 1000}})
    assert d.client.post("/v1/reload").json()["reloaded"] is True
    first = succeeded("train", "eval", "export", "deploy")
    wait_for(lambda: settled(d, first), timeout=240, interval=0.5)
    done = jobs(d)
    model = done[-1]["result"]["name"]
    version = next(j["result"]["version"] for j in done if j["kind"] == "train")
    assert model.startswith("aicoder:") and version.lower() in model
    assert next(j for j in done if j["kind"] == "eval")["result"]["promoted"] is True
    assert next(j for j in done if j["kind"] == "export")["result"]["verify"]["passed"] is True
    with Client(fake.url) as ollama:
        listed = {m["name"] for m in ollama.tags()}
        assert {model, "aicoder:latest"} <= listed
        shown = ollama.show(model)
        assert shown is not None and shown["details"]["family"] == "llama"
    assert pipeline(d)["current_model"] == version

    # A restart re-reads the same facts from state.db: nothing is queued again.
    d.stop()
    d.start(extra_env={"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2"})
    wait_for(lambda: pipeline(d) is not None, timeout=10)
    time.sleep(2.5)  # more than one look
    assert chain(d) == first

    # Feedback since the last finetune reaches the threshold: a finetuned version follows.
    path = d.data_dir / "feedback" / "user_feedback.jsonl"
    with open(path, "a") as fh:
        fh.write(feedback_line() + "\n" + feedback_line() + "\n")
    wait_for(lambda: d.status()["feedback"]["valid"] == 2, timeout=10)
    want = f"2 of 3 new feedback records for {version}"
    wait_for(lambda: pipeline(d)["finetune"]["waiting_for"] == want, timeout=10)
    with open(path, "a") as fh:
        fh.write(feedback_line() + "\n")
    second = [*first, *succeeded("finetune", "eval", "export", "deploy")]
    wait_for(lambda: settled(d, second), timeout=240, interval=0.5)
    done = jobs(d)
    tuned = next(j for j in reversed(done) if j["kind"] == "finetune")["result"]["version"]
    new_model = done[-1]["result"]["name"]
    assert tuned != version and tuned.lower() in new_model
    assert pipeline(d)["current_model"] == tuned
    with Client(fake.url) as ollama:
        digests = {m["name"]: m["digest"] for m in ollama.tags()}
        assert {model, new_model, "aicoder:latest"} <= set(digests)
        assert digests["aicoder:latest"] == digests[new_model] != digests[model]
    view = pipeline(d)
    assert view["finetune"]["waiting_for"] == f"0 of 3 new feedback records for {tuned}"
    d.stop()


def test_a_dropped_folder_becomes_a_deployed_starter_with_the_default_configuration(
    make_daemon: Callable[..., DaemonProc], fake: FakeOllama, tmp_path: Path
) -> None:
    """From an empty data dir, with the defaults (the starter model, its wall-time bound, f16,
    always verified) scaled down for CI: a folder of code dropped into the inbox ends as a
    verified GGUF deployed as <ollama.model>:<version> and :latest, with nobody submitting a
    job, and `aicoder status` says so."""
    d = make_daemon(
        ingest={"settle_seconds": 0.5},
        corpus={"debounce_seconds": 1.0},
        # CI's machine is never idle: the upgrade to training.preset waits, as it says
        pipeline={
            "first_model_min_tokens": 20_000,
            "starter_wall_seconds": 20.0,
            "idle_load": 1e-6,
        },
        ollama={"host": fake.url, "retry_initial_seconds": 1},
    ).start(extra_env={"HF_HUB_OFFLINE": "1"})
    project = tmp_path / "project"
    for name in sorted(p.name for p in STDLIB.glob("*.py"))[:40]:
        (project / "lib").mkdir(parents=True, exist_ok=True)
        (project / "lib" / name).write_text((STDLIB / name).read_text(encoding="utf-8"))
    os.rename(project, d.inbox / "project")  # a whole folder, dropped at once

    first = succeeded("train", "eval", "export", "deploy")
    wait_for(lambda: settled(d, first), timeout=900, interval=1.0)
    done = {j["kind"]: j for j in jobs(d)}
    train = done["train"]
    assert (train["params"]["preset"], train["params"]["max_wall_seconds"]) == ("tiny", 20.0)
    metrics = json.loads(Path(train["result"]["model_dir"], "metrics.json").read_text())
    assert metrics["wall_seconds"] <= 20.0 + 5.0
    assert done["export"]["result"]["verify"]["passed"] is True
    assert done["export"]["result"]["type"] == "f16"
    model = done["deploy"]["result"]["name"]
    with Client(fake.url) as ollama:
        assert {model, "aicoder:latest"} <= {m["name"] for m in ollama.tags()}
    version = train["result"]["version"]

    def shown() -> str | None:  # the pipeline's next look is at most a moment away
        out = d.cli("status")
        assert out.returncode == 0, out.stderr
        return out.stdout if "deploy: waiting" in out.stdout else None

    text = wait_for(shown, timeout=30, interval=0.5)
    assert f"model: {version}" in text and "loss plot:" in text
    assert "train: waiting" in text and "an idle machine for a small model" in text
