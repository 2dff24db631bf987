"""The training job kinds in the real daemon: ``train`` survives a daemon crash by resuming from
its checkpoint, ``eval`` promotes, ``finetune`` without feedback ends skipped; and the
``torchrun`` launcher runs the same training under DDP (two CPU processes, gloo)."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aicoderd.config import Settings
from aicoderd.jobctx import JobContext
from aicoderd.training import model_jobs as training_jobs
from aicoderd.training import optim
from aicoderd.training.launch import torchrun_command
from tests.conftest import DaemonProc, wait_for
from tests.training_corpus import feedback_line, make_corpus

TRAINING = {
    "preset": "tiny",
    "batch_size": 8,
    "learning_rate": 3e-3,
    "warmup_steps": 5,
    "eval_every": 20,
    "eval_batches": 2,
    "checkpoint_every": 5,
}


def _job(d: DaemonProc, job_id: int) -> dict[str, Any]:
    job: dict[str, Any] = d.get(f"/v1/jobs/{job_id}").json()
    return job


def _submit(d: DaemonProc, kind: str, params: dict[str, Any]) -> int:
    resp = d.client.post("/v1/jobs", json={"kind": kind, "params": params})
    assert resp.status_code in (200, 201), resp.text
    return int(resp.json()["id"])


def _final(d: DaemonProc, job_id: int, timeout: float = 300) -> dict[str, Any]:
    return wait_for(
        lambda: (j := _job(d, job_id))["state"] not in ("queued", "running") and j,
        timeout=timeout,
        interval=0.2,
    )


def test_train_resumes_after_a_daemon_crash_then_eval_promotes(
    make_daemon: Callable[..., DaemonProc], tmp_path: Path
) -> None:
    corpus = make_corpus(tmp_path / "corpus", documents=120)
    d = make_daemon(training=TRAINING, corpus={"auto_build": False}).start(
        extra_env={"HF_HUB_OFFLINE": "1"}
    )
    job_id = _submit(d, "train", {"corpus": str(corpus), "version": "v1", "max_steps": 30})
    wait_for(lambda: (_job(d, job_id)["progress"] or {}).get("step", 0) >= 10, timeout=240)
    d.kill9()
    # The configuration changes while the daemon is down: the resumed job keeps its spec.
    d.write_config({**d.config, "training": {**TRAINING, "learning_rate": 1e-2}})
    d.start(extra_env={"HF_HUB_OFFLINE": "1"})
    job = _final(d, job_id)
    assert job["state"] == "succeeded", (job, d.logs()[-3000:])
    assert job["attempts"] == 2
    assert job["result"]["steps"] == 30 and job["result"]["version"] == "v1"

    body = d.get("/v1/events", params={"since": 0, "follow": "0"}).text
    mine = [e for e in map(json.loads, body.splitlines()) if e["job_id"] == job_id]
    requeued = next(e["seq"] for e in mine if e["type"] == "job.requeued")
    after = [e for e in mine if e["type"] == "job.progress" and e["seq"] > requeued]
    steps = [e for e in after if "step" in e]
    assert steps and min(e["step"] for e in steps) > 5  # from a checkpoint, not from step 1
    assert any("learning_rate 0.01 (run: 0.003)" in e.get("message", "") for e in after)
    for e in steps:  # the schedule it started with (warmup 3 of 30 steps), no jump
        expected = 3e-3 * optim.lr_factor(e["step"] - 1, warmup=3, total=30, floor=0.1)
        assert e["lr"] == float(f"{expected:.4g}"), e

    models = d.data_dir / "models"
    assert sorted(p.name for p in models.iterdir()) == ["v1"]
    assert (models / "v1" / "metrics.json").exists()
    assert not (models / "v1" / "checkpoints").exists()

    ev = _final(d, _submit(d, "eval", {"model": "v1"}))
    assert ev["state"] == "succeeded", ev
    assert ev["result"]["promoted"] is True and ev["result"]["reason"] == "no current model"
    assert (models / "current").resolve() == (models / "v1").resolve()

    proc = d.cli("jobs", "submit", "finetune", "--wait")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "no usable feedback in state.db (0 records)" in proc.stdout

    # The job learns from what the daemon stored, not from the files as they are now: a
    # repeated line counts once, and a rotation does not hide what was read before it.
    fb_file = d.data_dir / "feedback" / "user_feedback.jsonl"
    lines = [feedback_line(f"def f{i}(x):\n", "    return x\n", "accepted") for i in range(3)]
    fb_file.write_text("\n".join([*lines, lines[0]]) + "\n")
    wait_for(lambda: d.status()["feedback"]["valid"] == 3, timeout=30)
    fb_file.rename(fb_file.with_name("user_feedback.jsonl.1"))
    fb_file.write_text("")
    ft = _final(d, _submit(d, "finetune", {"version": "f1"}))
    assert ft["state"] == "succeeded", (ft, d.logs()[-3000:])
    metrics = json.loads((models / "f1" / "metrics.json").read_text())
    assert metrics["examples"]["chosen"] == 3
    assert metrics["feedback"] == "state.db (3 records)"


def test_a_train_job_bounded_by_time_completes_and_a_cancelled_one_leaves_nothing(
    make_daemon: Callable[..., DaemonProc], tmp_path: Path
) -> None:
    corpus = make_corpus(tmp_path / "corpus", documents=120)
    d = make_daemon(training=TRAINING, corpus={"auto_build": False}).start(
        extra_env={"HF_HUB_OFFLINE": "1"}
    )
    params = {"corpus": str(corpus), "version": "timed", "preset": "tiny"}
    timed = _final(d, _submit(d, "train", params | {"max_wall_seconds": 15}))
    assert timed["state"] == "succeeded", (timed, d.logs()[-3000:])
    assert timed["result"]["stopped"] == "max_wall_seconds"
    metrics = json.loads((d.data_dir / "models" / "timed" / "metrics.json").read_text())
    plan = metrics["plan"]
    assert plan["bound"] == "max_wall_seconds" and plan["fixed_at_step"] == plan["warmup"]
    assert metrics["schedule_complete"] and metrics["steps"] == plan["total"] > plan["warmup"]
    assert metrics["wall_seconds"] <= 15 * 1.1

    doomed = _submit(d, "train", params | {"version": "doomed", "max_steps": 100_000})
    wait_for(lambda: (_job(d, doomed)["progress"] or {}).get("step", 0) >= 3, timeout=120)
    assert (d.data_dir / "models" / ".doomed.partial" / "train_spec.json").exists()
    resp = d.client.delete(f"/v1/jobs/{doomed}")
    assert resp.status_code == 200, resp.text
    assert _final(d, doomed)["state"] == "cancelled"
    assert sorted(p.name for p in (d.data_dir / "models").iterdir()) == ["timed"]


def test_torchrun_launcher_trains_with_ddp(tmp_path: Path) -> None:
    corpus = make_corpus(tmp_path / "corpus", documents=60)
    training = {**TRAINING, "launcher": "torchrun", "max_steps": 6, "eval_every": 6}
    training["torchrun_args"] = ["--standalone", "--nproc-per-node=2"]
    settings = Settings(data_dir=tmp_path / "data", training=training)
    assert torchrun_command(Path("s.json"), settings.training)[1:5] == [
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node=2",
    ]
    out = io.StringIO()
    os.environ["HF_HUB_OFFLINE"] = "1"
    result = training_jobs.run_train(
        {"corpus": str(corpus), "version": "ddp"}, JobContext(1, settings, out)
    )
    assert result["steps"] == 6 and result["stopped"] == "max_steps"
    assert (tmp_path / "data" / "models" / "ddp" / "model.safetensors").exists()
    progress = [json.loads(line) for line in out.getvalue().splitlines()]
    assert progress and progress[-1]["step"] == 6
    # Two processes, each 8 sequences a step: 6 steps of 16 sequences of 128 tokens.
    metrics = json.loads((tmp_path / "data" / "models" / "ddp" / "metrics.json").read_text())
    assert metrics["tokens_seen"] == 6 * 16 * 128
