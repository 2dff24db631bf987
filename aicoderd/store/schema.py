"""The schema of ``state.db``: each entry of :data:`MIGRATIONS` moves it one version up. Never
edit a released entry; append a new one."""

from __future__ import annotations

import sqlite3

from aicoderd.errors import StoreError

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
    # 4: job kinds by kind (the pipeline asks for the newest of a kind), feedback by arrival.
    """
    CREATE INDEX jobs_kind ON jobs(kind, id);
    CREATE INDEX feedback_received ON feedback(received);
    """,
    # 5: feedback from editors' logs — each record's source, the join state of editor events
    # still waiting for their outcome, and a fingerprint of what a followed file held before
    # its offset (a file rewritten in place is read again).
    """
    ALTER TABLE feedback ADD COLUMN source TEXT NOT NULL DEFAULT 'file';
    ALTER TABLE tail_state ADD COLUMN fingerprint TEXT;
    CREATE TABLE feedback_pending (
        source TEXT NOT NULL,
        key TEXT NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (source, key)
    );
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)


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
