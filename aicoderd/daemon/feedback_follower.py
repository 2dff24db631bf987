"""Follows the configured feedback files: valid records go to the store, invalid lines to
``feedback/rejected.jsonl`` with the reason. The offset is saved in the same transaction as the
records, so a crash re-reads a line rather than losing it."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from aicoderd import log
from aicoderd.config import Settings
from aicoderd.errors import FeedbackError
from aicoderd.fsutil import append_line
from aicoderd.sources.feedback_file import FeedbackTail, TailLine, TailState, parse_line
from aicoderd.store import Store

logger = log.get(__name__)


class FeedbackFollower:
    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.tails: dict[Path, FeedbackTail] = {}
        self._open_tails()

    def _open_tails(self) -> None:
        wanted = set(self.settings.feedback_files())
        for path in list(self.tails):
            if path not in wanted:
                self.tails.pop(path).close()
        for path in wanted - set(self.tails):
            path.parent.mkdir(parents=True, exist_ok=True)
            inode, offset = self.store.feedback.tail_state(str(path))
            self.tails[path] = FeedbackTail(path, TailState(inode, offset))

    def reconfigure(self, settings: Settings) -> None:
        self.settings = settings
        self._open_tails()

    @property
    def rejected_file(self) -> Path:
        return self.settings.feedback_dir / "rejected.jsonl"

    async def run(self) -> None:
        while True:
            for path, tail in list(self.tails.items()):
                try:
                    await asyncio.to_thread(self.poll_once, path, tail)
                except Exception:
                    logger.exception("feedback.poll_failed", file=str(path))
            await asyncio.sleep(self.settings.feedback.poll_interval_seconds)

    def poll_once(self, path: Path, tail: FeedbackTail) -> tuple[int, int]:
        lines, state = tail.poll()
        if not lines and state == TailState(*self.store.feedback.tail_state(str(path))):
            return 0, 0
        valid: list[dict[str, Any]] = []
        refused: list[tuple[TailLine, str]] = []
        by_id: dict[str, TailLine] = {}
        for line in lines:
            try:
                record = parse_line(line.raw).model_dump(mode="json", by_alias=True)
            except FeedbackError as exc:
                refused.append((line, str(exc)))
                continue
            valid.append(record)
            by_id[record["id"]] = line
        committed = self.store.feedback.commit(
            valid, str(path), len(refused), state.inode, state.offset
        )
        for record in committed.conflicts:
            reason = f"id {record['id']} is stored already with other content"
            refused.append((by_id[record["id"]], reason))
        for line, reason in refused:
            self._set_aside(line, reason)
        if committed.added or refused:
            self.store.events.add(
                "feedback.read",
                {"file": str(path), "valid": committed.added, "invalid": len(refused)},
            )
        return committed.added, len(refused)

    def _set_aside(self, line: TailLine, reason: str) -> None:
        append_line(
            self.rejected_file,
            json.dumps(
                {
                    "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "file": line.file,
                    "offset": line.offset,
                    "reason": reason,
                    "line": line.raw.decode("utf-8", "replace"),
                }
            ),
        )
        logger.warning("feedback.invalid_line", file=line.file, offset=line.offset, reason=reason)
