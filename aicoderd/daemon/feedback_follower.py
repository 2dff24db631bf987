"""Follows the configured feedback files: valid records go to the store, invalid lines to
``feedback/rejected.jsonl`` with the reason.

Each poll of a file commits its records and its tail state in one transaction, so a crash
re-reads a line rather than losing it, and ids de-duplicate the re-read. What a tail notices (a
rewrite, a rotation while the daemon was down, a rotated file gone) is logged and recorded as an
event.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

from aicoderd import log
from aicoderd.config import Settings
from aicoderd.errors import FeedbackError
from aicoderd.fsutil import append_line
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


class FeedbackFollower:
    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.tails: dict[Path, FeedbackTail] = {}
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

    # -- shared --------------------------------------------------------------------------------

    def _commit(self, batch: Batch, by_id: dict[str, TailLine]) -> tuple[int, int]:
        """Store a batch; a record whose id is stored with other content is set aside."""
        committed = self.store.feedback.commit(batch)
        for record in committed.conflicts:
            reason = f"id {record['id']} is stored already with other content"
            line = by_id[record["id"]]
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
