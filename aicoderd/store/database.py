"""The SQLite connections of ``state.db`` and the base of the repositories.

One writer connection and one reader connection, each behind its own lock, so status queries
never wait for an ingest transaction (WAL lets readers run beside the writer). A repository
either opens its own transaction per call, or works inside one that the caller opened with
:meth:`aicoderd.store.Store.transaction` (several tables changed atomically).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from aicoderd.store.schema import migrate


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    # FULL: a commit survives power loss, which "a file leaves the inbox once stored" needs.
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


class Database:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._w = _connect(path)
        migrate(self._w)
        self._r = _connect(path)
        self._wlock = threading.Lock()
        self._rlock = threading.Lock()
        self._event_written = False
        self.on_event: Callable[[], None] | None = None  # after a commit that stored events

    def close(self) -> None:
        with self._wlock, self._rlock:
            self._r.close()
            self._w.close()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE … COMMIT)."""
        with self._wlock:
            self._event_written = False
            self._w.execute("BEGIN IMMEDIATE")
            try:
                yield self._w
            except BaseException:
                self._w.execute("ROLLBACK")
                raise
            self._w.execute("COMMIT")
            notify = self._event_written and self.on_event is not None
        if notify and self.on_event is not None:
            self.on_event()

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        with self._rlock:
            yield self._r

    def event_written(self) -> None:
        """Called inside a write transaction that stored an event: followers are told after
        the commit."""
        self._event_written = True


class Table:
    """Base of the repositories: each call reads or writes through the database, or through
    the transaction the repository was bound to."""

    def __init__(self, db: Database, tx: sqlite3.Connection | None = None) -> None:
        self.db = db
        self._tx = tx

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        if self._tx is not None:
            yield self._tx
        else:
            with self.db.read() as conn:
                yield conn

    @contextmanager
    def writing(self) -> Iterator[sqlite3.Connection]:
        if self._tx is not None:
            yield self._tx
        else:
            with self.db.write() as conn:
                yield conn
