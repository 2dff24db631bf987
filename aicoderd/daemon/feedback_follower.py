"""Follows the feedback sources: the configured feedback files (valid records to the store,
invalid lines to ``feedback/rejected.jsonl`` with the reason) and the editors' logs (each event
mapped by :mod:`aicoderd.sources.editor_logs`; events that map to no record counted by reason).

Each poll of a file commits its records, its tail state and an editor's join state in one
transaction, so a crash re-reads a line rather than losing it, and ids de-duplicate the re-read.
What a tail notices (a rewrite, a rotation while the daemon was down, a rotated file gone) is
logged and recorded as an event.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aicoderd import log
from aicoderd.config import Settings
from aicoderd.errors import FeedbackError
from aicoderd.fsutil import append_line
from aicoderd.sources.editor_logs import EditorLog, Outcome, Skip, editor_logs
from aicoderd.sources.feedback_file import (
    FeedbackTail,
    Notice,
    TailLine,
    TailState,
    as_json,
    parse_line,
)
from aicoderd.store import Batch, Store

logger = log.get(__name__)

FILE_SOURCE = "file"
IDLE_SECONDS = 3600.0  # an editor's file that gave no line this long, read to its end, is closed


@dataclass
class _Editor:
    log: EditorLog
    tails: dict[Path, FeedbackTail] = field(default_factory=dict)
    active: dict[Path, float] = field(default_factory=dict)  # when a tail last gave lines
    idle: dict[Path, tuple[int, int, int]] = field(default_factory=dict)  # (ino, size, mtime)


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


class FeedbackFollower:
    def __init__(
        self, store: Store, settings: Settings, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.tails: dict[Path, FeedbackTail] = {}
        self.editors: dict[str, _Editor] = {}
        self._applied: Settings | None = None
        self._apply()

    def reconfigure(self, settings: Settings) -> None:
        """Taken up by the poll loop before its next round (never under a running poll)."""
        self.settings = settings

    @property
    def rejected_file(self) -> Path:
        return self.settings.feedback_dir / "rejected.jsonl"

    async def run(self) -> None:
        while True:
            await asyncio.to_thread(self.poll_all)
            await asyncio.sleep(self.settings.feedback.poll_interval_seconds)

    def poll_all(self) -> None:
        if self._applied is not self.settings:
            self._apply()
        for path, tail in list(self.tails.items()):
            try:
                self.poll_file(path, tail)
            except Exception:
                logger.exception("feedback.poll_failed", file=str(path))
        for editor in self.editors.values():
            try:
                self.poll_editor(editor)
            except Exception:
                logger.exception("feedback.poll_failed", source=editor.log.name)

    # -- configuration -----------------------------------------------------------------------

    def _apply(self) -> None:
        s = self.settings
        wanted = set(s.feedback_files())
        for path in list(self.tails):
            if path not in wanted:
                self.tails.pop(path).close()
        for path in wanted - set(self.tails):
            path.parent.mkdir(parents=True, exist_ok=True)
            self.tails[path] = self._tail(path)
        for editor in self.editors.values():
            for tail in editor.tails.values():
                tail.close()
        self.editors = {}
        for editor_log in editor_logs(s):
            editor_log.restore(self.store.feedback.pending(editor_log.name))
            self.editors[editor_log.name] = _Editor(editor_log)
        self._applied = s

    def _tail(self, path: Path) -> FeedbackTail:
        return FeedbackTail(path, TailState(*self.store.feedback.tail_state(str(path))))

    # -- feedback files ----------------------------------------------------------------------

    def poll_file(self, path: Path, tail: FeedbackTail) -> tuple[int, int]:
        """One poll of one feedback file: (records added, lines refused)."""
        lines, state = tail.poll()
        self._report(tail.take_notices())
        if not lines and state == TailState(*self.store.feedback.tail_state(str(path))):
            return 0, 0
        valid: list[dict[str, Any]] = []
        refused: list[tuple[TailLine, str]] = []
        by_id: dict[str, TailLine] = {}
        for line in lines:
            try:
                record = as_json(parse_line(line.raw))
            except FeedbackError as exc:
                refused.append((line, str(exc)))
                continue
            valid.append(record)
            by_id[record["id"]] = line
        batch = Batch(FILE_SOURCE, valid, str(path), *_where(state), invalid=len(refused))
        added, conflicts = self._commit(batch, by_id)
        for line, reason in refused:
            self._set_aside(line.file, line.offset, line.raw, reason)
        self._record_read(str(path), added, len(refused) + conflicts, Counter())
        return added, len(refused)

    # -- editors' logs -----------------------------------------------------------------------

    def poll_editor(self, editor: _Editor) -> int:
        """One round over an editor's files, then what its clock decides. Returns the records
        added."""
        added = 0
        # A followed file whose name went away (rotated, deleted) is still read to its end.
        for path in sorted({*editor.log.files(), *editor.tails}):
            tail = self._editor_tail(editor, path)
            if tail is not None:
                added += self._poll_editor_file(editor, path, tail)
        outcomes = editor.log.expire(self.clock())
        pending = editor.log.pending_changes()
        if outcomes or pending:
            records, unmapped = _split(outcomes)
            batch = Batch(
                editor.log.name,
                [as_json(r) for r in records],
                origin=str(editor.log.root),
                unmapped=dict(unmapped),
                pending=pending,
            )
            new, conflicts = self._commit(batch, {})
            added += new
            self._record_read(str(editor.log.root), new, conflicts, unmapped)
        return added

    def _editor_tail(self, editor: _Editor, path: Path) -> FeedbackTail | None:
        """The open tail of ``path``; a file closed as idle is opened again when it changed."""
        tail = editor.tails.get(path)
        if tail is not None:
            return tail
        if path in editor.idle and editor.idle[path] == _signature(path):
            return None
        editor.idle.pop(path, None)
        editor.active[path] = self.clock()
        tail = editor.tails[path] = self._tail(path)
        return tail

    def _poll_editor_file(self, editor: _Editor, path: Path, tail: FeedbackTail) -> int:
        lines, state = tail.poll()
        self._report(tail.take_notices())
        stored = TailState(*self.store.feedback.tail_state(str(path)))
        if not lines and state == stored:
            self._close_if_idle(editor, path, state)
            return 0
        editor.active[path] = self.clock()
        by_id: dict[str, TailLine] = {}
        outcomes: list[Outcome] = []
        for line in lines:
            for outcome in editor.log.feed(line):
                outcomes.append(outcome)
                if not isinstance(outcome, Skip):
                    by_id[str(outcome.id)] = line
        records, unmapped = _split(outcomes)
        batch = Batch(
            editor.log.name,
            [as_json(r) for r in records],
            str(path),
            *_where(state),
            unmapped=dict(unmapped),
            pending=editor.log.pending_changes(),
        )
        added, conflicts = self._commit(batch, by_id)
        self._record_read(str(path), added, conflicts, unmapped)
        return added

    def _close_if_idle(self, editor: _Editor, path: Path, state: TailState) -> None:
        """Dated files pile up: one that gave no line for an hour and is read to its end (or
        whose name is gone) is closed, and opened again only if it changes (its saved state
        finds a rotated file again)."""
        if self.clock() - editor.active.get(path, 0.0) < IDLE_SECONDS:
            return
        sig = _signature(path)
        if sig is not None and sig[1] != state.offset:
            return
        editor.tails.pop(path).close()
        editor.active.pop(path, None)
        if sig is not None:
            editor.idle[path] = sig

    # -- shared --------------------------------------------------------------------------------

    def _commit(self, batch: Batch, by_id: dict[str, TailLine]) -> tuple[int, int]:
        """Store a batch; a record whose id is stored with other content is set aside."""
        committed = self.store.feedback.commit(batch)
        for record in committed.conflicts:
            reason = f"id {record['id']} is stored already with other content"
            line = by_id.get(record["id"])
            if line is None:  # decided by an editor's clock: no line of its own
                line = TailLine(json.dumps(record).encode(), batch.origin, -1)
            self._set_aside(line.file, line.offset, line.raw, reason)
        return committed.added, len(committed.conflicts)

    def _record_read(self, where: str, added: int, invalid: int, unmapped: Counter[str]) -> None:
        if not (added or invalid or unmapped):
            return
        data: dict[str, Any] = {"file": where, "valid": added, "invalid": invalid}
        if unmapped:
            data["unmapped"] = dict(unmapped)
            logger.debug("feedback.unmapped", file=where, reasons=dict(unmapped))
        self.store.events.add("feedback.read", data)

    def _report(self, notices: list[Notice]) -> None:
        for n in notices:
            data = {"file": n.file, "offset": n.offset, "detail": n.detail}
            level = logger.warning if n.kind == "maybe_lost" else logger.info
            level(f"feedback.{n.kind}", **data)
            self.store.events.add(f"feedback.{n.kind}", data)

    def _set_aside(self, file: str, offset: int, raw: bytes, reason: str) -> None:
        append_line(
            self.rejected_file,
            json.dumps(
                {
                    "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "file": file,
                    "offset": offset,
                    "reason": reason,
                    "line": raw.decode("utf-8", "replace"),
                }
            ),
        )
        logger.warning("feedback.invalid_line", file=file, offset=offset, reason=reason)


def _where(state: TailState) -> tuple[int | None, int, str | None]:
    return state.inode, state.offset, state.fingerprint


def _split(outcomes: list[Outcome]) -> tuple[list[Any], Counter[str]]:
    """Records, and the skips counted by reason."""
    records = [o for o in outcomes if not isinstance(o, Skip)]
    return records, Counter(o.reason for o in outcomes if isinstance(o, Skip))
