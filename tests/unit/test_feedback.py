"""Feedback records and the JSONL tail, on real files."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from aicoderd.errors import FeedbackError
from aicoderd.sources.feedback_file import (
    FeedbackTail,
    TailLine,
    TailState,
    append_record,
    parse_line,
)

RECORD: dict[str, Any] = {
    "schema": 1,
    "id": "6F9619FF-8B86-4011-B42D-00C04FC964FF",
    "time": "2024-05-01T10:00:00.25+02:00",
    "model": "aicoder:latest",
    "file": "src/app.py",
    "language": "python",
    "prompt": "def add(a, b):",
    "suggestion": "    return a + b",
    "verdict": "accepted",
}


def line(**changes: Any) -> bytes:
    record = {**RECORD, **changes}
    return json.dumps({k: v for k, v in record.items() if v is not ...}).encode()


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as fh:
        fh.write(data)


def raws(lines: list[TailLine]) -> list[bytes]:
    return [item.raw for item in lines]


def at(state: TailState) -> tuple[int | None, int]:
    """Where a state stands, without its fingerprint."""
    return state.inode, state.offset


# -- records -------------------------------------------------------------------------------------


def test_valid_record_keeps_extra_keys() -> None:
    rec = parse_line(line(editor={"name": "vim"}, latency_ms=120))
    assert rec.id == "6f9619ff-8b86-4011-b42d-00c04fc964ff"
    assert rec.time.utcoffset() == timedelta(hours=2)
    assert rec.verdict == "accepted" and rec.correction is None
    assert rec.model_extra == {"editor": {"name": "vim"}, "latency_ms": 120}
    dumped = rec.model_dump(mode="json", by_alias=True)
    assert dumped["schema"] == 1 and dumped["editor"] == {"name": "vim"}
    assert dumped["time"] == "2024-05-01T10:00:00.250000+02:00"


def test_edited_record_and_optional_fields() -> None:
    rec = parse_line(line(verdict="edited", correction="return b + a", file=..., language=...))
    assert rec.correction == "return b + a"
    assert (rec.file, rec.language) == ("", "")
    assert parse_line(line(time="2024-05-01t08:00:00z")).time.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{oops", "not JSON: Expecting property name enclosed in double quotes at column 2"),
        (b"", "not JSON: Expecting value at column 1"),
        (b'{"a": NaN}', "not JSON: NaN is not valid JSON"),
        (b"[" * 100_000, "not JSON: nested too deeply"),
        (b"[1, 2]", "not a JSON object (got array)"),
        (b'"text"', "not a JSON object (got string)"),
        (b'{"prompt": "caf\xe9"}', "not UTF-8: invalid continuation byte at byte 15"),
        (line(schema=2), "schema: must be 1 (got 2)"),
        (line(schema="1"), 'schema: must be 1 (got "1")'),
        (line(schema=True), "schema: must be 1 (got true)"),
        (line(id="not-a-uuid"), 'id: must be a UUID (got "not-a-uuid")'),
        (line(id=7), "id: must be a string (got 7)"),
        (
            line(time="2024-05-01T10:00:00"),
            'time: must include a timezone offset (got "2024-05-01T10:00:00")',
        ),
        (line(time="yesterday"), 'time: must be an RFC 3339 timestamp (got "yesterday")'),
        (line(time=1714550400), "time: must be a string (got 1714550400)"),
        (
            line(time="2024-02-30T10:00:00Z"),
            "time: must be an RFC 3339 timestamp: day is out of range for month"
            ' (got "2024-02-30T10:00:00Z")',
        ),
        (line(verdict="meh"), 'verdict: must be one of accepted, rejected, edited (got "meh")'),
        (line(verdict="edited"), 'correction: required when verdict is "edited"'),
        (line(verdict="edited", correction=" "), 'correction: required when verdict is "edited"'),
        (line(prompt=...), "prompt: required"),
        (line(suggestion=""), 'suggestion: must not be empty (got "")'),
        (line(model=None), "model: must be a string (got null)"),
        (line(model=..., prompt=...), "model: required; prompt: required"),
    ],
)
def test_invalid_line_has_a_specific_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(FeedbackError) as info:
        parse_line(raw)
    assert str(info.value) == reason
    assert info.value.code == "feedback_invalid"


def test_long_bad_value_is_shortened_in_the_reason() -> None:
    with pytest.raises(FeedbackError) as info:
        parse_line(line(verdict="x" * 500))
    assert len(str(info.value)) < 120 and str(info.value).endswith("…)")


# -- tail ----------------------------------------------------------------------------------------


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "user_feedback.jsonl"


def test_appends_are_read_once(path: Path) -> None:
    path.write_bytes(b"a\nb\n")
    with FeedbackTail(path, TailState(None, 0)) as tail:
        lines, state = tail.poll()
        assert lines == [TailLine(b"a", str(path), 0), TailLine(b"b", str(path), 2)]
        assert at(state) == (path.stat().st_ino, 4)
        assert tail.poll() == ([], state)
        append(path, b"c\n")
        lines, state = tail.poll()
        assert lines == [TailLine(b"c", str(path), 4)] and state.offset == 6
        assert tail.poll()[0] == []


def test_partial_last_line_waits_for_its_newline(path: Path) -> None:
    path.write_bytes(b'a\n{"half')
    with FeedbackTail(path, TailState(None, 0)) as tail:
        lines, state = tail.poll()
        assert raws(lines) == [b"a"] and state.offset == 2
        assert tail.poll() == ([], state)
        append(path, b'": 1}\n')
        lines, state = tail.poll()
        assert lines == [TailLine(b'{"half": 1}', str(path), 2)]
        assert state.offset == path.stat().st_size


def test_crlf_and_blank_lines(path: Path) -> None:
    path.write_bytes(b"a\r\n\n  \t\r\n\r\nb\r\n")
    with FeedbackTail(path, TailState(None, 0)) as tail:
        lines, state = tail.poll()
    assert lines == [TailLine(b"a", str(path), 0), TailLine(b"b", str(path), 11)]
    assert state.offset == 14


def test_truncation_starts_again_at_zero(path: Path) -> None:
    path.write_bytes(b"first line\nsecond line\n")
    with FeedbackTail(path, TailState(None, 0)) as tail:
        _, state = tail.poll()
        inode = state.inode
        with open(path, "r+b") as fh:  # copy-truncate keeps the inode
            fh.truncate(0)
        append(path, b"new\n")
        lines, state = tail.poll()
        assert lines == [TailLine(b"new", str(path), 0)]
        assert at(state) == (inode, 4)


def test_truncation_seen_from_a_persisted_state(path: Path) -> None:
    path.write_bytes(b"x\n")
    state = TailState(path.stat().st_ino, 100)
    with FeedbackTail(path, state) as tail:
        lines, new = tail.poll()
        assert lines == [TailLine(b"x", str(path), 0)] and at(new) == (state.inode, 2)


def test_rotation_finishes_the_old_file_first(path: Path) -> None:
    path.write_bytes(b"old 1\n")
    with FeedbackTail(path, TailState(None, 0)) as tail:
        assert raws(tail.poll()[0]) == [b"old 1"]
        rotated = path.with_name(path.name + ".1")
        path.rename(rotated)
        append(rotated, b"old 2\n")  # the writer still has the old file open
        lines, state = tail.poll()  # no file at the path yet: keep reading the old one
        assert raws(lines) == [b"old 2"]
        append(rotated, b"old 3\nold partial")
        path.write_bytes(b"new 1\nnew 2\n")
        lines, state = tail.poll()
        assert raws(lines) == [b"old 3", b"old partial", b"new 1", b"new 2"]
        assert [item.offset for item in lines] == [12, 18, 0, 6]
        assert at(state) == (path.stat().st_ino, 12)
        append(rotated, b"too late\n")  # the old file is closed now
        append(path, b"new 3\n")
        assert raws(tail.poll()[0]) == [b"new 3"]


def test_rotation_drain_respects_max_bytes(path: Path) -> None:
    path.write_bytes(b"")
    with FeedbackTail(path, TailState(None, 0)) as tail:
        _, old = tail.poll()
        append(path, b"o1\no2\no3\n")
        path.rename(path.with_name("old"))
        path.write_bytes(b"n1\n")
        lines, state = tail.poll(max_bytes=6)
        assert raws(lines) == [b"o1", b"o2"] and at(state) == (old.inode, 6)
        lines, state = tail.poll(max_bytes=6)
        assert raws(lines) == [b"o3", b"n1"] and at(state) == (path.stat().st_ino, 3)


def test_rotation_seen_from_a_persisted_state_reads_the_old_tail_first(path: Path) -> None:
    path.write_bytes(b"seen\n")
    with FeedbackTail(path, TailState(None, 0)) as tail:
        _, persisted = tail.poll()
    append(path, b"unseen\npartial")  # then rotated while nobody followed it
    old = path.with_name(path.name + ".1")
    path.rename(old)
    path.write_bytes(b"fresh\n")
    with FeedbackTail(path, persisted) as tail:
        lines, state = tail.poll()
        notices = tail.take_notices()
    assert lines == [
        TailLine(b"unseen", str(path), 5),
        TailLine(b"partial", str(path), 12),
        TailLine(b"fresh", str(path), 0),
    ]
    assert at(state) == (path.stat().st_ino, 6)
    assert [(n.kind, n.offset) for n in notices] == [("rotated", 5)]
    assert old.name in notices[0].detail


def test_rotated_file_gone_is_a_notice(path: Path) -> None:
    path.write_bytes(b"seen\n")
    with FeedbackTail(path, TailState(None, 0)) as tail:
        _, persisted = tail.poll()
    (path.parent / "archive").mkdir()
    path.rename(path.parent / "archive" / path.name)  # out of the folder: not found again
    with FeedbackTail(path, persisted) as tail:
        assert tail.poll() == ([], persisted)  # no file yet: nothing to say
        assert tail.take_notices() == []
        path.write_bytes(b"fresh\n")
        lines, _ = tail.poll()
        notices = tail.take_notices()
    assert raws(lines) == [b"fresh"]
    assert [(n.kind, n.file, n.offset) for n in notices] == [("maybe_lost", str(path), 5)]


def test_a_reused_inode_with_other_content_is_not_the_rotated_file(path: Path) -> None:
    path.write_bytes(b"seen 1\n")
    with FeedbackTail(path, TailState(None, 0)) as tail:
        _, persisted = tail.poll()
    other = path.with_name("other")
    path.rename(other)
    other.write_bytes(b"different content\n")  # same inode, not the file that was read
    path.write_bytes(b"fresh\n")
    with FeedbackTail(path, persisted) as tail:
        lines, _ = tail.poll()
        notices = tail.take_notices()
    assert raws(lines) == [b"fresh"] and [n.kind for n in notices] == ["maybe_lost"]


@pytest.mark.parametrize("while_followed", [True, False])
def test_a_rewrite_longer_than_the_offset_is_read_again(path: Path, while_followed: bool) -> None:
    path.write_bytes(b"one\ntwo\n")
    tail = FeedbackTail(path, TailState(None, 0))
    _, state = tail.poll()
    if not while_followed:
        tail.close()
    inode = path.stat().st_ino
    with open(path, "r+b") as fh:  # the same inode, other bytes, longer than before
        fh.truncate(0)
        fh.write(b"uno\ndos\ntres\n")
    if not while_followed:
        tail = FeedbackTail(path, state)
    with tail:
        lines, state = tail.poll()
        notices = tail.take_notices()
        assert raws(lines) == [b"uno", b"dos", b"tres"] and at(state) == (inode, 13)
        assert [(n.kind, n.offset) for n in notices] == [("rewritten", 8)]
        append(path, b"cuatro\n")  # appends are not rewrites
        assert raws(tail.poll()[0]) == [b"cuatro"] and tail.take_notices() == []


def test_a_state_without_fingerprint_trusts_its_offset(path: Path) -> None:
    path.write_bytes(b"one\ntwo\n")
    legacy = TailState(path.stat().st_ino, 4)  # saved before fingerprints existed
    with FeedbackTail(path, legacy) as tail:
        lines, state = tail.poll()
    assert raws(lines) == [b"two"] and state.fingerprint is not None


def test_missing_file_then_created(path: Path) -> None:
    with FeedbackTail(path, TailState(None, 0)) as tail:
        assert tail.poll() == ([], TailState(None, 0))
        path.write_bytes(b"hello\n")
        lines, state = tail.poll()
        assert raws(lines) == [b"hello"] and at(state) == (path.stat().st_ino, 6)


def test_file_disappearing_then_reappearing(path: Path) -> None:
    path.write_bytes(b"one\n")
    with FeedbackTail(path, TailState(None, 0)) as tail:
        _, state = tail.poll()
        path.unlink()
        assert tail.poll() == ([], state)
        path.write_bytes(b"two\n")
        lines, new = tail.poll()
        assert raws(lines) == [b"two"] and at(new) == (path.stat().st_ino, 4)
        assert new.inode != state.inode


def test_max_bytes_limits_a_poll_but_a_long_line_still_progresses(path: Path) -> None:
    long = b"x" * 5000
    path.write_bytes(b"a\nb\n" + long + b"\nc\n")
    with FeedbackTail(path, TailState(None, 0)) as tail:
        assert raws(tail.poll(max_bytes=3)[0]) == [b"a"]
        assert raws(tail.poll(max_bytes=3)[0]) == [b"b"]
        lines, state = tail.poll(max_bytes=100)
    assert raws(lines) == [long, b"c"] and state.offset == path.stat().st_size


def test_new_tail_continues_from_a_returned_state(path: Path) -> None:
    path.write_bytes(b"a\nb\npart")
    first = FeedbackTail(path, TailState(None, 0))
    _, state = first.poll(max_bytes=2)
    first.close()
    assert first.poll() == ([], state)  # a closed tail reads nothing
    append(path, b"ial\nc\n")
    with FeedbackTail(path, state) as second:
        lines, state = second.poll(max_bytes=10)
    assert lines == [TailLine(b"b", str(path), 2), TailLine(b"partial", str(path), 4)]
    with FeedbackTail(path, state) as third:
        assert raws(third.poll()[0]) == [b"c"]


def test_close_releases_the_descriptor(path: Path) -> None:
    path.write_bytes(b"a\n")
    tail = FeedbackTail(path, TailState(None, 0))
    tail.poll()
    fds = len(os.listdir("/proc/self/fd"))
    tail.close()
    tail.close()
    assert len(os.listdir("/proc/self/fd")) == fds - 1


def test_append_record_writes_one_valid_line_after_a_partial_one(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "feedback.jsonl"
    target.parent.mkdir()
    target.write_bytes(b'{"half')  # another writer's partial line
    record = parse_line(line(extra_key=[1, 2]))
    append_record(target, record)
    append_record(target, parse_line(line(id="6f9619ff-8b86-4011-b42d-00c04fc964fe")))
    written = target.read_bytes().split(b"\n")
    assert written[0] == b'{"half' and written[-1] == b""
    assert parse_line(written[1]) == record
    assert json.loads(written[1])["schema"] == 1 and json.loads(written[1])["extra_key"] == [1, 2]
    assert parse_line(written[2]).id.endswith("fe")


def test_append_record_holds_a_lock_other_writers_wait_for(tmp_path: Path) -> None:
    import fcntl
    import threading

    target = tmp_path / "feedback.jsonl"
    target.write_bytes(b"")
    done = threading.Event()
    with open(target, "ab") as other:
        fcntl.flock(other, fcntl.LOCK_EX)
        writer = threading.Thread(
            target=lambda: (append_record(target, parse_line(line())), done.set())
        )
        writer.start()
        other.write(b'{"another": "writer"}\n')
        other.flush()
        assert not done.wait(0.3)  # blocked on the lock
        fcntl.flock(other, fcntl.LOCK_UN)
    writer.join(5)
    assert done.is_set()
    first, second = target.read_bytes().splitlines()
    assert first == b'{"another": "writer"}' and parse_line(second).verdict == "accepted"
