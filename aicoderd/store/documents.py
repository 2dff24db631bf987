"""The ``documents`` and ``locations`` tables: one row per distinct content, one per place it
was seen (a file, an archive member, a URL, a path in a repository)."""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from aicoderd.store.database import Table

STORED, FAILED, RETIRED, CONTAINER = "stored", "failed", "retired", "container"


@dataclass(frozen=True)
class NewDocument:
    """What ingestion hands to the store for one document or one refusal."""

    source: str
    uri: str
    kind: str
    language: str | None
    size: int
    sha256: str | None
    status: str  # "stored" | "failed" | "container" (an archive's place, no document)
    failure_reason: str | None = None
    mtime_ns: int | None = None
    file_size: int | None = None
    container: str | None = None  # the archive's uri, for archive members
    # Mirror folders: the document previously at this uri is retired when it has no other place.
    retire_replaced: bool = False
    meta: dict[str, Any] | None = None  # provenance of this place (commit, licence, title…)


@dataclass(frozen=True)
class Placed:
    """What a place holds now, for a source deciding whether a fetch changed it."""

    present: bool
    document_id: int | None
    sha256: str | None


class Documents(Table):
    def location(self, source: str, uri: str) -> sqlite3.Row | None:
        with self.reading() as db:
            row: sqlite3.Row | None = db.execute(
                "SELECT * FROM locations WHERE source=? AND uri=?", (source, uri)
            ).fetchone()
            return row

    def placed(self, source: str, uri: str) -> Placed | None:
        with self.reading() as db:
            row = db.execute(
                "SELECT l.present, l.document_id, d.sha256 FROM locations l LEFT JOIN documents d"
                " ON d.id = l.document_id WHERE l.source=? AND l.uri=?",
                (source, uri),
            ).fetchone()
        if row is None:
            return None
        return Placed(bool(row["present"]), row["document_id"], row["sha256"])

    def record(self, docs: list[NewDocument]) -> list[tuple[int, bool]]:
        """Insert or touch documents; returns (id, created) per entry. The same content under
        another name adds a location, not a document."""
        now = time.time()
        with self.writing() as db:
            return [self._record_one(db, doc, now) for doc in docs]

    def _record_one(self, db: sqlite3.Connection, doc: NewDocument, now: float) -> tuple[int, bool]:
        if doc.status == CONTAINER:
            # An archive's own place: no document, only what an unchanged-check needs.
            db.execute(
                "INSERT INTO locations (source, uri, document_id, size, mtime_ns, present)"
                " VALUES (?,?,NULL,?,?,1) ON CONFLICT(source, uri) DO UPDATE SET"
                " document_id=NULL, size=excluded.size, mtime_ns=excluded.mtime_ns, present=1",
                (doc.source, doc.uri, doc.file_size, doc.mtime_ns),
            )
            return 0, False
        row = None
        if doc.sha256 is not None:
            row = db.execute(
                "SELECT id, status FROM documents WHERE sha256=?", (doc.sha256,)
            ).fetchone()
        created = row is None
        if row is None:
            cur = db.execute(
                "INSERT INTO documents (sha256, source, uri, kind, language, size, first_seen,"
                " last_seen, status, failure_reason) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    doc.sha256,
                    doc.source,
                    doc.uri,
                    doc.kind,
                    doc.language,
                    doc.size,
                    now,
                    now,
                    doc.status,
                    doc.failure_reason,
                ),
            )
            doc_id = int(cur.lastrowid or 0)
        else:
            doc_id = int(row["id"])
            # A retired document seen again comes back; a failure stays what it was.
            db.execute(
                "UPDATE documents SET last_seen=?, status=CASE WHEN status='retired' THEN ?"
                " ELSE status END WHERE id=?",
                (now, doc.status, doc_id),
            )
        previous = db.execute(
            "SELECT document_id FROM locations WHERE source=? AND uri=?", (doc.source, doc.uri)
        ).fetchone()
        db.execute(
            "INSERT INTO locations (source, uri, document_id, size, mtime_ns, present, container,"
            " meta) VALUES (?,?,?,?,?,1,?,?) ON CONFLICT(source, uri) DO UPDATE SET"
            " document_id=excluded.document_id, size=excluded.size,"
            " mtime_ns=excluded.mtime_ns, present=1, container=excluded.container,"
            " meta=excluded.meta",
            (
                doc.source,
                doc.uri,
                doc_id,
                doc.file_size,
                doc.mtime_ns,
                doc.container,
                None if doc.meta is None else json.dumps(doc.meta),
            ),
        )
        if (
            doc.retire_replaced
            and previous is not None
            and previous["document_id"] not in (None, doc_id)
        ):
            _retire_if_orphan(db, int(previous["document_id"]), now)
        return doc_id, created

    def retire_locations(self, source: str, uris: list[str]) -> int:
        """Mark places gone (a mirror file deleted, with its archive members, if any); retire
        documents left with no place. Returns how many places went away."""
        now = time.time()
        gone = 0
        with self.writing() as db:
            for uri in uris:
                rows = db.execute(
                    "SELECT uri, document_id FROM locations WHERE source=? AND present=1"
                    " AND (uri=? OR container=?)",
                    (source, uri, uri),
                ).fetchall()
                for row in rows:
                    db.execute(
                        "UPDATE locations SET present=0 WHERE source=? AND uri=?",
                        (source, row["uri"]),
                    )
                    if row["document_id"] is not None:
                        _retire_if_orphan(db, int(row["document_id"]), now)
                gone += 1 if rows else 0
        return gone

    def retire_members_except(self, source: str, container: str, keep: set[str]) -> None:
        """An archive changed: members no longer in it lose their place."""
        with self.reading() as db:
            rows = db.execute(
                "SELECT uri FROM locations WHERE source=? AND container=? AND present=1",
                (source, container),
            ).fetchall()
        stale = [r["uri"] for r in rows if r["uri"] not in keep]
        if stale:
            self.retire_locations(source, stale)

    def file_locations(self, source: str) -> dict[str, tuple[int | None, int | None]]:
        """Present file-level places (not archive members) with their (size, mtime_ns)."""
        with self.reading() as db:
            rows = db.execute(
                "SELECT uri, size, mtime_ns FROM locations WHERE source=? AND present=1"
                " AND container IS NULL",
                (source,),
            ).fetchall()
        return {r["uri"]: (r["size"], r["mtime_ns"]) for r in rows}

    def counts(self) -> dict[str, Any]:
        """Documents by status, and stored documents by source."""
        with self.reading() as db:
            rows = db.execute(
                "SELECT status, source, COUNT(*) AS n FROM documents GROUP BY status, source"
            ).fetchall()
        by_status: dict[str, int] = {}
        by_source: dict[str, int] = {}
        for r in rows:
            by_status[r["status"]] = by_status.get(r["status"], 0) + r["n"]
            if r["status"] == STORED:
                by_source[r["source"]] = by_source.get(r["source"], 0) + r["n"]
        return {"by_status": by_status, "by_source": by_source}

    def page(
        self, *, status: str | None, source: str | None, limit: int, after_id: int
    ) -> list[dict[str, Any]]:
        """Documents with ``id > after_id``, in id order."""
        sql = "SELECT * FROM documents WHERE id > ?"
        args: list[Any] = [after_id]
        if status:
            sql += " AND status=?"
            args.append(status)
        if source:
            sql += " AND source=?"
            args.append(source)
        sql += " ORDER BY id LIMIT ?"
        args.append(limit)
        with self.reading() as db:
            return [dict(r) for r in db.execute(sql, args).fetchall()]

    def stored_state(self) -> tuple[int, int]:
        """(stored documents, the newest stored id): a cheap summary that changes whenever
        documents arrive or leave."""
        with self.reading() as db:
            row = db.execute(
                "SELECT COUNT(*), COALESCE(MAX(id), 0) FROM documents WHERE status='stored'"
            ).fetchone()
        return int(row[0]), int(row[1])

    def stored(self) -> list[sqlite3.Row]:
        """Every stored document (id, sha256, source, uri, kind, language), in the order first
        stored."""
        with self.reading() as db:
            return list(
                db.execute(
                    "SELECT id, sha256, source, uri, kind, language FROM documents"
                    " WHERE status='stored' ORDER BY id"
                ).fetchall()
            )

    def failed(self) -> list[sqlite3.Row]:
        """Every refusal (source, uri, failure_reason), in order."""
        with self.reading() as db:
            return list(
                db.execute(
                    "SELECT source, uri, failure_reason FROM documents WHERE status='failed'"
                    " ORDER BY id"
                ).fetchall()
            )


def _retire_if_orphan(db: sqlite3.Connection, doc_id: int, now: float) -> None:
    alive = db.execute(
        "SELECT 1 FROM locations WHERE document_id=? AND present=1 LIMIT 1", (doc_id,)
    ).fetchone()
    if alive is None:
        db.execute(
            "UPDATE documents SET status='retired', last_seen=? WHERE id=? AND status='stored'",
            (now, doc_id),
        )
