"""The SQLite state store and the content-addressed document files."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from aicoderd.errors import StoreError
from aicoderd.store import SCHEMA_VERSION, Batch, DocumentFiles, NewDocument, Store


def doc(
    uri: str, sha: str, *, source: str = "folder:/in", mirror: bool = False, status: str = "stored"
) -> NewDocument:
    return NewDocument(
        source=source,
        uri=uri,
        kind="code",
        language="python",
        size=3,
        sha256=sha,
        status=status,
        mtime_ns=1,
        file_size=3,
        retire_replaced=mirror,
    )


def test_schema_is_versioned_and_wal(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    with store.db.read() as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.close()
    Store(tmp_path / "state.db").close()  # migrating again is a no-op


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "state.db") as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="newer than this release"):
        Store(tmp_path / "state.db")


def test_same_content_two_names_is_one_document(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    (a, created_a), (b, created_b) = store.documents.record(
        [doc("/in/a", "s1"), doc("/in/b", "s1")]
    )
    assert a == b and created_a and not created_b
    assert store.documents.counts()["by_status"] == {"stored": 1}


def test_mirror_change_and_delete_retire(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    store.documents.record([doc("/m/a", "v1", mirror=True), doc("/m/b", "b1", mirror=True)])
    store.documents.record([doc("/m/a", "v2", mirror=True)])  # a changed
    assert store.documents.counts()["by_status"] == {"stored": 2, "retired": 1}
    assert store.documents.retire_locations("folder:/in", ["/m/b"]) == 1
    assert store.documents.counts()["by_status"] == {"stored": 1, "retired": 2}
    store.documents.record([doc("/m/c", "b1", mirror=True)])  # b's content is back elsewhere
    assert store.documents.counts()["by_status"] == {"stored": 2, "retired": 1}


def test_a_document_with_another_place_is_not_retired(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    store.documents.record([doc("/m/a", "same", mirror=True), doc("/m/b", "same", mirror=True)])
    store.documents.retire_locations("folder:/in", ["/m/a"])
    assert store.documents.counts()["by_status"] == {"stored": 1}


def test_feedback_ids_are_kept_once_with_the_offset(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    rec = {"id": "i1", "time": "t", "model": "m", "verdict": "accepted"}
    batch = Batch("file", [rec], "/f", 7, 100, "fp1", invalid=2)
    assert store.feedback.commit(batch).added == 1
    again = store.feedback.commit(Batch("file", [rec], "/f", 7, 150, "fp2"))
    assert again.added == 0 and again.conflicts == []
    assert store.feedback.count() == 1
    assert store.counters.get("feedback.invalid") == 2
    assert store.feedback.tail_state("/f") == (7, 150, "fp2")
    assert store.feedback.tail_state("/other") == (None, 0, None)
    assert store.feedback.records() == [rec]


def test_a_repeated_feedback_id_with_other_content_is_a_conflict(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    rec = {"id": "i1", "time": "t", "model": "m", "verdict": "accepted"}
    store.feedback.commit(Batch("file", [rec], "/f", 7, 100))
    other = {**rec, "verdict": "rejected"}
    assert store.feedback.commit(Batch("file", [other], "/f", 7, 200)).conflicts == [other]
    assert store.feedback.records() == [rec]  # the first stays the truth
    assert store.counters.get("feedback.invalid") == 1


def test_feedback_by_source_unmapped_and_pending_join_state(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    rec = {"id": "i1", "time": "t", "model": "m", "verdict": "accepted"}
    store.feedback.commit(Batch("file", [rec], "/f", 7, 100))
    tabby = Batch(
        "tabby",
        [{**rec, "id": "i2"}, {**rec, "id": "i3"}],
        unmapped={"never shown": 2, "not JSON": 1},
        pending={"cmpl-1": '{"a": 1}', "cmpl-2": '{"b": 2}'},
        origin="/tabby/events",
    )
    store.feedback.commit(tabby)
    assert store.feedback.count_by_source() == {"file": 1, "tabby": 2}
    assert store.feedback.pending("tabby") == {"cmpl-1": '{"a": 1}', "cmpl-2": '{"b": 2}'}
    assert store.feedback.pending("continue") == {}
    store.feedback.commit(
        Batch("tabby", [], unmapped={"never shown": 1}, pending={"cmpl-1": None, "cmpl-2": "{}"})
    )
    assert store.feedback.pending("tabby") == {"cmpl-2": "{}"}
    assert store.feedback.unmapped() == {"tabby": {"never shown": 3, "not JSON": 1}}
    assert store.feedback.tail_state("/tabby/events") == (None, 0, None)  # no file moved


def test_a_transaction_commits_several_tables_or_none(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    with store.transaction() as tx:
        tx.documents.record([doc("/in/a", "s1")])
        tx.events.add("ingest.batch", {"stored": 1})
    with pytest.raises(RuntimeError), store.transaction() as tx:
        tx.documents.record([doc("/in/b", "s2")])
        tx.events.add("ingest.batch", {"stored": 1})
        raise RuntimeError("crash between the two")
    assert store.documents.counts()["by_status"] == {"stored": 1}
    assert [e["type"] for e in store.events.since(0)] == ["ingest.batch"]


def test_events_are_sequenced_and_pruned(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    seqs = [store.events.add("e", {"n": i}) for i in range(10)]
    assert seqs == sorted(seqs)
    assert [e["n"] for e in store.events.since(seqs[6])] == [7, 8, 9]
    store.events.prune(keep=3)
    assert [e["n"] for e in store.events.since(0)] == [7, 8, 9]


def test_document_files_are_content_addressed_utf8(tmp_path: Path) -> None:
    files = DocumentFiles(tmp_path / "documents")
    sha, data = files.digest("héllo\n")
    assert files.put(sha, data) is True
    assert files.put(sha, data) is False
    assert files.path_for(sha).read_bytes() == "héllo\n".encode()
    assert files.path_for(sha).parent.name == sha[:2]
    assert not list(files.path_for(sha).parent.glob(".*.tmp"))
