"""The model pipeline's policy: thresholds, one job per stage at a time, each continuation once,
and the same decisions from a fresh daemon (facts read from a real state.db and data_dir)."""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from aicoderd import protocol
from aicoderd.config import AdaptConfig, PipelineConfig, Settings
from aicoderd.daemon.job_kinds import REGISTRY
from aicoderd.daemon.pipeline import ModelPipeline
from aicoderd.daemon.policy import PIPELINE, Facts, Job, decide
from aicoderd.daemon.runner import JobQueue
from aicoderd.store import Store
from aicoderd.store.feedback import Batch
from aicoderd.training import versions

CFG = PipelineConfig(
    first_model_min_tokens=1000,
    retrain_min_new_tokens=1000,
    retrain_min_growth=0.25,
    finetune_min_feedback=3,
)


def job(
    id: int,
    kind: str,
    state: str = protocol.SUCCEEDED,
    result: dict[str, Any] | None = None,
    **mark: Any,
) -> Job:
    params: dict[str, Any] = {PIPELINE: mark} if mark else {}
    if kind in ("eval", "export") and "model" in mark:
        params["model"] = mark["model"]
    error, finished = mark.pop("error", None), mark.pop("finished", None)
    return Job(id, kind, state, params, REGISTRY[kind].parse(result), error, finished)


def kinds(facts: Facts, cfg: PipelineConfig = CFG) -> list[str]:
    return [s.kind for s in decide(facts, cfg).submit]


def test_first_model_waits_for_enough_tokens() -> None:
    plan = decide(Facts(snapshot="s1", tokens=600), CFG)
    assert plan.submit == []
    assert plan.stages["train"].waiting_for == "600 of 1,000 tokens for the first model"
    assert plan.stages["finetune"].waiting_for.startswith("a current model")
    plan = decide(Facts(snapshot="s1", tokens=1500), CFG)
    [train] = plan.submit
    assert train.kind == "train" and train.params[PIPELINE]["snapshot"] == "s1"
    assert plan.stages["train"].state == "queued"
    assert kinds(Facts(tokens=10**9)) == []  # no snapshot yet
    assert (
        kinds(Facts(snapshot="s1", tokens=1500), CFG.model_copy(update={"auto_train": False})) == []
    )


def test_retrain_needs_both_the_token_count_and_the_fraction() -> None:
    base = {"snapshot": "s3", "model": "v1", "model_snapshot": "s1", "model_tokens": 10_000}
    plan = decide(Facts(tokens=12_000, **base), CFG)  # +2,000; needs max(1,000, 2,500)
    assert plan.submit == []
    assert plan.stages["train"].waiting_for == ("2,000 of 2,500 new tokens since v1's corpus (s1)")
    assert kinds(Facts(tokens=12_500, **base)) == ["train"]
    # a model whose corpus is unknown counts as trained on nothing
    assert kinds(Facts(snapshot="s3", tokens=1200, model="v0")) == ["train"]


def test_one_job_per_stage_and_one_train_per_snapshot() -> None:
    facts = Facts(snapshot="s1", tokens=5000)
    busy = Facts(snapshot="s1", tokens=5000, active={"train": job(7, "train", "running")})
    assert kinds(busy) == []
    assert decide(busy, CFG).stages["train"].job_id == 7
    tried = job(7, "train", protocol.FAILED, snapshot="s1")
    plan = decide(Facts(snapshot="s1", tokens=5000, last={"train": tried}), CFG)
    assert plan.submit == []
    assert "newer than s1" in (plan.stages["train"].waiting_for or "")
    assert "failed" in (plan.stages["train"].waiting_for or "")
    assert kinds(Facts(snapshot="s2", tokens=5000, last={"train": tried})) == ["train"]
    # a corpus build in flight: train waits for its snapshot
    building = Facts(
        snapshot="s1", tokens=5000, active={"corpus.build": job(9, "corpus.build", "queued")}
    )
    assert kinds(building) == []
    assert kinds(facts) == ["train"]


def test_chain_continues_each_job_once() -> None:
    trained = job(3, "train", result={"version": "v1"}, snapshot="s1")
    facts = Facts(snapshot="s1", tokens=5000, last={"train": trained})
    plan = decide(facts, CFG)
    [ev] = plan.submit  # the gate first; train for s1 is done
    assert ev.kind == "eval" and ev.params["model"] == "v1" and ev.params[PIPELINE]["after"] == 3

    gate = job(4, "eval", result={"promoted": True}, after=3, model="v1")
    facts = Facts(snapshot="s1", tokens=5000, model="v1", model_snapshot="s1", model_tokens=5000,
                  last={"train": trained, "eval": gate})  # fmt: skip
    [ex] = decide(facts, CFG).submit
    assert (ex.kind, ex.params["model"], ex.params[PIPELINE]["after"]) == ("export", "v1", 4)

    export = job(5, "export", result={"gguf": "/x/v1-f16.gguf"}, after=4, model="v1")
    facts = replace(facts, last={"train": trained, "eval": gate, "export": export})
    [dep] = decide(facts, CFG).submit
    assert dep.kind == "deploy" and dep.params["gguf"] == "/x/v1-f16.gguf"
    off = decide(facts, CFG.model_copy(update={"auto_deploy": False}))
    assert off.submit == [] and off.stages["deploy"].state == "disabled"

    done = job(6, "deploy", after=5)
    facts = replace(facts, last={**facts.last, "deploy": done})
    assert kinds(facts) == []
    # a gate that refused the model: nothing to export
    refused = job(4, "eval", result={"promoted": False}, after=3, model="v1")
    assert kinds(replace(facts, last={"train": trained, "eval": refused})) == []
    # a promoted model that is no longer current is not exported
    stale = replace(facts, model="v2", last={"train": trained, "eval": gate})
    assert kinds(stale) == []


def test_finetune_on_new_feedback_when_the_model_lane_is_free() -> None:
    base = {"snapshot": "s1", "tokens": 5000, "model": "v1", "model_snapshot": "s1",
            "model_tokens": 5000}  # fmt: skip
    plan = decide(Facts(new_feedback=2, **base), CFG)
    assert plan.submit == []
    assert plan.stages["finetune"].waiting_for == "2 of 3 new feedback records for v1"
    [ft] = decide(Facts(new_feedback=3, **base), CFG).submit
    assert ft.kind == "finetune" and ft.params["base"] == "v1"
    evaluating = Facts(new_feedback=3, active={"eval": job(8, "eval", "running")}, **base)
    plan = decide(evaluating, CFG)
    assert plan.submit == [] and "eval job 8" in (plan.stages["finetune"].waiting_for or "")
    # a retrain due at the same time goes first; the finetune follows on the new model
    assert kinds(Facts(new_feedback=3, **{**base, "tokens": 9000})) == ["train"]


def test_the_first_model_is_a_starter_then_an_idle_machine_trains_the_target() -> None:
    [first] = decide(Facts(snapshot="s1", tokens=5000), CFG).submit
    assert (first.params["preset"], first.params["max_wall_seconds"]) == ("tiny", 300.0)
    assert first.params[PIPELINE]["preset"] == "tiny"
    plain = CFG.model_copy(update={"starter_preset": None})
    [full] = decide(Facts(snapshot="s1", tokens=5000), plain).submit
    assert "preset" not in full.params and full.params[PIPELINE]["preset"] == "small"

    starter = job(3, "train", result={"version": "v1"}, snapshot="s1", preset="tiny")
    gate = job(4, "eval", result={"promoted": True}, after=3, model="v2")  # v2: nothing to export
    base = {"snapshot": "s1", "tokens": 5000, "model": "v1", "model_snapshot": "s1",
            "model_tokens": 5000, "model_preset": "tiny", "upgrade": True,
            "last": {"train": starter, "eval": gate}}  # fmt: skip
    busy = decide(Facts(idle=False, **base), CFG)
    assert busy.submit == [] and "an idle machine" in (busy.stages["train"].waiting_for or "")
    [up] = decide(Facts(idle=True, **base), CFG).submit
    assert up.kind == "train" and "preset" not in up.params  # training.preset, no wall bound
    assert up.params[PIPELINE] | {"reason": ""} == {
        "snapshot": "s1", "tokens": 5000, "preset": "small", "reason": ""
    }  # fmt: skip
    upgraded = job(5, "train", protocol.FAILED, snapshot="s1", preset="small")
    again = Facts(idle=True, **{**base, "last": {"train": upgraded, "eval": gate}})
    assert kinds(again) == []  # once per snapshot and preset
    no_upgrade = CFG.model_copy(update={"upgrade_when_idle": False})
    assert kinds(Facts(idle=True, **base), no_upgrade) == []


def test_a_failed_export_is_retried_after_a_back_off_or_when_its_cause_is_gone() -> None:
    gate = job(4, "eval", result={"promoted": True}, after=3, model="v1")
    missing = "ExportError: llama-cpp-python is not installed, and the parity check ..."
    failed = job(5, "export", protocol.FAILED, after=4, model="v1", error=missing, finished=1000.0)
    base = {"snapshot": "s1", "tokens": 5000, "model": "v1", "model_snapshot": "s1",
            "model_tokens": 5000}  # fmt: skip
    facts = Facts(parity_checker=False, now=1200.0, last={"eval": gate, "export": failed}, **base)
    plan = decide(facts, CFG)
    assert plan.submit == []
    waiting = plan.stages["export"].waiting_for or ""
    assert "retry 1 of 5 in 400 s" in waiting and "llama-cpp-python" in waiting
    [now] = decide(replace(facts, parity_checker=True), CFG).submit  # installed since
    assert now.kind == "export" and now.params[PIPELINE]["retry"] == 1
    [later] = decide(replace(facts, now=1601.0), CFG).submit  # the back-off has passed
    assert later.params[PIPELINE] | {"reason": ""} == {"after": 4, "retry": 1, "reason": ""}
    twice = job(6, "export", protocol.FAILED, after=4, model="v1", retry=1, finished=2000.0)
    assert kinds(replace(facts, now=3000.0, last={"eval": gate, "export": twice})) == []
    assert kinds(replace(facts, now=3201.0, last={"eval": gate, "export": twice})) == ["export"]
    worn = job(7, "export", protocol.FAILED, after=4, model="v1", retry=5, finished=0.0)
    assert kinds(replace(facts, now=10**9, last={"eval": gate, "export": worn})) == []
    # an export run by hand that succeeded since: no retry, and the old failure is forgotten
    by_hand = job(8, "export", result={"gguf": "/x/v1.gguf"})
    done = replace(facts, parity_checker=True, newest={"export": by_hand})
    plan = decide(done, CFG)
    assert [s.kind for s in plan.submit] == []
    assert "failed" not in (plan.stages["export"].waiting_for or "")


# -- facts from a real state.db and data_dir, and a restart ------------------------------------


def publish_snapshot(data: Path, snap: str, tokens: int) -> None:
    d = data / "corpus" / "snapshots" / snap
    d.mkdir(parents=True)
    (d / "manifest.json").write_text(json.dumps({"snapshot": snap, "tokens_estimate": tokens}))
    link = data / "corpus" / "current"
    link.unlink(missing_ok=True)
    os.symlink(f"snapshots/{snap}", link)


def make_model(data: Path, version: str, metrics: dict[str, Any]) -> Path:
    d = data / "models" / version
    d.mkdir(parents=True)
    (d / "metrics.json").write_text(json.dumps(metrics))
    return d


def finish(
    store: Store, job_id: int, result: dict[str, Any], state: str = protocol.SUCCEEDED
) -> None:
    store.jobs.move(job_id, protocol.RUNNING, started=time.time())
    store.jobs.move(job_id, state, finished=time.time(), result=result)


def feedback(store: Store, n: int) -> None:
    recs = [{"id": str(uuid.uuid4()), "time": "2026-01-01T00:00:00Z", "model": "m",
             "verdict": "accepted"} for _ in range(n)]  # fmt: skip
    store.feedback.commit(Batch("file", recs, path="fb.jsonl"))


class Daemon:
    """The pipeline's share of a daemon: opened afresh to stand for a restart."""

    def __init__(self, settings: Settings) -> None:
        self.store = Store(settings.state_db)
        self.jobs = JobQueue(self.store)
        self.pipeline = ModelPipeline(self.store, self.jobs, lambda: settings, lambda: None)

    def look(self) -> list[str]:
        return [s.kind for s in self.pipeline.check().submit]

    def close(self) -> None:
        self.store.close()


def test_decisions_survive_a_restart_and_never_double_queue(tmp_path: Path) -> None:
    data = tmp_path / "data"
    settings = Settings(data_dir=data, folders=[], pipeline=CFG)
    d = Daemon(settings)
    assert d.look() == []
    assert (
        d.pipeline.view
        and d.pipeline.view.train.model_dump()["waiting_for"] == "the first corpus snapshot"
    )
    publish_snapshot(data, "s1", 4000)
    assert d.look() == ["train"]
    assert d.look() == []  # queued: not again
    d.close()
    d = Daemon(settings)  # restart
    assert d.look() == []
    [train] = d.jobs.find("queued")
    assert train["params"][PIPELINE]["snapshot"] == "s1"
    assert d.pipeline.view and d.pipeline.view.train.model_dump() == {
        "state": "queued",
        "waiting_for": None,
        "job_id": train["id"],
        "in_s": None,
    }

    make_model(data, "v1", {"kind": "pretrain", "corpus_snapshot": "s1"})
    finish(d.store, train["id"], {"version": "v1"})
    assert d.look() == ["eval"]
    d.close()
    d = Daemon(settings)
    assert d.look() == []
    [ev] = d.jobs.find("queued")
    versions.promote(data / "models", data / "models" / "v1")
    finish(d.store, ev["id"], {"promoted": True})
    assert d.look() == ["export"]
    [ex] = d.jobs.find("queued")
    finish(d.store, ex["id"], {"gguf": str(data / "exports" / "v1-f16.gguf")})
    assert d.look() == ["deploy"]
    [dep] = d.jobs.find("queued")
    finish(d.store, dep["id"], {"name": "aicoder:v1"})
    d.close()
    d = Daemon(settings)
    assert d.look() == []

    # feedback: the threshold counts records since the last finetune of the current model
    feedback(d.store, 2)
    assert d.look() == []
    assert d.pipeline.view and "2 of 3" in (d.pipeline.view.finetune.waiting_for or "")
    feedback(d.store, 1)
    assert d.look() == ["finetune"]
    [ft] = d.jobs.find("queued")
    assert ft["params"]["base"] == "v1"
    finish(d.store, ft["id"], {}, protocol.FAILED)  # a failed finetune is not retried at once
    d.close()
    d = Daemon(settings)
    assert d.look() == []
    feedback(d.store, 3)
    assert d.look() == ["finetune"]

    # the corpus grows: the retrain counts from the snapshot v1 was trained on, s1
    [ft2] = d.jobs.find("queued")
    finish(d.store, ft2["id"], {}, protocol.SKIPPED)
    publish_snapshot(data, "s2", 4800)
    assert d.look() == []
    assert (
        d.pipeline.view
        and "800 of 1,000 new tokens" in d.pipeline.view.train.model_dump()["waiting_for"]
    )
    publish_snapshot(data, "s3", 5200)
    assert d.look() == ["train"]
    d.close()


# --- adapt: LoRA on an Ollama model, beside the pipeline's own chain -------------------------

ADAPT_CFG = AdaptConfig.model_validate(
    {"from": "qwen2.5-coder:0.5b", "min_new_tokens": 1000, "min_feedback": 5}
)


NO_TRAIN = CFG.model_copy(update={"auto_train": False})  # the project's own models stay apart


def adapt_plan(facts: Facts, cfg: AdaptConfig = ADAPT_CFG) -> tuple[list[str], str | None]:
    plan = decide(facts, NO_TRAIN, cfg)
    return [s.kind for s in plan.submit if s.kind == "adapt"], plan.stages["adapt"].waiting_for


@pytest.mark.parametrize(
    ("facts", "queued", "waiting"),
    [
        # off until a model is named
        (Facts(snapshot="s1", tokens=10**6), False, "adapt.from is not set"),
        # first adapt: the corpus must hold min_new_tokens
        (Facts(), False, "the first corpus snapshot"),
        (Facts(snapshot="s1", tokens=999), False, "999 of 1,000 new tokens"),
        (Facts(snapshot="s1", tokens=1000), True, None),
        # ...or enough feedback, whatever the corpus
        (Facts(snapshot="s1", tokens=10, adapt_feedback=5), True, None),
        # growth since the last adapt's snapshot, in a new snapshot
        (
            Facts(snapshot="s2", tokens=1900, last={"adapt": job(4, "adapt", tokens=1000)}),
            False,
            "900 of 1,000 new tokens",
        ),
        (
            Facts(snapshot="s2", tokens=2000, last={"adapt": job(4, "adapt", tokens=1000)}),
            True,
            None,
        ),
        # one per snapshot (a failed one waits for the next snapshot or new feedback)
        (
            Facts(
                snapshot="s2",
                tokens=9000,
                last={"adapt": job(4, "adapt", protocol.FAILED, snapshot="s2", tokens=1000)},
            ),
            False,
            "(the last adapt job, 4, failed)",
        ),
        (
            Facts(
                snapshot="s2",
                tokens=9000,
                adapt_feedback=6,
                last={"adapt": job(4, "adapt", snapshot="s2", tokens=1000)},
            ),
            True,
            None,
        ),
        # the model lane and the corpus build come first; one adapt at a time
        (
            Facts(snapshot="s1", tokens=5000, active={"train": job(9, "train", "running")}),
            False,
            "train job 9 (running) to end",
        ),
        (
            Facts(snapshot="s1", tokens=5000, active={"corpus.build": job(9, "corpus.build")}),
            False,
            "corpus.build job 9",
        ),
        (
            Facts(snapshot="s1", tokens=5000, active={"adapt": job(9, "adapt", "running")}),
            False,
            None,
        ),
    ],
)
def test_adapt_step(facts: Facts, queued: bool, waiting: str | None) -> None:
    cfg = ADAPT_CFG if waiting != "adapt.from is not set" else AdaptConfig()
    kinds_, why = adapt_plan(facts, cfg)
    assert kinds_ == (["adapt"] if queued else [])
    if waiting is not None:
        assert why is not None and waiting in why
    if queued:
        [sub] = [s for s in decide(facts, NO_TRAIN, cfg).submit if s.kind == "adapt"]
        assert sub.params[PIPELINE]["snapshot"] == facts.snapshot
        assert sub.params[PIPELINE]["tokens"] == facts.tokens


def test_adapt_never_touches_the_chain_and_can_be_switched_off() -> None:
    facts = Facts(snapshot="s1", tokens=5000)
    assert kinds(facts) == ["train"]  # without adapt settings: the chain as before
    plan = decide(facts, CFG, ADAPT_CFG)  # with them, a train queued now goes first
    assert [s.kind for s in plan.submit] == ["train"]
    assert plan.stages["adapt"].waiting_for.startswith("the train job queued now to end")
    off = ADAPT_CFG.model_copy(update={"auto": False})
    assert adapt_plan(facts, off) == ([], "adapt.auto is false")
