"""Feedback records turned into training examples (supervised completions and preferences).

``accepted`` → (prompt, suggestion) is a completion to learn; ``edited`` → (prompt, correction)
likewise, and its original suggestion is a rejected completion *paired* with the correction;
``rejected`` → (prompt, suggestion) is a completion to unlearn. A rejected completion whose prompt
also has a chosen one forms a preference pair (DPO); the others are unpaired (KTO-style).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aicoderd.errors import FeedbackError
from aicoderd.sources.feedback_file import FeedbackRecord, parse_line


@dataclass(frozen=True)
class Example:
    prompt: str  # with a suffix: the code before the cursor
    completion: str
    suffix: str | None = None  # set: a fill-in-the-middle example, the completion its middle


@dataclass(frozen=True)
class Pair:
    prompt: str
    chosen: str
    rejected: str
    suffix: str | None = None


@dataclass
class FeedbackSet:
    chosen: list[Example] = field(default_factory=list)
    pairs: list[Pair] = field(default_factory=list)
    unpaired: list[Example] = field(default_factory=list)  # rejected, no chosen for its prompt
    invalid: int = 0

    @property
    def usable(self) -> bool:
        return bool(self.chosen or self.pairs or self.unpaired)

    @property
    def rejected(self) -> list[Example]:
        return [Example(p.prompt, p.rejected, p.suffix) for p in self.pairs] + self.unpaired


@dataclass(frozen=True)
class Feedback:
    """Feedback to learn from, and where it came from (for messages and metrics)."""

    examples: FeedbackSet
    origin: str  # "state.db (N records)" or the files' paths

    def nothing_usable(self) -> str:
        """The sentence a job ends ``skipped`` with and the CLI prints (exit status 3)."""
        return f"no usable feedback in {self.origin}"


def _context(record: FeedbackRecord) -> tuple[str, str | None]:
    """(prompt, suffix): a record from an editor's completion carries the cursor's context as
    ``prefix`` and ``suffix`` and trains in the fill-in-the-middle layout, the prefix as its
    prompt; any other record is a review request."""
    extra = record.model_extra or {}
    prefix, suffix = extra.get("prefix"), extra.get("suffix")
    if isinstance(prefix, str) and isinstance(suffix, str):
        return prefix, suffix
    return record.prompt, None


def from_records(records: Iterable[FeedbackRecord], invalid: int = 0) -> FeedbackSet:
    """``accepted`` and ``edited`` records become chosen completions; rejected ones pair with
    a chosen completion of the same prompt (and suffix) when there is one."""
    chosen: dict[tuple[str, str | None], list[str]] = {}
    rejected: list[Example] = []
    explicit: list[Pair] = []
    for record in records:
        key = _context(record)
        if record.verdict == "accepted":
            chosen.setdefault(key, []).append(record.suggestion)
        elif record.verdict == "edited" and record.correction:
            chosen.setdefault(key, []).append(record.correction)
            if record.suggestion != record.correction:
                explicit.append(Pair(key[0], record.correction, record.suggestion, key[1]))
        else:
            rejected.append(Example(key[0], record.suggestion, key[1]))
    out = FeedbackSet(invalid=invalid)
    out.chosen = [Example(p, c, suf) for (p, suf), cs in chosen.items() for c in cs]
    out.pairs = list(explicit)
    for r in rejected:
        best = chosen.get((r.prompt, r.suffix))
        if best:
            out.pairs.append(Pair(r.prompt, best[0], r.completion, r.suffix))
        else:
            out.unpaired.append(r)
    return out


def from_store(records: list[dict[str, Any]]) -> Feedback:
    """The daemon's truth: the records the feedback follower validated into ``state.db``
    (de-duplicated by id, whatever happened to the files since)."""
    parsed = [FeedbackRecord.model_validate(r) for r in records]
    return Feedback(from_records(parsed), f"state.db ({len(parsed)} records)")


def from_files(files: list[Path]) -> Feedback:
    """Every valid record of the JSONL ``files`` (missing files read as empty): for the
    standalone commands' ``--feedback``. A repeated id counts once, as in the daemon."""
    records, invalid = read_records(files)
    origin = ", ".join(str(f) for f in files) or "(no files)"
    return Feedback(from_records(records, invalid), origin)


def read_records(files: list[Path]) -> tuple[list[FeedbackRecord], int]:
    """The valid records of the JSONL ``files`` (first of each id), and the invalid lines."""
    records: dict[str, FeedbackRecord] = {}
    invalid = 0
    for path in files:
        try:
            lines = path.read_bytes().splitlines()
        except FileNotFoundError:
            continue
        for line in lines:
            if not line.strip():
                continue
            try:
                record = parse_line(line)
            except FeedbackError:
                invalid += 1
                continue
            records.setdefault(record.id, record)
    return list(records.values()), invalid
