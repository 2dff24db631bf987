"""The ``feedback`` table (validated records, the daemon's one truth about feedback) and the
``tail_state`` table (how far each followed file has been read)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from aicoderd.store.database import Table

INVALID_COUNTER = "feedback.invalid"


@dataclass(frozen=True)
class Committed:
    added: int  # new records
    conflicts: list[dict[str, Any]]  # records whose id is stored with other content


def _canonical(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, ensure_ascii=False)


class Feedback(Table):
    def commit(
        self,
        records: list[dict[str, Any]],
        source_file: str,
        invalid: int,
        inode: int | None,
        offset: int,
    ) -> Committed:
        """Store validated records, count invalid lines and save the file's tail offset, in
        one transaction. A record whose id is stored already is kept once; if its content
        differs it is a conflict, returned for the caller to set aside (and counted invalid)."""
        now = time.time()
        added, conflicts = 0, []
        with self.writing() as db:
            db.execute(
                "INSERT INTO tail_state (path, inode, offset) VALUES (?,?,?) ON CONFLICT(path)"
                " DO UPDATE SET inode=excluded.inode, offset=excluded.offset",
                (source_file, inode, offset),
            )
            for rec in records:
                cur = db.execute(
                    "INSERT OR IGNORE INTO feedback (id, time, model, verdict, language, file,"
                    " record, source_file, received) VALUES (?,?,?,?,?,?,?,?,?)",
                    (
                        rec["id"],
                        rec["time"],
                        rec["model"],
                        rec["verdict"],
                        rec.get("language"),
                        rec.get("file"),
                        json.dumps(rec),
                        source_file,
                        now,
                    ),
                )
                if cur.rowcount:
                    added += 1
                    continue
                stored = db.execute("SELECT record FROM feedback WHERE id=?", (rec["id"],))
                if _canonical(json.loads(stored.fetchone()["record"])) != _canonical(rec):
                    conflicts.append(rec)
            if invalid or conflicts:  # a conflicting duplicate counts as an invalid line
                db.execute(
                    "INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT(name)"
                    " DO UPDATE SET value = value + excluded.value",
                    (INVALID_COUNTER, invalid + len(conflicts)),
                )
        return Committed(added, conflicts)

    def count(self) -> int:
        with self.reading() as db:
            return int(db.execute("SELECT COUNT(*) FROM feedback").fetchone()[0])

    def count_since(self, received: float) -> int:
        """Records that arrived after ``received`` (Unix time)."""
        with self.reading() as db:
            row = db.execute("SELECT COUNT(*) FROM feedback WHERE received > ?", (received,))
            return int(row.fetchone()[0])

    def records(self) -> list[dict[str, Any]]:
        """Every stored record, in the order they arrived."""
        with self.reading() as db:
            rows = db.execute("SELECT record FROM feedback ORDER BY received, rowid").fetchall()
        return [json.loads(r["record"]) for r in rows]

    def tail_state(self, path: str) -> tuple[int | None, int]:
        """(inode, offset) of a followed file; (None, 0) for one never read."""
        with self.reading() as db:
            row = db.execute(
                "SELECT inode, offset FROM tail_state WHERE path=?", (path,)
            ).fetchone()
        return (None, 0) if row is None else (row["inode"], int(row["offset"]))
