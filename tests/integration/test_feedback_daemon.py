"""Feedback files followed by the real daemon: valid and invalid lines, a partial last line,
truncation, rotation, and a restart that neither loses nor repeats a record."""

from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

from tests.conftest import DaemonProc, wait_for


def record(**over: Any) -> dict[str, Any]:
    rec = {
        "schema": 1,
        "id": str(uuid.uuid4()),
        "time": "2026-11-24T10:00:00Z",
        "model": "aicoder:latest",
        "file": "src/app.py",
        "language": "python",
        "prompt": "def add(a, b):",
        "suggestion": "    return a + b",
        "verdict": "accepted",
    }
    rec.update(over)
    return rec


def append(path: Path, *lines: str | dict[str, Any], newline: bool = True) -> None:
    with open(path, "a") as fh:
        for i, line in enumerate(lines):
            text = line if isinstance(line, str) else json.dumps(line)
            last = i == len(lines) - 1
            fh.write(text + ("\n" if newline or not last else ""))


def counts(d: DaemonProc) -> tuple[int, int]:
    fb = d.status()["feedback"]
    return fb["valid"], fb["invalid"]


def stored_ids(d: DaemonProc) -> list[str]:
    with sqlite3.connect(d.data_dir / "state.db") as db:
        return [r[0] for r in db.execute("SELECT id FROM feedback ORDER BY rowid")]


def test_valid_invalid_partial_truncation_rotation(daemon: DaemonProc) -> None:
    path = daemon.data_dir / "feedback" / "user_feedback.jsonl"
    good = [record(), record(verdict="edited", correction="    return b + a", extra_key=7)]
    append(path, good[0], "not json at all", record(verdict="meh"), good[1])
    wait_for(lambda: counts(daemon) == (2, 2))
    rejected = [
        json.loads(x)
        for x in (daemon.data_dir / "feedback" / "rejected.jsonl").read_text().splitlines()
    ]
    assert rejected[0]["line"] == "not json at all"
    assert rejected[0]["reason"].startswith("not JSON")
    assert "verdict" in rejected[1]["reason"] and rejected[1]["offset"] > 0
    with sqlite3.connect(daemon.data_dir / "state.db") as db:
        kept = json.loads(
            db.execute("SELECT record FROM feedback WHERE id=?", (good[1]["id"],)).fetchone()[0]
        )
    assert kept["extra_key"] == 7 and kept["schema"] == 1

    # A partial last line waits for its newline.
    partial = record()
    text = json.dumps(partial)
    append(path, text[:20], newline=False)
    time.sleep(1.0)  # five polls
    assert counts(daemon) == (2, 2)
    append(path, text[20:])
    wait_for(lambda: counts(daemon) == (3, 2))

    # Truncation: the file starts again from its first byte.
    with open(path, "w") as fh:
        fh.write(json.dumps(record()) + "\n")
    wait_for(lambda: counts(daemon) == (4, 2))

    # Rotation: the old file moves away, a new one takes its name.
    os.rename(path, path.with_suffix(".jsonl.1"))
    append(path, record(), record(verdict="rejected"))
    wait_for(lambda: counts(daemon) == (6, 2))
    assert len(set(stored_ids(daemon))) == 6


def test_restart_reads_each_line_once(make_daemon) -> None:
    d = make_daemon().start()
    path = d.data_dir / "feedback" / "user_feedback.jsonl"
    append(path, *[record() for _ in range(5)])
    wait_for(lambda: counts(d) == (5, 0))
    d.stop()
    append(path, *[record() for _ in range(3)])
    d.start()
    wait_for(lambda: counts(d) == (8, 0))
    d.kill9()
    d.start()
    append(path, record())
    wait_for(lambda: counts(d) == (9, 0))
    assert len(stored_ids(d)) == 9


def test_several_configured_files(make_daemon, tmp_path: Path) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    d = make_daemon(feedback={"files": [str(a), str(b)], "poll_interval_seconds": 0.2}).start()
    append(a, record())
    append(b, record(), "{}")
    wait_for(lambda: counts(d) == (2, 1))


def events(d: DaemonProc, kind: str) -> list[dict[str, Any]]:
    found = d.get("/v1/events", params={"since": 0}).text.splitlines()
    return [e for e in map(json.loads, found) if e["type"] == kind]


def rewrite(path: Path, *records: dict[str, Any]) -> None:
    """Truncate in place (the inode stays) and write new content in one write()."""
    with open(path, "r+") as fh:
        fh.truncate(0)
        fh.write("".join(json.dumps(r) + "\n" for r in records))


def test_rewrite_longer_than_the_offset_is_read_from_the_start(daemon: DaemonProc) -> None:
    path = daemon.data_dir / "feedback" / "user_feedback.jsonl"
    first = [record(), record()]
    append(path, *first)
    wait_for(lambda: counts(daemon) == (2, 0))
    inode = path.stat().st_ino
    # A rewrite between two polls: a record already stored, then new ones, past the old end.
    rewrite(path, first[0], record(prompt="x" * 400), record(), record())
    assert path.stat().st_ino == inode
    wait_for(lambda: counts(daemon) == (5, 0))
    assert len(set(stored_ids(daemon))) == 5


def test_rewrite_while_stopped_is_read_from_the_start(make_daemon) -> None:
    d = make_daemon().start()
    path = d.data_dir / "feedback" / "user_feedback.jsonl"
    append(path, record(), record())
    wait_for(lambda: counts(d) == (2, 0))
    d.stop()
    rewrite(path, *[record(prompt="y" * 300) for _ in range(3)])
    d.start()
    wait_for(lambda: counts(d) == (5, 0))
    assert events(d, "feedback.rewritten")[0]["file"] == str(path)


def test_rotation_while_stopped_reads_the_rotated_tail_first(make_daemon) -> None:
    d = make_daemon().start()
    path = d.data_dir / "feedback" / "user_feedback.jsonl"
    append(path, record(), record())
    wait_for(lambda: counts(d) == (2, 0))
    d.stop()
    append(path, record(), record(verdict="rejected"))  # written before the rotation
    os.rename(path, path.with_name("user_feedback.jsonl.1"))
    append(path, record(), record())
    d.start()
    wait_for(lambda: counts(d) == (6, 0))
    time.sleep(1.0)  # five polls: nothing read twice
    assert counts(d) == (6, 0) and len(stored_ids(d)) == 6


def test_rotated_file_gone_while_stopped_says_records_may_be_lost(make_daemon) -> None:
    d = make_daemon().start()
    path = d.data_dir / "feedback" / "user_feedback.jsonl"
    append(path, record())
    wait_for(lambda: counts(d) == (1, 0))
    d.stop()
    (path.parent / "archive").mkdir()
    os.rename(path, path.parent / "archive" / path.name)  # rotated out of the folder
    append(path, record())
    d.start()
    wait_for(lambda: counts(d) == (2, 0))
    lost = wait_for(lambda: events(d, "feedback.maybe_lost"))
    assert lost[0]["file"] == str(path) and lost[0]["offset"] > 0
    assert any(e.get("event") == "feedback.maybe_lost" for e in d.log_events())
