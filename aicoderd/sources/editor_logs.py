"""Editors' local logs as feedback: Continue's development data and Tabby's event files, each
event mapped to one schema-1 record (or to the reason it is not one).

Read-only: the daemon follows these files as it follows a feedback file (inode, offset,
fingerprint, rotation, partial lines) and hands each complete line to :meth:`EditorLog.feed`.
A record's id is a uuid5 of the event's identity, so reading a line again never doubles it.
Every record keeps its provenance (``source``) and, for a completion at a cursor, the context
as ``prefix`` and ``suffix`` (the finetune trains such a record as a fill-in-the-middle example).

Continue (``<root>/<schema>/<event>.jsonl``) logs each outcome once: no join is needed. Tabby
(``<root>/YYYY-MM-DD.json``) logs a ``completion``, then ``view`` / ``select`` / ``dismiss`` events
naming it, so :class:`TabbyLog` joins them by ``completion_id`` and keeps the completions still
waiting for an outcome as its pending state (saved with the offsets that consumed them).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import unquote, urlparse

from aicoderd.config import Settings
from aicoderd.errors import FeedbackError
from aicoderd.sources import kinds
from aicoderd.sources.feedback_file import SCHEMA_VERSION, FeedbackRecord, TailLine, validate

# Fixed forever: ids derived from it must stay the same across releases.
NAMESPACE = uuid.UUID("fcc8a508-d3a8-4a39-b652-8acecf61093f")
CONTINUE, TABBY = "continue", "tabby"
Which = Literal["ours", "all"]
# Tabby buffers its event file and flushes it every 5 s: a decision by the clock waits longer.
TABBY_FLUSH_GRACE_S = 10.0


@dataclass(frozen=True)
class Skip:
    """An event that is no record; ``reason`` is a short fixed phrase, counted per source."""

    reason: str


Outcome = FeedbackRecord | Skip


def _model_base(name: str) -> str:
    """``registry.ollama.ai/library/aicoder:latest`` → ``aicoder`` (Ollama names compare without
    case, the default registry and namespace, and the tag)."""
    name = name.strip().lower()
    last = name.rsplit("/", 1)
    if ":" in last[-1]:
        name = name.rsplit(":", 1)[0]
    return name.removeprefix("registry.ollama.ai/").removeprefix("library/")


@dataclass(frozen=True)
class ModelRule:
    """Which models' events count: ``ours`` (the deployed name, any tag) or ``all``, one rule
    for accepted completions and one for preference signals (rejected and edited)."""

    ours: str
    accepted_from: Which = "all"
    rejected_from: Which = "ours"

    def is_ours(self, model: str) -> bool:
        return bool(model) and _model_base(model) == _model_base(self.ours)

    def refuses(self, model: str, verdict: str) -> Skip | None:
        which = self.accepted_from if verdict == "accepted" else self.rejected_from
        if which == "ours" and not self.is_ours(model):
            kind = "accepted" if verdict == "accepted" else "preference"
            return Skip(f"{kind} signal from another model")
        return None


@dataclass(frozen=True)
class Draft:
    """What an editor event says, before it becomes a schema-1 record."""

    key: str  # the event's identity within its editor (the uuid5 name)
    time: str  # RFC 3339
    model: str
    prompt: str
    suggestion: str
    verdict: str
    file: str = ""
    language: str = ""
    correction: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _language(path: str) -> str:
    kind, language = kinds.kind_of(path, b"")
    return (language or "") if kind == "code" else ""


def _local_path(uri: str) -> str:
    """Continue names files by URI (``file:///home/me/app.py``); the record keeps a path."""
    parsed = urlparse(uri)
    return unquote(parsed.path) if parsed.scheme == "file" else uri


def _json_object(raw: bytes) -> dict[str, Any] | Skip:
    try:
        data = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return Skip("not JSON")
    return data if isinstance(data, dict) else Skip("not a JSON object")


def _text(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) else None


class EditorLog(ABC):
    """One editor's log folder: which files to follow, and how a line maps to records."""

    name: ClassVar[str]
    patterns: ClassVar[tuple[str, ...]]  # globs under the root

    def __init__(self, root: Path, models: ModelRule) -> None:
        self.root = root
        self.models = models

    def files(self) -> list[Path]:
        """The files to follow now, oldest name first (Tabby's are dated)."""
        if not self.root.is_dir():  # the editor is not installed (yet): one stat a poll
            return []
        found = {p for pattern in self.patterns for p in self.root.glob(pattern) if p.is_file()}
        return sorted(found)

    @abstractmethod
    def feed(self, line: TailLine) -> list[Outcome]:
        """The outcomes one complete line decides (a join may decide earlier events too)."""

    def expire(self, now: float) -> list[Outcome]:
        """Outcomes the clock decides (``now``: Unix time); none for a log without joins."""
        return []

    def pending_changes(self) -> dict[str, str | None]:
        """The join state changed since the last call: key → JSON, None for a key resolved."""
        return {}

    def restore(self, pending: dict[str, str]) -> None:  # noqa: B027 (no join: nothing)
        """Take back the join state saved by an earlier run."""

    def outcome(self, draft: Draft) -> Outcome:
        """The schema-1 record for a draft, unless the model rule or the schema refuses it."""
        refused = self.models.refuses(draft.model, draft.verdict)
        if refused is not None:
            return refused
        data = {
            **draft.extra,
            "schema": SCHEMA_VERSION,
            "id": str(uuid.uuid5(NAMESPACE, f"{self.name}:{draft.key}")),
            "time": draft.time,
            "model": draft.model,
            "file": draft.file,
            "language": draft.language,
            "prompt": draft.prompt,
            "suggestion": draft.suggestion,
            "verdict": draft.verdict,
            "source": self.name,
        }
        if draft.correction is not None:
            data["correction"] = draft.correction
        try:
            return validate(data)
        except FeedbackError as exc:
            return Skip(f"not a valid record: {str(exc).split(' (got')[0]}")


# -- Continue ------------------------------------------------------------------------------------


def _continue_common(e: dict[str, Any]) -> dict[str, Any] | Skip:
    """The fields every mapped Continue event shares."""
    if not isinstance(e.get("completion"), str) or not isinstance(e.get("prompt"), str):
        return Skip("no code (Continue logs at level noCode)")
    if not isinstance(e.get("accepted"), bool):
        return Skip("no outcome (accepted missing)")
    timestamp = _text(e, "timestamp")
    if timestamp is None:
        return Skip("no timestamp")
    path = _local_path(_text(e, "filepath") or "")
    return {
        "time": timestamp,
        "model": _text(e, "modelName") or "",
        "file": path,
        "language": _language(path),
    }


class ContinueLog(EditorLog):
    """``<root>/<schema>/autocomplete.jsonl`` and ``editOutcome.jsonl`` (schemas 0.1.0, 0.2.0)."""

    name = CONTINUE
    patterns = ("*/autocomplete.jsonl", "*/editOutcome.jsonl")

    def feed(self, line: TailLine) -> list[Outcome]:
        event = _json_object(line.raw)
        if isinstance(event, Skip):
            return [event]
        mapper = self.MAPPERS.get(Path(line.file).stem)
        return [mapper(self, event) if mapper else Skip("not an event Continue logs feedback in")]

    def autocomplete(self, e: dict[str, Any]) -> Outcome:
        common = _continue_common(e)
        if isinstance(common, Skip):
            return common
        completion_id = _text(e, "completionId")
        if not completion_id:
            return Skip("no completionId")
        prefix, suffix = _text(e, "prefix") or "", _text(e, "suffix") or ""
        extra: dict[str, Any] = {"event": "autocomplete", "prefix": prefix, "suffix": suffix}
        extra |= {"completion_id": completion_id, "model_provider": e.get("modelProvider")}
        if e.get("gitRepo"):
            extra["git_repo"] = e["gitRepo"]
        return self.outcome(
            Draft(
                key=f"autocomplete:{completion_id}",
                prompt=e["prompt"] or prefix,
                suggestion=e["completion"],
                verdict="accepted" if e["accepted"] else "rejected",
                extra=extra,
                **common,
            )
        )

    def edit_outcome(self, e: dict[str, Any]) -> Outcome:
        common = _continue_common(e)
        if isinstance(common, Skip):
            return common
        new_code = _text(e, "newCode")
        if new_code is None:
            return Skip("no code (Continue logs at level noCode)")
        verdict, correction = "rejected", None
        if e["accepted"]:
            edited = new_code != e["completion"] and new_code.strip()
            verdict, correction = ("edited", new_code) if edited else ("accepted", None)
        identity = hashlib.sha256(json.dumps(e, sort_keys=True).encode()).hexdigest()
        extra: dict[str, Any] = {"event": "editOutcome", "model_provider": e.get("modelProvider")}
        if isinstance(e.get("previousCode"), str):
            extra["previous_code"] = e["previousCode"]
        return self.outcome(
            Draft(
                key=f"editOutcome:{identity}",
                prompt=e["prompt"],
                suggestion=e["completion"],
                verdict=verdict,
                correction=correction,
                extra=extra,
                **common,
            )
        )

    MAPPERS: ClassVar[dict[str, Callable[[ContinueLog, dict[str, Any]], Outcome]]] = {
        "autocomplete": autocomplete,
        "editOutcome": edit_outcome,
    }


# -- Tabby ---------------------------------------------------------------------------------------


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


@dataclass
class _Completion:
    """A Tabby completion waiting for the outcome of its choices."""

    ts: int  # ms
    language: str
    prompt: str
    segments: dict[str, Any]
    choices: dict[str, str]  # index → text
    views: dict[str, int] = field(default_factory=dict)  # index → first view (ms)
    decided: list[str] = field(default_factory=list)  # indexes with a record (or a skip)
    deadline: int = 0  # ms: the stream or the clock passing it decides what is left

    def dumps(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)


def _completion(body: dict[str, Any], ts: int, window_ms: int) -> _Completion | Skip:
    choices = body.get("choices")
    if not isinstance(choices, list) or not all(
        isinstance(c, dict) and isinstance(c.get("index"), int) and isinstance(c.get("text"), str)
        for c in choices
    ):
        return Skip("completion without choices")
    segments = body.get("segments") if isinstance(body.get("segments"), dict) else {}
    return _Completion(
        ts=ts,
        language=_text(body, "language") or "",
        prompt=_text(body, "prompt") or "",
        segments=segments or {},
        choices={str(c["index"]): c["text"] for c in choices},
        deadline=ts + window_ms,
    )


class TabbyLog(EditorLog):
    """``<root>/YYYY-MM-DD.json``: ``{user, ts, event: {<kind>: {...}}}`` lines. ``select`` →
    accepted (``kind: line``: the first line accepted); ``dismiss``, or a ``view`` with no select
    within the window → rejected; a completion never viewed is no feedback."""

    name = TABBY
    patterns = ("[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9].json",)

    def __init__(
        self, root: Path, models: ModelRule, *, model: str | None, window_seconds: float
    ) -> None:
        super().__init__(root, models)
        self.model = model or ""  # Tabby's events do not name the model that served them
        self.window_ms = int(window_seconds * 1000)
        self.pending: dict[str, _Completion] = {}
        self._changed: set[str] = set()

    def restore(self, pending: dict[str, str]) -> None:
        self.pending = {key: _Completion(**json.loads(data)) for key, data in pending.items()}

    def pending_changes(self) -> dict[str, str | None]:
        changes = {k: (c.dumps() if (c := self.pending.get(k)) else None) for k in self._changed}
        self._changed.clear()
        return changes

    def feed(self, line: TailLine) -> list[Outcome]:
        entry = _json_object(line.raw)
        if isinstance(entry, Skip):
            return [entry]
        ts, event = entry.get("ts"), entry.get("event")
        if not isinstance(ts, int) or not isinstance(event, dict) or len(event) != 1:
            return [Skip("not a Tabby event")]
        ((kind, body),) = event.items()
        handler = self.HANDLERS.get(kind)
        if handler is None or not isinstance(body, dict):
            return [Skip(f"{kind} events are no feedback")]
        # Tabby writes events in time order: one past a deadline decides what was left open.
        return [*self._decide(lambda c: c.deadline < ts), *handler(self, body, ts)]

    def expire(self, now: float) -> list[Outcome]:
        limit = int((now - TABBY_FLUSH_GRACE_S) * 1000)
        return self._decide(lambda c: c.deadline < limit)

    def _decide(self, due: Callable[[_Completion], bool]) -> list[Outcome]:
        out: list[Outcome] = []
        for cid in [cid for cid, c in self.pending.items() if due(c)]:
            c = self.pending.pop(cid)
            self._changed.add(cid)
            left = [i for i in c.views if i not in c.decided]
            out += [self._record(cid, c, i, "rejected") for i in left]
            if not c.views:
                out.append(Skip("completion never shown"))
        return out

    def _on_completion(self, body: dict[str, Any], ts: int) -> list[Outcome]:
        cid = _text(body, "completion_id")
        if not cid:
            return [Skip("completion without completion_id")]
        if cid in self.pending:
            return [Skip("completion_id repeated")]
        made = _completion(body, ts, self.window_ms)
        if isinstance(made, Skip):
            return [made]
        self.pending[cid] = made
        self._changed.add(cid)
        return []

    def _choice(self, body: dict[str, Any]) -> tuple[str, _Completion, str] | Skip:
        cid, index = _text(body, "completion_id"), body.get("choice_index")
        c = self.pending.get(cid or "")
        if cid is None or c is None:
            return Skip("event of a completion not seen (or decided long ago)")
        if not isinstance(index, int) or str(index) not in c.choices:
            return Skip("event of a choice the completion does not have")
        return cid, c, str(index)

    def _on_view(self, body: dict[str, Any], ts: int) -> list[Outcome]:
        found = self._choice(body)
        if isinstance(found, Skip):
            return [found]
        cid, c, index = found
        c.views.setdefault(index, ts)
        c.deadline = max(c.deadline, ts + self.window_ms)
        self._changed.add(cid)
        return []

    def _on_outcome(self, body: dict[str, Any], verdict: str) -> list[Outcome]:
        found = self._choice(body)
        if isinstance(found, Skip):
            return [found]
        cid, c, index = found
        if index in c.decided:
            return [Skip("choice decided already")]
        line_only = verdict == "accepted" and body.get("kind") == "line"
        return [self._record(cid, c, index, verdict, first_line=line_only)]

    def _record(
        self, cid: str, c: _Completion, index: str, verdict: str, *, first_line: bool = False
    ) -> Outcome:
        c.decided.append(index)
        self._changed.add(cid)
        text = c.choices[index]
        suggestion = text.splitlines(keepends=True)[0] if first_line and text else text
        seg = c.segments
        prefix, suffix = _text(seg, "prefix") or "", _text(seg, "suffix") or ""
        extra = {"event": "completion", "prefix": prefix, "suffix": suffix, "completion_id": cid}
        if seg.get("git_url"):
            extra["git_url"] = seg["git_url"]
        return self.outcome(
            Draft(
                key=f"{cid}:{index}",
                time=_iso(c.ts),
                model=self.model or TABBY,
                file=_text(seg, "filepath") or "",
                language=c.language,
                prompt=c.prompt or prefix,
                suggestion=suggestion,
                verdict=verdict,
                extra=extra,
            )
        )

    HANDLERS: ClassVar[dict[str, Callable[[TabbyLog, dict[str, Any], int], list[Outcome]]]] = {
        "completion": _on_completion,
        "view": _on_view,
        "select": lambda log, body, ts: log._on_outcome(body, "accepted"),
        "dismiss": lambda log, body, ts: log._on_outcome(body, "rejected"),
    }


def editor_logs(settings: Settings) -> list[EditorLog]:
    """The enabled editors' logs, as the configuration describes them."""
    e = settings.feedback.editors
    rule = ModelRule(settings.ollama.model, e.accepted_from, e.rejected_from)
    found: list[EditorLog] = []
    if e.continue_.enabled:
        found.append(ContinueLog(e.continue_.path, rule))
    if e.tabby.enabled:
        tabby = e.tabby
        found.append(
            TabbyLog(tabby.path, rule, model=tabby.model, window_seconds=tabby.view_window_seconds)
        )
    return found
