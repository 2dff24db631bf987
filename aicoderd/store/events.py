"""The ``events`` table (what happened, for ``aicoder events``) and the ``counters`` table."""

from __future__ import annotations

import json
import time
from typing import Any

from aicoderd.store.database import Table


class Events(Table):
    def add(self, type_: str, data: dict[str, Any], job_id: int | None = None) -> int:
        with self.writing() as db:
            cur = db.execute(
                "INSERT INTO events (time, type, job_id, data) VALUES (?,?,?,?)",
                (time.time(), type_, job_id, json.dumps(data)),
            )
            self.db.event_written()
            return int(cur.lastrowid or 0)

    def since(self, seq: int, limit: int = 1000) -> list[dict[str, Any]]:
        with self.reading() as db:
            rows = db.execute(
                "SELECT * FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit)
            ).fetchall()
        return [
            {
                "seq": r["seq"],
                "time": r["time"],
                "type": r["type"],
                "job_id": r["job_id"],
                **json.loads(r["data"]),
            }
            for r in rows
        ]

    def prune(self, keep: int) -> int:
        """Delete all but the newest ``keep`` events."""
        with self.writing() as db:
            cur = db.execute(
                "DELETE FROM events WHERE seq <= (SELECT MAX(seq) FROM events) - ?", (keep,)
            )
            return cur.rowcount


class Counters(Table):
    def bump(self, name: str, by: int = 1) -> None:
        with self.writing() as db:
            db.execute(
                "INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT(name)"
                " DO UPDATE SET value = value + excluded.value",
                (name, by),
            )

    def get(self, name: str) -> int:
        with self.reading() as db:
            row = db.execute("SELECT value FROM counters WHERE name=?", (name,)).fetchone()
        return 0 if row is None else int(row["value"])
