"""The state store: ``state.db`` (SQLite, WAL) with one repository per table, and the
content-addressed document files under ``data_dir/documents/``.

Code asks the repository that owns a table (``store.jobs.get(7)``,
``store.documents.record(...)``); no SQL lives outside this package. Several tables change
atomically inside :meth:`Store.transaction`. The corpus stage's own decision ledger (a separate
SQLite file) is :mod:`aicoderd.store.ledger`, imported by the corpus stage only.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from aicoderd.store.database import Database
from aicoderd.store.documents import Documents, NewDocument, Placed
from aicoderd.store.evals import Evaluations
from aicoderd.store.events import Counters, Events
from aicoderd.store.feedback import Batch, Committed, Feedback
from aicoderd.store.files import DocumentFiles
from aicoderd.store.jobs import Jobs
from aicoderd.store.schema import SCHEMA_VERSION
from aicoderd.store.sources import Sources

__all__ = [
    "SCHEMA_VERSION",
    "Batch",
    "Committed",
    "DocumentFiles",
    "NewDocument",
    "Placed",
    "Store",
    "Tables",
]


class Tables:
    """The repositories, each bound to the database (one transaction per call) or to one
    open transaction."""

    def __init__(self, db: Database, tx: sqlite3.Connection | None = None) -> None:
        self.documents = Documents(db, tx)
        self.jobs = Jobs(db, tx)
        self.events = Events(db, tx)
        self.counters = Counters(db, tx)
        self.feedback = Feedback(db, tx)
        self.sources = Sources(db, tx)
        self.evals = Evaluations(db, tx)


class Store(Tables):
    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = Database(path)
        super().__init__(self.db)

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[Tables]:
        """The repositories inside one write transaction: all their changes commit together
        (or none, when the block raises)."""
        with self.db.write() as tx:
            yield Tables(self.db, tx)

    @property
    def on_event(self) -> Callable[[], None] | None:
        return self.db.on_event

    @on_event.setter
    def on_event(self, callback: Callable[[], None] | None) -> None:
        """Called (possibly from a worker thread) after a commit that stored events."""
        self.db.on_event = callback
