"""The ``model_evals`` table: one row per evaluation (a candidate, and the model it was gated
against)."""

from __future__ import annotations

import json
import time
from typing import Any

from aicoderd.store.database import Table


class Evaluations(Table):
    def record(
        self,
        result: dict[str, Any],
        against: dict[str, Any] | None = None,
        promoted: bool | None = None,
        tolerance: float | None = None,
        job_id: int | None = None,
    ) -> int:
        """``result`` and ``against`` are evaluation reports (``model``, ``corpus_snapshot``
        and the metrics); returns the row's id."""
        with self.writing() as db:
            cur = db.execute(
                "INSERT INTO model_evals (time, model, against, corpus_snapshot, metrics,"
                " against_metrics, tolerance, promoted, job_id) VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    time.time(),
                    result["model"],
                    against["model"] if against else None,
                    result.get("corpus_snapshot"),
                    json.dumps(result),
                    json.dumps(against) if against else None,
                    tolerance,
                    None if promoted is None else int(promoted),
                    job_id,
                ),
            )
            return int(cur.lastrowid or 0)

    def latest(self, model: str) -> dict[str, Any] | None:
        """The newest evaluation of ``model`` (a directory path, as recorded)."""
        with self.reading() as db:
            row = db.execute(
                "SELECT * FROM model_evals WHERE model=? ORDER BY id DESC LIMIT 1", (model,)
            ).fetchone()
        if row is None:
            return None
        out = dict(row)
        for key in ("metrics", "against_metrics"):
            out[key] = json.loads(out[key]) if out[key] else None
        return out
