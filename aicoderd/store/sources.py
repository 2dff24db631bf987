"""The ``source_state`` table (what a network source keeps between runs: ETags, the last
commit, seen entries) and the ``source_runs`` table (one row per run)."""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

from aicoderd.store.database import Table

RUN_COUNTS = ("added", "updated", "unchanged", "retired", "failed")


class Sources(Table):
    def state(self, name: str) -> dict[str, Any]:
        with self.reading() as db:
            row = db.execute("SELECT state FROM source_state WHERE name=?", (name,)).fetchone()
        return {} if row is None else dict(json.loads(row["state"]))

    def save_state(self, name: str, state: dict[str, Any]) -> None:
        with self.writing() as db:
            db.execute(
                "INSERT INTO source_state (name, state) VALUES (?, ?) ON CONFLICT(name)"
                " DO UPDATE SET state=excluded.state",
                (name, json.dumps(state)),
            )

    def record_run(
        self,
        name: str,
        job_id: int | None,
        started: float,
        outcome: str,
        counts: Counter[str],
        error: str | None,
    ) -> None:
        with self.writing() as db:
            db.execute(
                "INSERT INTO source_runs (name, job_id, started, finished, outcome, added,"
                " updated, unchanged, retired, failed, error) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    name,
                    job_id,
                    started,
                    time.time(),
                    outcome,
                    *(counts[k] for k in RUN_COUNTS),
                    error,
                ),
            )

    def last_runs(self) -> dict[str, dict[str, Any]]:
        """The newest run of every source that ever ran."""
        with self.reading() as db:
            rows = db.execute(
                "SELECT * FROM source_runs WHERE id IN"
                " (SELECT MAX(id) FROM source_runs GROUP BY name)"
            ).fetchall()
        return {r["name"]: dict(r) for r in rows}
