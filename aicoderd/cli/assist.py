"""``aicoder review`` and ``aicoder complete``: ask the deployed model (:mod:`.backends`), show
what it says, and record the user's verdict as one schema-1 record appended to the feedback file
the daemon follows (under a lock, so it never interleaves with another writer).

Interactive on a terminal; ``--json`` and ``--verdict`` give the same without a question, for
scripts and editor plugins (``--suggestion-file`` records a verdict on a suggestion already
shown, without asking the model again). Imported only when one of the two commands runs.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aicoderd import execute, protocol
from aicoderd.cli.backends import Backend, open_backend
from aicoderd.config import Settings
from aicoderd.errors import BadRequest
from aicoderd.sources import kinds
from aicoderd.sources.feedback_file import FeedbackRecord, append_record, as_json, validate

REVIEW_SOURCE, COMPLETE_SOURCE = "aicoder-review", "aicoder-complete"
_RANGE = re.compile(r"^(?P<path>.+?):(?P<start>\d+)(?:-(?P<end>\d+))?$")
_CURSOR = re.compile(r"^(?P<path>.+?):(?P<line>\d+)(?::(?P<col>\d+))?$")
ANSWERS = {"a": "accepted", "r": "rejected", "e": "edited", "s": None}


@dataclass
class Asked:
    """What was put to the model and what it said, for display and for the record."""

    prompt: str
    suggestion: str
    file: str = ""
    language: str = ""
    model: str = ""
    backend: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


# -- reading the code ----------------------------------------------------------------------------


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadRequest(f"no such file: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadRequest(f"cannot read {path}: {exc}") from None


def _language(path: str) -> str:
    kind, language = kinds.kind_of(path, b"")
    return (language or "") if kind == "code" else ""


def code_at(spec: str) -> tuple[str, str, dict[str, Any]]:
    """``PATH[:START-END]`` (lines, 1-based, inclusive) → (code, path, extra keys)."""
    m = _RANGE.match(spec)
    if m is None or Path(spec).exists():
        return _read(Path(spec)), spec, {}
    path, start = m["path"], int(m["start"])
    end = int(m["end"] or start)
    lines = _read(Path(path)).splitlines(keepends=True)
    if not 1 <= start <= end <= len(lines):
        raise BadRequest(f"{spec}: lines {start}-{end} are not in the file ({len(lines)} lines)")
    return "".join(lines[start - 1 : end]), path, {"lines": [start, end]}


def diff_against(rev: str) -> str:
    """The working tree's changes against ``rev``, as ``git diff`` shows them."""
    out = execute.run_bytes(["git", "diff", "--no-color", "--no-ext-diff", rev, "--"])
    text = out.decode("utf-8", "replace")
    if not text.strip():
        raise BadRequest(f"no changes against {rev}: nothing to review")
    return text


def cursor_at(spec: str) -> tuple[str, str, str]:
    """``PATH:LINE[:COL]`` (1-based; no column: the end of the line) → (prefix, suffix, path)."""
    m = _CURSOR.match(spec)
    if m is None:
        raise BadRequest(f"{spec}: give PATH:LINE[:COL]")
    text = _read(Path(m["path"]))
    lines = text.splitlines(keepends=True) or [""]
    line = int(m["line"])
    if not 1 <= line <= len(lines):
        raise BadRequest(f"{spec}: line {line} is not in the file ({len(lines)} lines)")
    body = lines[line - 1].rstrip("\r\n")
    col = int(m["col"]) if m["col"] else len(body) + 1
    if not 1 <= col <= len(body) + 1:
        raise BadRequest(f"{spec}: column {col} is not on line {line} ({len(body)} characters)")
    at = sum(len(x) for x in lines[: line - 1]) + col - 1
    return text[:at], text[at:], m["path"]


def _file_or_stdin(name: str) -> str:
    return sys.stdin.read() if name == "-" else _read(Path(name))


# -- the user's verdict --------------------------------------------------------------------------


def _interactive(args: argparse.Namespace) -> bool:
    return not args.json and args.verdict is None and sys.stdin.isatty()


def ask(question: str, answers: tuple[str, ...]) -> str:
    """One of ``answers`` (their first letters are enough), asked until one is given."""
    while True:
        try:
            reply = input(question).strip().lower()
        except EOFError:
            return answers[-1]
        found = [a for a in answers if reply and a.startswith(reply)]
        if len(found) == 1:
            return found[0]


def edit_text(text: str, suffix: str) -> str:
    """``text`` after the user edited it in ``$VISUAL`` / ``$EDITOR`` (default vi). The editor
    runs on the terminal itself, so not through :mod:`aicoderd.execute` (which captures)."""
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    fd, name = tempfile.mkstemp(prefix="aicoder-", suffix=suffix)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        done = subprocess.run([*shlex.split(editor), name], check=False)
        if done.returncode != 0:
            raise BadRequest(f"{editor} exited with status {done.returncode}: nothing recorded")
        return Path(name).read_text(encoding="utf-8")
    finally:
        os.unlink(name)


def _given_verdict(args: argparse.Namespace) -> tuple[str, str | None]:
    """The verdict and correction passed as options."""
    correction = _file_or_stdin(args.correction_file) if args.correction_file else None
    if args.verdict == "edited" and correction is None:
        raise BadRequest("--verdict edited needs --correction-file")
    return args.verdict, correction


# -- recording -----------------------------------------------------------------------------------


def feedback_file(args: argparse.Namespace, settings: Settings) -> Path:
    if args.feedback_file:
        return Path(args.feedback_file)
    files = settings.feedback_files()
    if not files:
        raise BadRequest("no feedback file configured (feedback.files is empty)")
    return files[0]


def record(
    asked: Asked, verdict: str, correction: str | None, source: str, target: Path
) -> FeedbackRecord:
    data = {
        **asked.extra,
        "schema": 1,
        "id": str(uuid.uuid4()),
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": asked.model,
        "file": asked.file,
        "language": asked.language,
        "prompt": asked.prompt,
        "suggestion": asked.suggestion,
        "verdict": verdict,
        "source": source,
        "backend": asked.backend,
    }
    if correction is not None:
        data["correction"] = correction
    rec = validate(data)
    append_record(target, rec)
    return rec


def _say_recorded(args: argparse.Namespace, rec: FeedbackRecord | None, target: Path) -> None:
    if rec is not None and not args.json:
        print(f"recorded {rec.verdict} ({rec.id}) in {target}", file=sys.stderr)


# -- the commands --------------------------------------------------------------------------------


def _ask_model(args: argparse.Namespace, settings: Settings, ask_it: Any) -> tuple[str, str, str]:
    """(suggestion, model, backend): from ``--suggestion-file``, or from the model."""
    if args.suggestion_file:
        return _file_or_stdin(args.suggestion_file), args.model or "", "given"
    backend: Backend = open_backend(settings, args.backend, args.model)
    try:
        return ask_it(backend), backend.model, backend.kind
    finally:
        backend.close()


def review(args: argparse.Namespace, settings: Settings) -> int:
    if (args.path is None) == (args.diff is None):
        raise BadRequest("give PATH[:START-END] or --diff [REV] (one of them)")
    if args.path is not None:
        code, path, extra = code_at(args.path)
    else:
        code, path, extra = diff_against(args.diff), "", {"diff": args.diff}
    if not code.strip():
        raise BadRequest("the code to review is empty")
    suggestion, model, kind = _ask_model(args, settings, lambda b: b.review(code, args.max_tokens))
    asked = Asked(code, suggestion, path, _language(path), model, kind, extra)
    diff = "".join(
        difflib.unified_diff(
            code.splitlines(keepends=True),
            suggestion.splitlines(keepends=True),
            f"a/{path or 'diff'}",
            f"b/{path or 'diff'}",
        )
    )
    target = feedback_file(args, settings)
    verdict, correction = _review_verdict(args, asked, diff)
    rec = record(asked, verdict, correction, REVIEW_SOURCE, target) if verdict else None
    if args.json:
        print(json.dumps(_summary(asked, diff, rec, target), indent=2))
    _say_recorded(args, rec, target)
    return protocol.EXIT_OK


def _review_verdict(args: argparse.Namespace, asked: Asked, diff: str) -> tuple[str | None, Any]:
    if args.verdict is not None:
        return _given_verdict(args)
    if args.json:
        return None, None
    print(f"# {asked.backend}: {asked.model}")
    print(diff or "(the model suggests no change)\n", end="")
    if not _interactive(args):
        print("aicoder: not a terminal: pass --verdict to record one", file=sys.stderr)
        return None, None
    if not asked.suggestion.strip():
        print("aicoder: the model said nothing: nothing to record", file=sys.stderr)
        return None, None
    answer = ask("[a]ccept, [r]eject, [e]dit, [s]kip? ", ("accept", "reject", "edit", "skip"))
    verdict = ANSWERS[answer[0]]
    if verdict != "edited":
        return verdict, None
    corrected = edit_text(asked.suggestion, Path(asked.file).suffix or ".txt")
    if corrected == asked.suggestion:
        return "accepted", None  # saved unchanged: taken as it is
    return "edited", corrected


def complete(args: argparse.Namespace, settings: Settings) -> int:
    if args.at is not None:
        if args.prefix_file or args.suffix_file:
            raise BadRequest("give PATH:LINE[:COL] or --prefix-file/--suffix-file, not both")
        prefix, suffix, path = cursor_at(args.at)
    elif args.prefix_file:
        prefix = _file_or_stdin(args.prefix_file)
        suffix = _file_or_stdin(args.suffix_file) if args.suffix_file else ""
        path = args.file or ""
    else:
        raise BadRequest("give PATH:LINE[:COL], or --prefix-file (- for stdin) [--suffix-file]")
    middle, model, kind = _ask_model(
        args, settings, lambda b: b.complete(prefix, suffix, args.max_tokens)
    )
    extra = {"prefix": prefix, "suffix": suffix}
    asked = Asked(prefix if prefix.strip() else suffix, middle, path, _language(path), model, kind)
    asked.extra = extra
    target = feedback_file(args, settings)
    if not args.json:
        print(middle, end="" if middle.endswith("\n") or not middle else "\n")
        sys.stdout.flush()
    verdict, correction = _complete_verdict(args, asked)
    rec = record(asked, verdict, correction, COMPLETE_SOURCE, target) if verdict else None
    if args.json:
        print(json.dumps(_summary(asked, None, rec, target), indent=2))
    _say_recorded(args, rec, target)
    return protocol.EXIT_OK


def _complete_verdict(args: argparse.Namespace, asked: Asked) -> tuple[str | None, Any]:
    if not args.record and args.verdict is None:
        return None, None
    if args.verdict is not None:
        verdict = _given_verdict(args)
    elif not sys.stdin.isatty() or args.json:
        raise BadRequest("--record needs a terminal to ask, or --verdict")
    else:
        verdict = (
            "accepted" if ask("accept? [y/n] ", ("yes", "no")) == "yes" else "rejected",
            None,
        )
    if not asked.suggestion.strip() or not asked.prompt.strip():
        print("aicoder: an empty completion or context: nothing to record", file=sys.stderr)
        return None, None
    return verdict


def _summary(
    asked: Asked, diff: str | None, rec: FeedbackRecord | None, target: Path
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "backend": asked.backend,
        "model": asked.model,
        "file": asked.file,
        "suggestion": asked.suggestion,
    }
    if diff is not None:
        out["diff"] = diff
    if rec is not None:
        out["record"] = as_json(rec)
        out["feedback_file"] = str(target)
    return out
