"""The corpus ledger: what every build decided about every document, in its own SQLite file.

One row per present document (kept or removed, with the reason, the dedup fingerprint and the
order), plus the config fingerprint and the committed snapshot. A build changes it inside one
transaction that commits only once the new snapshot is complete on disk, so the ledger always
describes the current snapshot: a crash rolls it back together with the half-written snapshot.
The standalone command keeps it in ``DIR/state/``, the daemon in ``data_dir/corpus/state/``.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS docs (
    doc_id TEXT PRIMARY KEY,
    ord INTEGER NOT NULL UNIQUE,
    source TEXT NOT NULL,
    uri TEXT NOT NULL,
    kind TEXT NOT NULL,
    language TEXT,
    status TEXT NOT NULL,
    reason TEXT,
    detail TEXT,
    dup_of TEXT,
    split TEXT,
    bytes INTEGER,
    redactions TEXT,
    exact INTEGER,
    sig BLOB
);
CREATE INDEX IF NOT EXISTS docs_dup_of ON docs(dup_of) WHERE dup_of IS NOT NULL;
"""

KEPT = "kept"
REMOVED = "removed"


class LedgerRow(NamedTuple):
    """One document's decision, as the corpus stage records it."""

    doc_id: str
    order: int
    source: str
    uri: str
    kind: str
    language: str | None
    status: str  # KEPT | REMOVED
    reason: str | None
    detail: str | None
    dup_of: str | None
    split: str | None
    size: int | None  # bytes; None: a replayed document (no text), which keeps what was found
    redactions: str | None  # JSON {kind: count}
    exact: int | None
    sig: bytes | None  # the MinHash signature, little-endian uint32


@dataclass(frozen=True)
class Known:
    order: int
    kept: bool
    deduped: bool  # removed as a duplicate: its decision depends on earlier documents


class Ledger:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        self.db.close()

    def begin(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self.db.execute("COMMIT")

    def rollback(self) -> None:
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")

    # -- meta --------------------------------------------------------------------------------

    def meta(self, key: str, default: str | None = None) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return default if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET"
            " value=excluded.value",
            (key, value),
        )

    def reset(self) -> None:
        """Forget every decision (the next build is a full one)."""
        self.db.execute("DELETE FROM docs")

    # -- documents ---------------------------------------------------------------------------

    def known(self) -> dict[str, Known]:
        rows = self.db.execute("SELECT doc_id, ord, status, reason FROM docs")
        return {r[0]: Known(r[1], r[2] == KEPT, (r[3] or "").startswith("dedup.")) for r in rows}

    def max_order(self) -> int:
        return int(self.db.execute("SELECT COALESCE(MAX(ord), -1) FROM docs").fetchone()[0])

    def kept_orders(self) -> list[tuple[int, str]]:
        """(order, doc_id) of the kept documents: the rows of the current snapshot, in order."""
        rows = self.db.execute("SELECT ord, doc_id FROM docs WHERE status=? ORDER BY ord", (KEPT,))
        return [(int(o), str(d)) for o, d in rows]

    def dependents_of(self, doc_ids: set[str]) -> list[tuple[int, str]]:
        """(order, doc_id) of the documents removed as duplicates of any of ``doc_ids``."""
        out = []
        for chunk in _chunks(sorted(doc_ids), 500):
            marks = ",".join("?" * len(chunk))
            out += self.db.execute(
                f"SELECT ord, doc_id FROM docs WHERE dup_of IN ({marks})", chunk
            ).fetchall()
        return [(int(o), str(d)) for o, d in out]

    def delete(self, doc_ids: set[str]) -> None:
        for chunk in _chunks(sorted(doc_ids), 500):
            self.db.execute(
                f"DELETE FROM docs WHERE doc_id IN ({','.join('?' * len(chunk))})", chunk
            )

    def record(self, rows: list[LedgerRow]) -> None:
        """Store each document's decision (and fingerprint, if it reached dedup)."""
        self.db.executemany(
            "INSERT INTO docs (doc_id, ord, source, uri, kind, language, status, reason, detail,"
            " dup_of, split, bytes, redactions, exact, sig) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
            " ON CONFLICT(doc_id) DO UPDATE SET status=excluded.status, reason=excluded.reason,"
            " detail=excluded.detail, dup_of=excluded.dup_of, split=excluded.split,"
            # a replayed document (no text: bytes NULL) keeps what its processing found
            " bytes=COALESCE(excluded.bytes, bytes), redactions=CASE WHEN excluded.bytes IS NULL"
            " THEN redactions ELSE excluded.redactions END,"
            " exact=COALESCE(excluded.exact, exact), sig=COALESCE(excluded.sig, sig)",
            rows,
        )

    def fingerprint(self, order: int) -> tuple[str, bytes | None]:
        """(doc_id, signature blob) of the document at ``order``."""
        row = self.db.execute("SELECT doc_id, sig FROM docs WHERE ord=?", (order,)).fetchone()
        if row is None:
            raise KeyError(order)
        return str(row[0]), row[1]

    def kept_fingerprints(
        self, before: int | None, chunk: int = 4096
    ) -> Iterator[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], list[bytes | None]]]:
        """Chunks of (orders, exact keys, signature blobs) of kept documents below ``before``."""
        sql = "SELECT ord, exact, sig FROM docs WHERE status=?"
        args: list[object] = [KEPT]
        if before is not None:
            sql += " AND ord < ?"
            args.append(before)
        cur = self.db.execute(sql + " ORDER BY ord", args)
        while rows := cur.fetchmany(chunk):
            yield (
                np.array([r[0] for r in rows], dtype=np.int64),
                np.array([r[1] for r in rows], dtype=np.int64),
                [r[2] for r in rows],
            )

    def stored_fingerprint(self, doc_id: str) -> tuple[int | None, bytes | None]:
        """(exact key, signature blob) recorded for ``doc_id``."""
        row = self.db.execute("SELECT exact, sig FROM docs WHERE doc_id=?", (doc_id,)).fetchone()
        return (None, None) if row is None else (row[0], row[1])

    # -- what a manifest reports -------------------------------------------------------------

    def totals(self) -> dict[str, dict[str, int]]:
        """Kept documents and bytes per split."""
        rows = self.db.execute(
            "SELECT split, COUNT(*), COALESCE(SUM(bytes), 0) FROM docs WHERE status=?"
            " GROUP BY split",
            (KEPT,),
        )
        return {str(s): {"documents": int(n), "bytes": int(b)} for s, n, b in rows}

    def removed_counts(self) -> Counter[str]:
        rows = self.db.execute(
            "SELECT reason, COUNT(*) FROM docs WHERE status=? GROUP BY reason", (REMOVED,)
        )
        return Counter({str(r): int(n) for r, n in rows})

    def redaction_counts(self) -> Counter[str]:
        total: Counter[str] = Counter()
        rows = self.db.execute(
            "SELECT redactions FROM docs WHERE status=? AND redactions IS NOT NULL", (KEPT,)
        )
        for (found,) in rows:
            total.update(json.loads(found))
        return total

    def removed(self) -> Iterator[dict[str, object]]:
        cur = self.db.execute(
            "SELECT doc_id, source, uri, kind, reason, detail, dup_of FROM docs WHERE status=?"
            " ORDER BY ord",
            (REMOVED,),
        )
        keys = ("doc_id", "source", "uri", "kind", "reason", "detail", "dup_of")
        for row in cur:
            yield dict(zip(keys, row, strict=True))


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
