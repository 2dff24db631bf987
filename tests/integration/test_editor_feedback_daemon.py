"""Editors' logs followed by the real daemon: Continue's dev data and Tabby's event files are
appended to, the daemon maps them to feedback records in the store, a restart and a log
rotation lose and double nothing, and the pipeline queues a finetune of the current model that
runs on them."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from aicoderd.sources.editor_logs import NAMESPACE
from tests.conftest import DaemonProc, wait_for
from tests.editor_fixtures import (
    append_jsonl,
    continue_autocomplete,
    continue_edit,
    new_cid,
    tabby_choice,
    tabby_completion,
)

VERSION = "20260101-train-00001"
TRAINING = {
    "device": "cpu",
    "finetune_steps": 2,
    "finetune_batch_size": 2,
    "replay_fraction": 0.0,
    "gate_tolerance": 100.0,
}


def stored(d: DaemonProc) -> dict[str, dict[str, Any]]:
    with sqlite3.connect(d.data_dir / "state.db") as db:
        rows = db.execute("SELECT id, source, record FROM feedback").fetchall()
    return {r[0]: {**json.loads(r[2]), "_source": r[1]} for r in rows}


def by_source(d: DaemonProc) -> dict[str, int]:
    found: dict[str, int] = d.status()["feedback"]["by_source"]
    return found


def continue_id(event: dict[str, Any]) -> str:
    return str(uuid.uuid5(NAMESPACE, f"continue:autocomplete:{event['completionId']}"))


def tabby_id(cid: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"tabby:{cid}:0"))


def finetunes(d: DaemonProc) -> list[dict[str, Any]]:
    jobs: list[dict[str, Any]] = d.get("/v1/jobs", params={"limit": 100}).json()["jobs"]
    return [j for j in jobs if j["kind"] == "finetune"]


@pytest.fixture
def current_model(tmp_path: Path) -> Callable[[DaemonProc], str]:
    """A promoted model in the daemon's data_dir, as a pipeline ``train`` + ``eval`` leaves it."""
    from aicoderd.training import versions
    from tests.export.tiny import Shape, make_model

    def place(d: DaemonProc) -> str:
        models = d.data_dir / "models"
        metrics = {"kind": "pretrain", "corpus_snapshot": None, "steps": 8, "eval_loss": 5.0}
        versions.promote(models, make_model(models / VERSION, Shape(), metrics))
        return VERSION

    return place


def test_editor_logs_to_a_finetune_across_a_restart_and_a_rotation(
    make_daemon: Callable[..., DaemonProc], current_model: Callable[[DaemonProc], str]
) -> None:
    d = make_daemon(
        training=TRAINING,
        pipeline={"finetune_min_feedback": 9, "auto_export": False, "auto_deploy": False},
        feedback={
            "poll_interval_seconds": 0.2,
            "editors": {"tabby": {"model": "aicoder:latest", "view_window_seconds": 60}},
        },
    )
    version = current_model(d)
    env = {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2"}
    d.start(extra_env=env)
    dev_data = d.home / ".continue" / "dev_data" / "0.2.0"
    autocomplete, edits = dev_data / "autocomplete.jsonl", dev_data / "editOutcome.jsonl"
    events = d.home / ".tabby" / "events" / datetime.now(UTC).strftime("%Y-%m-%d.json")

    # Continue: two accepted, one rejected by our model; a rejection by another model and an
    # event logged without code are no records. One edit, corrected by the user.
    kept = [continue_autocomplete(), continue_autocomplete(accepted=False), continue_autocomplete()]
    append_jsonl(
        autocomplete,
        kept[0],
        continue_autocomplete(accepted=False, modelName="qwen2.5-coder:1.5b"),
        kept[1],
        {k: v for k, v in continue_autocomplete().items() if k not in ("prefix", "completion")},
        kept[2],
    )
    append_jsonl(edits, continue_edit(newCode="def add(a, b):\n    return b + a\n"))
    # Tabby: a selected and a dismissed completion; a third is viewed, decided after a restart.
    chosen, dismissed, waiting = new_cid(), new_cid(), new_cid()
    append_jsonl(
        events,
        tabby_completion(chosen),
        tabby_choice("view", chosen),
        tabby_completion(dismissed),
        tabby_choice("view", dismissed),
        tabby_choice("select", chosen),
        tabby_choice("dismiss", dismissed),
        tabby_completion(waiting),
        tabby_choice("view", waiting),
    )
    wait_for(lambda: by_source(d) == {"continue": 4, "tabby": 2}, timeout=30)
    records = stored(d)
    assert {continue_id(e) for e in kept} | {tabby_id(chosen), tabby_id(dismissed)} <= set(records)
    accepted = records[continue_id(kept[0])]
    assert accepted["source"] == accepted["_source"] == "continue"
    assert accepted["prefix"] == kept[0]["prefix"] and accepted["suffix"] == kept[0]["suffix"]
    assert records[tabby_id(dismissed)]["verdict"] == "rejected"
    assert [f for f in finetunes(d)] == []

    # Stopped: Continue logs two more, then its file is rotated and a new one begun; Tabby
    # logs the outcome of the completion viewed before the stop.
    d.stop()
    late = [continue_autocomplete(), continue_autocomplete(accepted=False)]
    append_jsonl(autocomplete, late[0])
    autocomplete.rename(autocomplete.with_name("autocomplete.jsonl.1"))
    append_jsonl(autocomplete, late[1])
    append_jsonl(events, tabby_choice("select", waiting))
    d.start(extra_env=env)

    wait_for(lambda: by_source(d) == {"continue": 6, "tabby": 3}, timeout=30)
    time.sleep(1.5)  # several polls: nothing is read twice
    assert by_source(d) == {"continue": 6, "tabby": 3}
    records = stored(d)
    assert len(records) == 9 and {continue_id(e) for e in late} | {tabby_id(waiting)} <= set(
        records
    )
    assert records[tabby_id(waiting)]["verdict"] == "accepted"
    shown = d.cli("status").stdout.splitlines()
    assert "feedback: 9 valid, 0 invalid" in shown and "  tabby: 3" in shown, shown
    rotated = [e for e in d.get("/v1/events").text.splitlines() if '"feedback.rotated"' in e]
    assert rotated and "autocomplete.jsonl.1" in json.loads(rotated[0])["detail"]

    # Nine records since the current model: the pipeline queues its finetune, which runs.
    job = wait_for(lambda: next(iter(finetunes(d)), None), timeout=30)
    assert job["params"]["base"] == version
    done = wait_for(
        lambda: (
            (j := d.get(f"/v1/jobs/{job['id']}").json())["state"]
            in ("succeeded", "failed", "skipped")
            and j
        ),
        timeout=300,
        interval=0.5,
    )
    assert done["state"] == "succeeded", (done, d.cli("jobs", "log", str(job["id"])).stdout[-3000:])
    d.stop()
