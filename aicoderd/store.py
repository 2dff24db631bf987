"""The state store: SQLite in WAL mode (documents, locations, feedback, jobs, events, tail
offsets), plus the content-addressed document files under ``data_dir/documents/``.

One writer connection and one reader connection, each behind its own lock, so status queries
never wait for an ingest transaction (WAL lets readers run beside the writer).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aicoderd.errors import StoreError
from aicoderd.fsutil import fsync_dir

# Each entry moves the schema one version up; never edit a released entry, append a new one.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE documents (
        id INTEGER PRIMARY KEY,
        sha256 TEXT UNIQUE,
        source TEXT NOT NULL,
        uri TEXT NOT NULL,
        kind TEXT NOT NULL,
        language TEXT,
        size INTEGER NOT NULL,
        first_seen REAL NOT NULL,
        last_seen REAL NOT NULL,
        status TEXT NOT NULL,
        failure_reason TEXT
    );
    CREATE INDEX documents_status ON documents(status, source);
    CREATE TABLE locations (
        source TEXT NOT NULL,
        uri TEXT NOT NULL,
        document_id INTEGER REFERENCES documents(id),
        size INTEGER,
        mtime_ns INTEGER,
        present INTEGER NOT NULL DEFAULT 1,
        container TEXT,
        PRIMARY KEY (source, uri)
    );
    CREATE INDEX locations_container ON locations(source, container);
    CREATE INDEX locations_document ON locations(document_id);
    CREATE TABLE feedback (
        id TEXT PRIMARY KEY,
        time TEXT NOT NULL,
        model TEXT NOT NULL,
        verdict TEXT NOT NULL,
        language TEXT,
        file TEXT,
        record TEXT NOT NULL,
        source_file TEXT NOT NULL,
        received REAL NOT NULL
    );
    CREATE TABLE tail_state (
        path TEXT PRIMARY KEY,
        inode INTEGER,
        offset INTEGER NOT NULL
    );
    CREATE TABLE counters (
        name TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    );
    CREATE TABLE jobs (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        params TEXT NOT NULL,
        state TEXT NOT NULL,
        created REAL NOT NULL,
        started REAL,
        finished REAL,
        attempts INTEGER NOT NULL DEFAULT 0,
        progress TEXT,
        result TEXT,
        error TEXT,
        pid INTEGER
    );
    CREATE INDEX jobs_state ON jobs(state, id);
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        time REAL NOT NULL,
        type TEXT NOT NULL,
        job_id INTEGER,
        data TEXT NOT NULL
    );
    """,
    # 2: network sources — provenance per place, per-source state and run history.
    """
    ALTER TABLE locations ADD COLUMN meta TEXT;
    CREATE TABLE source_state (
        name TEXT PRIMARY KEY,
        state TEXT NOT NULL
    );
    CREATE TABLE source_runs (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        job_id INTEGER,
        started REAL NOT NULL,
        finished REAL,
        outcome TEXT NOT NULL,
        added INTEGER NOT NULL DEFAULT 0,
        updated INTEGER NOT NULL DEFAULT 0,
        unchanged INTEGER NOT NULL DEFAULT 0,
        retired INTEGER NOT NULL DEFAULT 0,
        failed INTEGER NOT NULL DEFAULT 0,
        error TEXT
    );
    CREATE INDEX source_runs_name ON source_runs(name, id);
    """,
    # 3: training — evaluation-gate results, one row per evaluation (candidate vs current).
    """
    CREATE TABLE model_evals (
        id INTEGER PRIMARY KEY,
        time REAL NOT NULL,
        model TEXT NOT NULL,
        against TEXT,
        corpus_snapshot TEXT,
        metrics TEXT NOT NULL,
        against_metrics TEXT,
        tolerance REAL,
        promoted INTEGER,
        job_id INTEGER
    );
    CREATE INDEX model_evals_model ON model_evals(model, id);
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)


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


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    # FULL: a commit survives power loss, which "a file leaves the inbox once stored" needs.
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema to :data:`SCHEMA_VERSION`; refuse a database from a newer release."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"state.db has schema {version}, newer than this release's {SCHEMA_VERSION}"
        )
    for target in range(version + 1, SCHEMA_VERSION + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in MIGRATIONS[target - 1].split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {target}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return SCHEMA_VERSION


class Store:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._w = _connect(path)
        migrate(self._w)
        self._r = _connect(path)
        self._wlock = threading.Lock()
        self._rlock = threading.Lock()
        self.on_event: Callable[[], None] | None = None  # called after an event is stored

    def close(self) -> None:
        with self._wlock, self._rlock:
            self._r.close()
            self._w.close()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE … COMMIT)."""
        with self._wlock:
            self._w.execute("BEGIN IMMEDIATE")
            try:
                yield self._w
            except BaseException:
                self._w.execute("ROLLBACK")
                raise
            self._w.execute("COMMIT")

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        with self._rlock:
            yield self._r

    # -- documents ---------------------------------------------------------------------------

    def location(self, source: str, uri: str) -> sqlite3.Row | None:
        with self.read() as db:
            row: sqlite3.Row | None = db.execute(
                "SELECT * FROM locations WHERE source=? AND uri=?", (source, uri)
            ).fetchone()
            return row

    def record_documents(
        self,
        docs: list[NewDocument],
        then: Callable[[sqlite3.Connection], None] | None = None,
    ) -> list[tuple[int, bool]]:
        """Insert or touch documents in one transaction; returns (id, created) per entry.
        The same content under another name adds a location, not a document. ``then`` runs
        in the same transaction after them (a source saves its state with its documents)."""
        now = time.time()
        out = []
        with self.write() as db:
            for doc in docs:
                out.append(self._record_one(db, doc, now))
            if then is not None:
                then(db)
        return out

    def _record_one(self, db: sqlite3.Connection, doc: NewDocument, now: float) -> tuple[int, bool]:
        if doc.status == "container":
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
            self._retire_if_orphan(db, int(previous["document_id"]), now)
        return doc_id, created

    def _retire_if_orphan(self, db: sqlite3.Connection, doc_id: int, now: float) -> None:
        alive = db.execute(
            "SELECT 1 FROM locations WHERE document_id=? AND present=1 LIMIT 1", (doc_id,)
        ).fetchone()
        if alive is None:
            db.execute(
                "UPDATE documents SET status='retired', last_seen=? WHERE id=? AND status='stored'",
                (now, doc_id),
            )

    def retire_locations(self, source: str, uris: list[str]) -> int:
        """Mark locations gone (a mirror file deleted, with its archive members, if any);
        retire documents left with no place. Returns how many locations went away."""
        now = time.time()
        gone = 0
        with self.write() as db:
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
                        self._retire_if_orphan(db, int(row["document_id"]), now)
                gone += 1 if rows else 0
        return gone

    def retire_members_except(self, source: str, container: str, keep: set[str]) -> None:
        """An archive changed: members no longer in it lose their place."""
        with self.read() as db:
            rows = db.execute(
                "SELECT uri FROM locations WHERE source=? AND container=? AND present=1",
                (source, container),
            ).fetchall()
        stale = [r["uri"] for r in rows if r["uri"] not in keep]
        if stale:
            self.retire_locations(source, stale)

    def file_locations(self, source: str) -> dict[str, tuple[int | None, int | None]]:
        """Present file-level locations (not archive members) with their (size, mtime_ns)."""
        with self.read() as db:
            rows = db.execute(
                "SELECT uri, size, mtime_ns FROM locations WHERE source=? AND present=1"
                " AND container IS NULL",
                (source,),
            ).fetchall()
        return {r["uri"]: (r["size"], r["mtime_ns"]) for r in rows}

    def document_counts(self) -> dict[str, Any]:
        with self.read() as db:
            rows = db.execute(
                "SELECT status, source, COUNT(*) AS n FROM documents GROUP BY status, source"
            ).fetchall()
        by_status: dict[str, int] = {}
        by_source: dict[str, int] = {}
        for r in rows:
            by_status[r["status"]] = by_status.get(r["status"], 0) + r["n"]
            if r["status"] == "stored":
                by_source[r["source"]] = by_source.get(r["source"], 0) + r["n"]
        return {"by_status": by_status, "by_source": by_source}

    def list_documents(
        self, *, status: str | None, source: str | None, limit: int, after_id: int
    ) -> list[dict[str, Any]]:
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
        with self.read() as db:
            return [dict(r) for r in db.execute(sql, args).fetchall()]

    # -- feedback ----------------------------------------------------------------------------

    def commit_feedback(
        self,
        records: list[dict[str, Any]],
        source_file: str,
        invalid: int,
        inode: int | None,
        offset: int,
    ) -> int:
        """Store validated records (an id seen before is kept once), count invalid lines and
        save the file's tail offset, in one transaction. Returns the new rows."""
        now = time.time()
        added = 0
        with self.write() as db:
            if invalid:
                self.bump(db, "feedback.invalid", invalid)
            self.save_tail_state(db, source_file, inode, offset)
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
                added += cur.rowcount
        return added

    def feedback_count(self) -> int:
        with self.read() as db:
            return int(db.execute("SELECT COUNT(*) FROM feedback").fetchone()[0])

    def tail_state(self, path: str) -> tuple[int | None, int]:
        with self.read() as db:
            row = db.execute(
                "SELECT inode, offset FROM tail_state WHERE path=?", (path,)
            ).fetchone()
        return (None, 0) if row is None else (row["inode"], int(row["offset"]))

    def save_tail_state(
        self, db: sqlite3.Connection, path: str, inode: int | None, offset: int
    ) -> None:
        db.execute(
            "INSERT INTO tail_state (path, inode, offset) VALUES (?,?,?) ON CONFLICT(path)"
            " DO UPDATE SET inode=excluded.inode, offset=excluded.offset",
            (path, inode, offset),
        )

    # -- counters ----------------------------------------------------------------------------

    @staticmethod
    def bump(db: sqlite3.Connection, name: str, by: int = 1) -> None:
        db.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT(name)"
            " DO UPDATE SET value = value + excluded.value",
            (name, by),
        )

    def counter(self, name: str) -> int:
        with self.read() as db:
            row = db.execute("SELECT value FROM counters WHERE name=?", (name,)).fetchone()
        return 0 if row is None else int(row["value"])

    # -- events ------------------------------------------------------------------------------

    def add_event(self, type_: str, data: dict[str, Any], job_id: int | None = None) -> int:
        with self.write() as db:
            cur = db.execute(
                "INSERT INTO events (time, type, job_id, data) VALUES (?,?,?,?)",
                (time.time(), type_, job_id, json.dumps(data)),
            )
            seq = int(cur.lastrowid or 0)
        if self.on_event is not None:
            self.on_event()
        return seq

    def events_since(self, seq: int, limit: int = 1000) -> list[dict[str, Any]]:
        with self.read() as db:
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

    def last_event_seq(self) -> int:
        with self.read() as db:
            return int(db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0])

    def prune_events(self, keep: int) -> int:
        with self.write() as db:
            cur = db.execute(
                "DELETE FROM events WHERE seq <= (SELECT MAX(seq) FROM events) - ?", (keep,)
            )
            return cur.rowcount


class DocumentFiles:
    """Content-addressed UTF-8 text files: ``documents/<sha[:2]>/<sha>.txt``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def digest(text: str) -> tuple[str, bytes]:
        data = text.encode("utf-8")
        return hashlib.sha256(data).hexdigest(), data

    def path_for(self, sha256: str) -> Path:
        return self.root / sha256[:2] / f"{sha256}.txt"

    def put(self, sha256: str, data: bytes, *, sync_dir: bool = True) -> bool:
        """Write the content durably unless it is already there; True if written. With
        ``sync_dir=False`` the caller fsyncs the shard folder (once for a whole batch)."""
        target = self.path_for(sha256)
        if target.exists():
            return False
        target.parent.mkdir(exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
        if sync_dir:
            fsync_dir(target.parent)
        return True

    def read(self, sha256: str) -> str:
        return self.path_for(sha256).read_text(encoding="utf-8")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
