"""The gate's rule with the infilling margin, and where its figures and verdict show: the
status (``pipeline.current_metrics``, ``pipeline.gate``) built from a real state.db and
data_dir, and the line ``aicoder models`` and ``aicoder status`` print."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aicoderd.config import Settings
from aicoderd.daemon import schemas
from aicoderd.ollama.versions import quality_line
from aicoderd.training import gate, versions
from tests.unit.test_pipeline_policy import CFG, Daemon, finish, make_model

CURRENT = {
    "eval_loss_per_byte": 0.90,
    "bits_per_byte": 1.30,
    "xz_bits_per_byte": 1.90,
    "zstd_bits_per_byte": 2.00,
    "infill_exact_match": 0.30,
    "next_line_exact_match": 0.20,
    "completion_cases": 200,
}


def test_infilling_that_drops_more_than_the_margin_is_refused() -> None:
    better_loss = CURRENT | {"eval_loss_per_byte": 0.80}
    assert gate.decide(better_loss | {"infill_exact_match": 0.29}, CURRENT, 0.01, 0.02).promoted
    assert gate.decide(better_loss | {"infill_exact_match": 0.28}, CURRENT, 0.01, 0.02).promoted
    dropped = gate.decide(better_loss | {"infill_exact_match": 0.27}, CURRENT, 0.01, 0.02)
    assert not dropped.promoted
    assert "infill exact match 0.270 < 0.280 (current 0.300)" in dropped.reason
    assert "eval loss/byte 0.8000 <= 0.9090" in dropped.reason  # both figures named
    # Worse loss alone still refuses; a margin of 0 admits an equal score.
    assert not gate.decide(CURRENT | {"eval_loss_per_byte": 0.95}, CURRENT, 0.01, 0.5).promoted
    assert gate.decide(CURRENT, CURRENT, 0.0, 0.0).promoted
    # A report from before the metric existed is gated on the loss alone.
    old = {"eval_loss_per_byte": 0.90}
    assert gate.decide(better_loss | {"infill_exact_match": 0.0}, old, 0.01, 0.02).promoted


def test_status_shows_the_current_figures_and_the_newest_verdict(tmp_path: Path) -> None:
    data = tmp_path / "data"
    d = Daemon(Settings(data_dir=data, folders=[], pipeline=CFG))
    try:
        v1 = make_model(data, "v1", {"kind": "pretrain", "corpus_snapshot": "s1"})
        versions.promote(data / "models", v1)
        d.look()
        assert d.pipeline.view and d.pipeline.view.current_metrics is None
        assert d.pipeline.view.gate is None
        # The eval job wrote v1's figures into its metrics.json: the next look shows them.
        (v1 / "metrics.json").write_text(
            '{"kind": "pretrain", "corpus_snapshot": "s1", '
            + ", ".join(f'"{k}": {v}' for k, v in CURRENT.items())
            + "}"
        )
        candidate = CURRENT | {"eval_loss_per_byte": 0.85, "infill_exact_match": 0.10}
        decision = gate.decide(candidate, CURRENT, 0.01, 0.02)
        job = d.jobs.submit("eval", {"model": "v2"})
        result: dict[str, Any] = {
            "model": str(data / "models" / "v2"),
            "passed": False,
            "promoted": False,
            "reason": decision.reason,
            "metrics": candidate | {"eval_loss": 2.0, "eval_seconds": 12.0},
            "against": CURRENT,
        }
        finish(d.store, int(job["id"]), result)
        d.look()
        view = d.pipeline.view
        assert view is not None and view.current_metrics is not None and view.gate is not None
        assert view.current_metrics == schemas.ModelFigures(**CURRENT)
        assert view.gate.model == "v2" and view.gate.job_id == job["id"]
        assert (view.gate.passed, view.gate.promoted) == (False, False)
        assert view.gate.candidate.infill_exact_match == 0.10
        assert view.gate.current is not None and view.gate.current.infill_exact_match == 0.30
        assert "infill exact match 0.100 < 0.280" in view.gate.reason
        # The same names as `aicoder --json eval` and metrics.json, in the status's JSON.
        dumped = view.model_dump(mode="json")
        assert set(CURRENT) <= set(dumped["current_metrics"])
        # A newer eval still running: the status keeps the last verdict.
        d.jobs.submit("eval", {"model": "v3"})
        d.look()
        assert d.pipeline.view and d.pipeline.view.gate and d.pipeline.view.gate.model == "v2"
    finally:
        d.close()


def test_models_and_status_print_both_figures_and_the_verdict() -> None:
    line = quality_line(CURRENT | {"gate": "refused", "gate_reason": "infill 0.1 < 0.28"})
    assert "infill 0.300" in line and "next line 0.200" in line
    assert "bits/byte 1.300 (xz 1.900)" in line and "gate refused: infill 0.1 < 0.28" in line
    assert quality_line({"eval_loss": 2.0}) == ""
