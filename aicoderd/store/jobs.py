"""The ``jobs`` table: durable job rows and their state machine
(``queued → running → succeeded | failed | cancelled | skipped``)."""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

from aicoderd import protocol
from aicoderd.errors import JobError, NotFound
from aicoderd.store.database import Table

_JSON_FIELDS = ("params", "progress", "result")
_ACTIVE = (protocol.QUEUED, protocol.RUNNING)
_FINAL = tuple(sorted(protocol.FINAL_STATES))


def _row(r: sqlite3.Row) -> dict[str, Any]:
    job = dict(r)
    for key in _JSON_FIELDS:
        job[key] = json.loads(job[key]) if job[key] else None
    return job


def _value(v: Any) -> Any:
    return json.dumps(v, allow_nan=False) if isinstance(v, dict) else v


def _marks(values: tuple[str, ...] | list[str]) -> str:
    return ",".join("?" * len(values))


class Jobs(Table):
    def insert(self, kind: str, params: dict[str, Any]) -> int:
        with self.writing() as db:
            cur = db.execute(
                "INSERT INTO jobs (kind, params, state, created) VALUES (?,?,?,?)",
                (kind, json.dumps(params, allow_nan=False), protocol.QUEUED, time.time()),
            )
            return int(cur.lastrowid or 0)

    def get(self, job_id: int) -> dict[str, Any]:
        with self.reading() as db:
            r = db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
        if r is None:
            raise NotFound(f"no job {job_id}")
        return _row(r)

    def find(self, state: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Jobs, newest first."""
        sql, args = "SELECT * FROM jobs", []
        if state:
            sql += " WHERE state=?"
            args.append(state)
        with self.reading() as db:
            rows = db.execute(sql + " ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
        return [_row(r) for r in rows]

    def counts(self) -> dict[str, int]:
        with self.reading() as db:
            rows = db.execute("SELECT state, COUNT(*) n FROM jobs GROUP BY state").fetchall()
        return {r["state"]: r["n"] for r in rows}

    def queued(self, limit: int = 50) -> list[dict[str, Any]]:
        """Queued jobs, oldest first."""
        with self.reading() as db:
            rows = db.execute(
                "SELECT * FROM jobs WHERE state=? ORDER BY id LIMIT ?", (protocol.QUEUED, limit)
            ).fetchall()
        return [_row(r) for r in rows]

    def active(self, kinds: tuple[str, ...]) -> list[dict[str, Any]]:
        """Queued or running jobs of ``kinds``, oldest first."""
        with self.reading() as db:
            rows = db.execute(
                f"SELECT * FROM jobs WHERE state IN (?,?) AND kind IN ({_marks(kinds)})"
                " ORDER BY id",
                (*_ACTIVE, *kinds),
            ).fetchall()
        return [_row(r) for r in rows]

    def newest(self, kinds: tuple[str, ...]) -> list[dict[str, Any]]:
        """For each of ``kinds``, its newest job."""
        with self.reading() as db:
            rows = db.execute(
                "SELECT * FROM jobs WHERE id IN (SELECT MAX(id) FROM jobs WHERE kind IN"
                f" ({_marks(kinds)}) GROUP BY kind)",
                kinds,
            ).fetchall()
        return [_row(r) for r in rows]

    def newest_marked(self, kinds: tuple[str, ...], key: str) -> list[dict[str, Any]]:
        """For each of ``kinds``, the newest job whose params hold ``key``."""
        with self.reading() as db:
            rows = db.execute(
                "SELECT * FROM jobs WHERE id IN (SELECT MAX(id) FROM jobs WHERE kind IN"
                f" ({_marks(kinds)}) AND json_extract(params, '$.' || ?) IS NOT NULL"
                " GROUP BY kind)",
                (*kinds, key),
            ).fetchall()
        return [_row(r) for r in rows]

    def finished(self, kind: str, limit: int = 200) -> list[dict[str, Any]]:
        """Jobs of ``kind`` in a final state, newest first."""
        with self.reading() as db:
            rows = db.execute(
                f"SELECT * FROM jobs WHERE kind=? AND state IN ({_marks(_FINAL)})"
                " ORDER BY id DESC LIMIT ?",
                (kind, *_FINAL, limit),
            ).fetchall()
        return [_row(r) for r in rows]

    def newest_result(self, kind: str, key: str, value: str) -> dict[str, Any] | None:
        """The result of the newest succeeded job of ``kind`` whose result has ``key`` =
        ``value`` (e.g. the corpus build that made a snapshot)."""
        with self.reading() as db:
            row = db.execute(
                "SELECT result FROM jobs WHERE kind=? AND state=? AND"
                " json_extract(result, '$.' || ?)=? ORDER BY id DESC LIMIT 1",
                (kind, protocol.SUCCEEDED, key, value),
            ).fetchone()
        if row is None or not row["result"]:
            return None
        result = json.loads(row["result"])
        return result if isinstance(result, dict) else None

    def move(self, job_id: int, new: str, **fields: Any) -> None:
        """Change state, refusing moves the state machine does not allow."""
        with self.writing() as db:
            r = db.execute("SELECT state FROM jobs WHERE id=?", (job_id,)).fetchone()
            if r is None:
                raise NotFound(f"no job {job_id}")
            if new not in protocol.JOB_TRANSITIONS[r["state"]]:
                raise JobError(f"job {job_id} is {r['state']}; it cannot become {new}")
            sets = ["state=?"] + [f"{k}=?" for k in fields]
            values = [new] + [_value(v) for v in fields.values()]
            db.execute(f"UPDATE jobs SET {', '.join(sets)} WHERE id=?", (*values, job_id))

    def update(self, job_id: int, **fields: Any) -> None:
        """Change fields other than the state."""
        sets = ", ".join(f"{k}=?" for k in fields)
        values = [_value(v) for v in fields.values()]
        with self.writing() as db:
            db.execute(f"UPDATE jobs SET {sets} WHERE id=?", (*values, job_id))
