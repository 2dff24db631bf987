"""The ``feedback`` table (validated records, the daemon's one truth about feedback), the
``tail_state`` table (how far each followed file has been read) and ``feedback_pending`` (editor
events still waiting for their outcome, so a restart loses no join)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from aicoderd.store.database import Table

INVALID_COUNTER = "feedback.invalid"
UNMAPPED_COUNTER = "feedback.unmapped"  # + ".<source>.<reason>"


@dataclass(frozen=True)
class Committed:
    added: int  # new records
    conflicts: list[dict[str, Any]]  # records whose id is stored with other content


@dataclass
class Batch:
    """What one poll of one source stores, in one transaction."""

    source: str  # "file" (a feedback file) or an editor: "continue", "tabby"
    records: list[dict[str, Any]]  # validated schema-1 records (JSON form)
    path: str | None = None  # the followed file whose tail state moves with them
    inode: int | None = None
    offset: int = 0
    fingerprint: str | None = None
    origin: str = ""  # the records' source_file when no followed file moves (an editor's folder)
    invalid: int = 0  # lines refused, counted in feedback.invalid
    unmapped: dict[str, int] = field(default_factory=dict)  # editor events not used, by reason
    pending: dict[str, str | None] = field(default_factory=dict)  # join state; None deletes


def _canonical(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, ensure_ascii=False)


class Feedback(Table):
    def commit(self, batch: Batch) -> Committed:
        """Store the records, count what was refused or unmapped, save the file's tail state and
        the join state, in one transaction. A record whose id is stored already is kept once; if
        its content differs it is a conflict, returned for the caller to set aside (and counted
        invalid)."""
        now = time.time()
        added, conflicts = 0, []
        with self.writing() as db:
            if batch.path is not None:
                db.execute(
                    "INSERT INTO tail_state (path, inode, offset, fingerprint) VALUES (?,?,?,?)"
                    " ON CONFLICT(path) DO UPDATE SET inode=excluded.inode,"
                    " offset=excluded.offset, fingerprint=excluded.fingerprint",
                    (batch.path, batch.inode, batch.offset, batch.fingerprint),
                )
            for rec in batch.records:
                if self._insert(db, rec, batch, now):
                    added += 1
                    continue
                stored = db.execute("SELECT record FROM feedback WHERE id=?", (rec["id"],))
                if _canonical(json.loads(stored.fetchone()["record"])) != _canonical(rec):
                    conflicts.append(rec)
            prefix = f"{UNMAPPED_COUNTER}.{batch.source}."
            counts = {prefix + reason: n for reason, n in batch.unmapped.items()}
            if batch.invalid or conflicts:  # a conflicting duplicate counts as an invalid line
                counts[INVALID_COUNTER] = batch.invalid + len(conflicts)
            db.executemany(
                "INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT(name)"
                " DO UPDATE SET value = value + excluded.value",
                [(name, n) for name, n in counts.items() if n],
            )
            for key, data in batch.pending.items():
                if data is None:
                    db.execute(
                        "DELETE FROM feedback_pending WHERE source=? AND key=?", (batch.source, key)
                    )
                else:
                    db.execute(
                        "INSERT INTO feedback_pending (source, key, data) VALUES (?,?,?)"
                        " ON CONFLICT(source, key) DO UPDATE SET data=excluded.data",
                        (batch.source, key, data),
                    )
        return Committed(added, conflicts)

    @staticmethod
    def _insert(db: Any, rec: dict[str, Any], batch: Batch, now: float) -> bool:
        cur = db.execute(
            "INSERT OR IGNORE INTO feedback (id, time, model, verdict, language, file, record,"
            " source_file, received, source) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (
                rec["id"],
                rec["time"],
                rec["model"],
                rec["verdict"],
                rec.get("language"),
                rec.get("file"),
                json.dumps(rec),
                batch.path or batch.origin,
                now,
                batch.source,
            ),
        )
        return bool(cur.rowcount)

    def count(self) -> int:
        with self.reading() as db:
            return int(db.execute("SELECT COUNT(*) FROM feedback").fetchone()[0])

    def count_by_source(self) -> dict[str, int]:
        """Stored records by where they came from (``file``, ``continue``, ``tabby``)."""
        with self.reading() as db:
            rows = db.execute("SELECT source, COUNT(*) AS n FROM feedback GROUP BY source")
            return {r["source"]: int(r["n"]) for r in rows}

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

    def tail_state(self, path: str) -> tuple[int | None, int, str | None]:
        """(inode, offset, fingerprint) of a followed file; (None, 0, None) for one never read."""
        with self.reading() as db:
            row = db.execute(
                "SELECT inode, offset, fingerprint FROM tail_state WHERE path=?", (path,)
            ).fetchone()
        if row is None:
            return None, 0, None
        return row["inode"], int(row["offset"]), row["fingerprint"]

    def pending(self, source: str) -> dict[str, str]:
        """The join state an editor source saved: key → JSON."""
        with self.reading() as db:
            rows = db.execute("SELECT key, data FROM feedback_pending WHERE source=?", (source,))
            return {r["key"]: r["data"] for r in rows}

    def unmapped(self) -> dict[str, dict[str, int]]:
        """Editor events not turned into records, by source and reason."""
        with self.reading() as db:
            rows = db.execute(
                "SELECT name, value FROM counters WHERE name LIKE ?", (UNMAPPED_COUNTER + ".%",)
            ).fetchall()
        out: dict[str, dict[str, int]] = {}
        for r in rows:
            source, reason = r["name"][len(UNMAPPED_COUNTER) + 1 :].split(".", 1)
            out.setdefault(source, {})[reason] = int(r["value"])
        return out
