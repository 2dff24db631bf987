"""Code-review feedback: the schema-1 record, appending one to a feedback file, and a tail that
follows one JSONL file.

The tail works like Fluent Bit's: the caller persists ``(inode, offset, fingerprint)`` after it
has stored the lines a poll returned, so a crash re-reads lines rather than losing them. It keeps
the file it follows open, so lines written to a rotated-away file are still read before the
switch. The fingerprint (a hash of the bytes before the offset) tells a file rewritten in place
from one that grew, and a rotated file found again at start from a reused inode number.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import stat
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from aicoderd.errors import FeedbackError, SourceError
from aicoderd.fsutil import write_all

SCHEMA_VERSION = 1
VERDICTS = ("accepted", "rejected", "edited")
_JSON_TYPES: dict[type, str] = {
    list: "array",
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    type(None): "null",
}
_SHOWN_CHARS = 40  # how much of a bad value a reason quotes
_CHUNK = 2**20  # bytes per read() while filling a poll
_PRINT_BYTES = 4096  # the fingerprint hashes this much at the start and before the offset
# The offset is optional here only so that a naive time gets its own reason. RFC 3339 allows
# 't', 'z' and a space for 'T'.
_RFC3339 = re.compile(
    r"\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(?:\.\d+)?(?P<tz>[Zz]|[+-]\d\d:\d\d)?", re.ASCII
)


# -- the record ----------------------------------------------------------------------------------


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 1] + "…"


def _bad(message: str, value: Any) -> PydanticCustomError:
    # The value goes through the context: the template would otherwise expand braces in it.
    return PydanticCustomError("feedback", message + " (got {got})", {"got": _show(value)})


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise _bad("must be a string", value)
    return value


def _text(value: Any) -> str:
    text = _string(value)
    if not text.strip():
        raise _bad("must not be empty", value)
    return text


def _optional_string(value: Any) -> str | None:
    return None if value is None else _string(value)


def _schema(value: Any) -> int:
    if type(value) is not int or value != SCHEMA_VERSION:  # not True, 1.0 or "1"
        raise _bad(f"must be {SCHEMA_VERSION}", value)
    return value


def _uuid(value: Any) -> str:
    text = _string(value)
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise _bad("must be a UUID", value) from None


def _timestamp(value: Any) -> datetime:
    text = _string(value)
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise _bad("must be an RFC 3339 timestamp", value)
    if match["tz"] is None:
        raise _bad("must include a timezone offset", value)
    try:
        return datetime.fromisoformat(text.upper())
    except ValueError as exc:  # month 13, February 30, ...
        raise _bad(f"must be an RFC 3339 timestamp: {exc}", value) from None


def _verdict(value: Any) -> str:
    if not isinstance(value, str) or value not in VERDICTS:
        raise _bad(f"must be one of {', '.join(VERDICTS)}", value)
    return value


class FeedbackRecord(BaseModel):
    """One schema-1 feedback line; unknown keys are kept in ``model_extra``."""

    model_config = ConfigDict(extra="allow")

    # `schema` would shadow BaseModel.schema(); dump with by_alias=True to get the JSON key back.
    schema_: Annotated[int, BeforeValidator(_schema)] = Field(alias="schema")
    id: Annotated[str, BeforeValidator(_uuid)]  # canonical lowercase form
    time: Annotated[datetime, BeforeValidator(_timestamp)]  # always timezone-aware
    model: Annotated[str, BeforeValidator(_text)]
    file: Annotated[str, BeforeValidator(_string)] = ""
    language: Annotated[str, BeforeValidator(_string)] = ""
    prompt: Annotated[str, BeforeValidator(_text)]
    suggestion: Annotated[str, BeforeValidator(_text)]
    verdict: Annotated[Literal["accepted", "rejected", "edited"], BeforeValidator(_verdict)]
    correction: Annotated[str | None, BeforeValidator(_optional_string)] = None

    @model_validator(mode="after")
    def _edited_needs_correction(self) -> FeedbackRecord:
        if self.verdict == "edited" and not (self.correction and self.correction.strip()):
            raise PydanticCustomError("feedback", 'correction: required when verdict is "edited"')
        return self


def _reason(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False):
        msg = "required" if err["type"] == "missing" else err["msg"]
        field = ".".join(str(part) for part in err["loc"])
        parts.append(f"{field}: {msg}" if field else msg)
    return "; ".join(parts)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_line(line: bytes) -> FeedbackRecord:
    """Validate one JSONL line; FeedbackError carries a one-line reason."""
    try:
        text = line.decode("utf-8-sig")  # a BOM is what some editors put first
    except UnicodeDecodeError as exc:
        raise FeedbackError(f"not UTF-8: {exc.reason} at byte {exc.start}") from None
    try:
        # NaN and Infinity would be kept in extra keys and stored as invalid JSON.
        data = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise FeedbackError(f"not JSON: {exc.msg} at column {exc.colno}") from None
    except ValueError as exc:
        raise FeedbackError(f"not JSON: {exc}") from None
    except RecursionError:  # "[[[[..." must not stall the tail on a line it can never store
        raise FeedbackError("not JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise FeedbackError(f"not a JSON object (got {_JSON_TYPES[type(data)]})")
    return validate(data)


def validate(data: dict[str, Any]) -> FeedbackRecord:
    """A schema-1 record from a JSON object; FeedbackError carries a one-line reason."""
    try:
        return FeedbackRecord.model_validate(data)
    except ValidationError as exc:
        raise FeedbackError(_reason(exc)) from None


def as_json(record: FeedbackRecord) -> dict[str, Any]:
    """The record as stored and written: JSON types, the ``schema`` key, extra keys kept."""
    return record.model_dump(mode="json", by_alias=True)


def append_record(path: Path, record: FeedbackRecord) -> None:
    """Append one record as one line, under an exclusive ``flock`` so it never interleaves with
    another writer that locks too, and after a newline when a writer left a partial line."""
    line = json.dumps(as_json(record), ensure_ascii=False).encode() + b"\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        with open(path, "rb") as fh:
            fh.seek(max(0, size - 1))
            last = fh.read(1)
        write_all(fd, (b"\n" if last not in (b"", b"\n") else b"") + line)
        os.fsync(fd)
    finally:
        os.close(fd)  # releases the lock


# -- the tail ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TailState:
    inode: int | None  # st_ino of the file the offset belongs to (None: never read)
    offset: int  # byte offset just after the last complete line consumed
    fingerprint: str | None = None  # of the bytes before the offset (None: offset 0, or unknown)


@dataclass(frozen=True)
class TailLine:
    raw: bytes  # without the trailing b"\n" or b"\r\n"
    file: str  # the followed path, also for lines read from its rotated-away file
    offset: int  # where the line starts in the file it came from


@dataclass(frozen=True)
class Notice:
    """Something the follower should log and record: ``rewritten`` (truncated or rewritten in
    place: read again from the start), ``rotated`` (rotated while nobody followed it: the rest
    of the old file is read first) or ``maybe_lost`` (rotated, and the old file is gone)."""

    kind: str
    file: str
    offset: int  # where the old reading stood
    detail: str


def fingerprint(fd: int, offset: int) -> str | None:
    """A hash of the first and the last ``_PRINT_BYTES`` before ``offset``; "" when the file is
    shorter than ``offset`` (it matches no fingerprint)."""
    if offset <= 0:
        return None
    first = os.pread(fd, min(_PRINT_BYTES, offset), 0)
    start = max(0, offset - _PRINT_BYTES)
    last = os.pread(fd, offset - start, start)
    if len(last) < offset - start:
        return ""
    return hashlib.blake2b(first + b"\0" + last, digest_size=16).hexdigest()


def _read(fd: int, start: int, max_bytes: int) -> tuple[bytes, bool]:
    """Up to ``max_bytes`` from ``start``, or on to the first newline if there is none in them
    (a long line must still make progress). Returns the bytes and whether EOF was reached."""
    chunks: list[bytes] = []
    got = 0
    newline = False
    while got < max_bytes or not newline:
        want = min(_CHUNK, max_bytes - got) if got < max_bytes else _CHUNK
        chunk = os.pread(fd, want, start + got)
        if not chunk:
            return b"".join(chunks), True
        chunks.append(chunk)
        got += len(chunk)
        newline = newline or b"\n" in chunk
    return b"".join(chunks), False


class FeedbackTail:
    """Follows one JSONL file by persisted (inode, offset, fingerprint), Fluent-Bit style.

    Not thread-safe beyond one thing: close() may be called while poll() runs in another
    thread, and waits for it, so poll() never reads from a closed (or reused) descriptor.
    Polling a closed tail returns nothing and the state unchanged.
    """

    def __init__(self, path: Path, state: TailState) -> None:
        self.path = path
        self._state = state
        self._fd: int | None = None  # the file self._state.inode names, once opened
        self._seen: tuple[int, int] | None = None  # (size, mtime) the rewrite check last saw
        self._notices: list[Notice] = []
        self._lock = threading.Lock()
        self._closed = False

    @property
    def state(self) -> TailState:
        return self._state

    def take_notices(self) -> list[Notice]:
        """What happened to the file since the last call (see :class:`Notice`)."""
        with self._lock:
            notices, self._notices = self._notices, []
        return notices

    def poll(self, max_bytes: int = 4 * 2**20) -> tuple[list[TailLine], TailState]:
        """Read the complete lines appended since the state; return them and the new state,
        which the caller persists only after it has stored the lines."""
        with self._lock:
            lines: list[TailLine] = []
            if self._closed or (self._fd is None and not self._open()):
                return lines, self._state
            budget = max_bytes
            if self._rotated():
                budget -= self._drain(lines, max_bytes, final=True)
                if self._fd is not None or not self._open():  # the old file is not finished
                    return lines, self._state
            self._check_rewrite()
            if budget > 0:
                self._drain(lines, budget, final=False)
            return lines, self._state

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._close_fd()

    def __enter__(self) -> FeedbackTail:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _rotated(self) -> bool:
        """Whether the path now names another regular file. A missing path is not a rotation
        yet: the open file may still get lines until its successor appears."""
        assert self._fd is not None
        try:
            current = os.stat(self.path)
        except FileNotFoundError:
            return False
        if not stat.S_ISREG(current.st_mode):
            return False
        held = os.fstat(self._fd)
        return (current.st_dev, current.st_ino) != (held.st_dev, held.st_ino)

    def _open(self) -> bool:
        """Open the file at the path; a file other than the state's starts at offset 0, after
        the rest of the state's file when it was rotated away while nobody followed it."""
        try:
            fd: int | None = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        except FileNotFoundError:
            fd = None
        info = None if fd is None else os.fstat(fd)  # of what was opened: the path may change
        if fd is not None and info is not None and not stat.S_ISREG(info.st_mode):
            os.close(fd)
            raise SourceError(f"{self.path}: not a regular file")
        known = self._state.inode
        if known is not None and (info is None or info.st_ino != known):
            old = self._find_rotated(known)
            if old is not None:
                if fd is not None:
                    os.close(fd)
                self._fd, self._seen = old, None
                return True
            if fd is not None:
                self._notice("maybe_lost", "rotated while not followed, and the old file is gone")
        if fd is None or info is None:
            return False
        self._fd, self._seen = fd, None
        if info.st_ino != known:
            self._state = TailState(info.st_ino, 0)
        return True

    def _find_rotated(self, inode: int) -> int | None:
        """The state's file under another name in the same folder, its content up to the
        offset unchanged (an inode number can be reused)."""
        with contextlib.suppress(OSError), os.scandir(self.path.parent) as entries:
            for entry in entries:
                if entry.inode() != inode or not entry.is_file(follow_symlinks=False):
                    continue
                with contextlib.suppress(OSError):
                    fd = os.open(entry.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
                    same = os.fstat(fd).st_ino == inode and self._state.fingerprint in (
                        None,
                        fingerprint(fd, self._state.offset),
                    )
                    if same:
                        self._notice("rotated", f"reading the rest of {entry.name} first")
                        return fd
                    os.close(fd)
        return None

    def _check_rewrite(self) -> None:
        """Truncated, or rewritten in place (its bytes before the offset changed, however long
        it is now): read it again from the start; stored ids de-duplicate."""
        assert self._fd is not None
        info = os.fstat(self._fd)
        seen = (info.st_size, info.st_mtime_ns)
        if seen == self._seen or self._state.offset == 0:
            self._seen = seen
            return
        self._seen = seen
        expected = self._state.fingerprint
        if info.st_size < self._state.offset:
            self._notice("rewritten", "truncated: reading it again from the start")
        elif expected is not None and fingerprint(self._fd, self._state.offset) != expected:
            self._notice("rewritten", "rewritten in place: reading it again from the start")
        else:
            return
        self._state = TailState(self._state.inode, 0)

    def _notice(self, kind: str, detail: str) -> None:
        self._notices.append(Notice(kind, str(self.path), self._state.offset, detail))

    def _drain(self, lines: list[TailLine], max_bytes: int, *, final: bool) -> int:
        """Append the open file's complete lines to ``lines`` and advance the state. With
        ``final`` (a rotated-away file) a trailing partial line is taken too, and the file is
        closed once read to its end. Returns the bytes consumed."""
        assert self._fd is not None
        start = self._state.offset
        data, eof = _read(self._fd, start, max_bytes)
        end = data.rfind(b"\n") + 1
        if final and eof:
            end = len(data)  # a partial line that will never be completed
        pos = 0
        while pos < end:
            stop = data.find(b"\n", pos, end)
            stop = end if stop < 0 else stop
            raw = data[pos:stop].removesuffix(b"\r")
            if raw.strip():
                lines.append(TailLine(raw, str(self.path), start + pos))
            pos = stop + 1
        if end:
            offset = start + end
            self._state = TailState(self._state.inode, offset, fingerprint(self._fd, offset))
        if final and eof:
            self._close_fd()
            self._state = TailState(None, 0)
        return end

    def _close_fd(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
