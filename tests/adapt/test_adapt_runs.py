"""``aicoder adapt`` killed with SIGKILL mid-run and run again: it resumes from its last
checkpoint and finishes the path; the daemon's ``adapt`` job learns from the stored feedback
(fill-in-the-middle records included) and reports progress as the status shows it."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from aicoderd.adapt import adapt_job
from aicoderd.adapt.job_kinds import ADAPT, Adapted
from aicoderd.cli.main import main
from aicoderd.jobctx import JobContext
from aicoderd.ollama.client import Client
from aicoderd.ollama.testing import FakeOllama
from aicoderd.store import Batch, Store
from tests.adapt.conftest import pull, settings_for
from tests.adapt.test_adapt import FEEDBACK

CLI = "import sys; from aicoderd.cli.main import main; sys.exit(main(sys.argv[1:]))"


def _config(settings_json: dict[str, object], tmp_path: Path) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(settings_json))
    return str(path)


def test_a_killed_adapt_resumes_from_its_checkpoint(
    ollama: FakeOllama,
    base_ggufs: dict[str, Path],
    corpus: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pull(ollama, "qwen-coder:q8", base_ggufs["qwen2-q8_0"])
    s = settings_for(ollama, tmp_path, max_steps=40, checkpoint_every=4)
    config = _config(s.model_dump(mode="json"), tmp_path)
    out = tmp_path / "r1"
    args = ["--config", config, "--json", "adapt", "--from", "qwen-coder:q8"]
    args += ["--corpus", str(corpus), "--out", str(out)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", CLI, *args], stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if json.loads(line).get("step", 0) >= 9:  # step 8's checkpoint is on disk
            proc.send_signal(signal.SIGKILL)
            break
    assert proc.wait(timeout=60) == -signal.SIGKILL
    assert not (out / "report.json").exists()

    assert main(args) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    steps = [m["step"] for m in lines if m["type"] == "progress" and "step" in m]
    assert steps[0] > 8 and (steps[0] - 1) % 4 == 0 and steps[-1] == 40  # resumed, not redone
    result = lines[-1]
    assert result["type"] == "result" and result["gate"]["passed"]
    assert result["deployed"]["name"] == "qwen-coder-mine:r1"


def test_the_adapt_job_learns_the_stored_feedback(
    ollama: FakeOllama, base_ggufs: dict[str, Path], corpus: Path, tmp_path: Path
) -> None:
    pull(ollama, "llama-coder:q8", base_ggufs["llama-q8_0"])
    s = settings_for(ollama, tmp_path)
    s.adapt.from_ = "llama-coder:q8"
    store = Store(s.state_db)
    try:
        records = [r.model_dump(mode="json", by_alias=True) for r in FEEDBACK]
        store.feedback.commit(Batch("file", records, "feedback.jsonl"))
    finally:
        store.close()
    messages = io.StringIO()
    result = adapt_job.run({"corpus": str(corpus)}, JobContext(42, s, messages))

    parsed = ADAPT.parse(result)
    assert isinstance(parsed, Adapted)
    assert parsed.version is not None and parsed.version.endswith("-adapt-00042")
    assert (parsed.snapshot, parsed.feedback, parsed.stopped) == ("00001-test", 3, "max_steps")
    assert parsed.gate is not None and parsed.gate["passed"]
    assert parsed.deployed is not None and parsed.deployed["latest"] == "llama-coder-mine:latest"
    progress = [json.loads(x) for x in messages.getvalue().splitlines()]
    steps = [m for m in progress if "step" in m]
    assert {"step", "total", "loss", "tokens_per_s", "eta_s"} <= set(steps[-1])
    assert any("tokenizer against llama.cpp" in m.get("message", "") for m in progress)
    pinned = (s.data_dir / "adapt" / parsed.version / "feedback.jsonl").read_text().splitlines()
    assert len(pinned) == 3 and "prefix" in json.loads(pinned[1])
    kept = sorted(p.name for p in (s.data_dir / "adapt" / parsed.version).iterdir())
    assert "merged" not in kept and {"checkpoints", "lora", "report.json"} <= set(kept)
    with Client(ollama.url) as client:
        assert client.show("llama-coder:q8") is not None


def test_the_adapt_job_under_torchrun(
    ollama: FakeOllama, base_ggufs: dict[str, Path], corpus: Path, tmp_path: Path
) -> None:
    """``training.launcher: torchrun``: the LoRA steps run as two DDP processes (gloo on the
    CPU), the job gates, exports and deploys what the first one saved."""
    pull(ollama, "qwen-coder:q8", base_ggufs["qwen2-q8_0"])
    s = settings_for(ollama, tmp_path, max_steps=6)
    s.adapt.from_ = "qwen-coder:q8"
    s.training.launcher = "torchrun"
    s.training.torchrun_args = ["--standalone", "--nproc-per-node=2"]
    messages = io.StringIO()
    result = adapt_job.run({"corpus": str(corpus)}, JobContext(7, s, messages))
    parsed = ADAPT.parse(result)
    assert isinstance(parsed, Adapted) and parsed.gate is not None and parsed.gate["passed"]
    assert parsed.deployed is not None and parsed.deployed["name"].startswith("qwen-coder-mine:")
    steps = [json.loads(x) for x in messages.getvalue().splitlines() if '"step"' in x]
    assert steps[-1]["step"] == steps[-1]["total"] == 6
