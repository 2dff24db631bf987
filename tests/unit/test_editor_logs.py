"""Continue's and Tabby's log lines mapped to schema-1 records (fixtures from their documented
schemas), the model rule, stable ids, and Tabby's join kept across a restart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from aicoderd.sources.editor_logs import (
    TABBY_FLUSH_GRACE_S,
    ContinueLog,
    ModelRule,
    Outcome,
    Skip,
    TabbyLog,
)
from aicoderd.sources.feedback_file import FeedbackRecord, TailLine, as_json
from tests.editor_fixtures import (
    PREFIX,
    SUFFIX,
    continue_autocomplete,
    continue_autocomplete_0_1_0,
    continue_edit,
    new_cid,
    tabby,
    tabby_choice,
    tabby_completion,
)

RULE = ModelRule("aicoder")
WINDOW_S = 5.0


def line(event: dict[str, Any] | bytes, file: str = "/c/0.2.0/autocomplete.jsonl") -> TailLine:
    raw = event if isinstance(event, bytes) else json.dumps(event).encode()
    return TailLine(raw, file, 0)


def one(outcomes: list[Outcome]) -> Outcome:
    assert len(outcomes) == 1, outcomes
    return outcomes[0]


def record(outcome: Outcome) -> dict[str, Any]:
    assert isinstance(outcome, FeedbackRecord), outcome
    return as_json(outcome)


@pytest.fixture
def cont(tmp_path: Path) -> ContinueLog:
    return ContinueLog(tmp_path, RULE)


def tabby_log(tmp_path: Path, model: str | None = "aicoder:latest") -> TabbyLog:
    return TabbyLog(tmp_path, RULE, model=model, window_seconds=WINDOW_S)


# -- the model rule ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "ours"),
    [
        ("aicoder", True),
        ("aicoder:latest", True),
        ("AICoder:20260101-train-00007", True),
        ("registry.ollama.ai/library/aicoder:latest", True),
        ("aicoder-backup-20260101:latest", False),
        ("qwen2.5-coder:1.5b", False),
        ("", False),
    ],
)
def test_ours_is_the_deployed_name_with_any_tag(name: str, ours: bool) -> None:
    assert RULE.is_ours(name) is ours


def test_default_rule_ours_for_preferences_all_for_accepted() -> None:
    assert RULE.refuses("qwen2.5-coder:1.5b", "accepted") is None
    assert RULE.refuses("qwen2.5-coder:1.5b", "rejected") == Skip(
        "preference signal from another model"
    )
    assert RULE.refuses("qwen2.5-coder:1.5b", "edited") is not None
    assert RULE.refuses("aicoder:latest", "rejected") is None
    strict = ModelRule("aicoder", accepted_from="ours", rejected_from="all")
    assert strict.refuses("other", "accepted") == Skip("accepted signal from another model")
    assert strict.refuses("other", "rejected") is None


# -- Continue ------------------------------------------------------------------------------------


def test_continue_accepted_autocomplete(cont: ContinueLog) -> None:
    event = continue_autocomplete()
    rec = record(one(cont.feed(line(event))))
    assert rec["schema"] == 1 and rec["verdict"] == "accepted"
    assert rec["source"] == "continue" and rec["event"] == "autocomplete"
    assert (rec["prefix"], rec["suffix"]) == (PREFIX, SUFFIX)
    assert rec["suggestion"] == "return a + b" and rec["prompt"] == PREFIX
    assert rec["model"] == "aicoder:latest" and rec["time"] == "2026-11-24T10:00:00Z"
    assert rec["file"] == "/home/me/project/src/app.py" and rec["language"] == "python"
    assert rec["completion_id"] == event["completionId"]
    assert rec["git_repo"] == event["gitRepo"]
    again = record(one(cont.feed(line(event))))
    assert again == rec  # a re-read maps to the same id and content


def test_continue_not_accepted_within_10_s_is_rejected(cont: ContinueLog) -> None:
    event = continue_autocomplete(accepted=False)
    rec = record(one(cont.feed(line(event))))
    assert rec["verdict"] == "rejected"
    # Accepted after its 10 s, Continue logs the completion again: the same id, other content
    # (the store keeps the first and refuses the second with its reason).
    late = record(one(cont.feed(line({**event, "accepted": True}))))
    assert late["id"] == rec["id"] and late["verdict"] == "accepted"


def test_continue_schema_0_1_0_autocomplete(cont: ContinueLog) -> None:
    event = continue_autocomplete_0_1_0()
    rec = record(one(cont.feed(line(event, "/c/0.1.0/autocomplete.jsonl"))))
    assert rec["verdict"] == "accepted" and rec["prefix"] == PREFIX


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"prefix": ..., "suffix": ..., "prompt": ..., "completion": ...}, "no code"),
        ({"accepted": ...}, "no outcome (accepted missing)"),
        ({"completionId": ...}, "no completionId"),
        ({"timestamp": ...}, "no timestamp"),
        ({"completion": ""}, "not a valid record: suggestion: must not be empty"),
        ({"timestamp": "yesterday"}, "not a valid record: time: must be an RFC 3339 timestamp"),
        (
            {"accepted": False, "modelName": "qwen2.5-coder:1.5b"},
            "preference signal from another model",
        ),
    ],
)
def test_continue_events_that_are_no_record(
    cont: ContinueLog, change: dict[str, Any], reason: str
) -> None:
    event = {k: v for k, v in continue_autocomplete(**change).items() if v is not ...}
    skip = one(cont.feed(line(event)))
    assert isinstance(skip, Skip) and skip.reason.startswith(reason)


def test_continue_accepted_from_another_model_counts(cont: ContinueLog) -> None:
    rec = record(one(cont.feed(line(continue_autocomplete(modelName="qwen2.5-coder:1.5b")))))
    assert rec["model"] == "qwen2.5-coder:1.5b" and rec["verdict"] == "accepted"


def test_continue_lines_that_are_not_events(cont: ContinueLog) -> None:
    assert cont.feed(line(b"{not json")) == [Skip("not JSON")]
    assert cont.feed(line(b"[1]")) == [Skip("not a JSON object")]
    other = cont.feed(line(continue_autocomplete(), "/c/0.2.0/chatFeedback.jsonl"))
    assert other == [Skip("not an event Continue logs feedback in")]


def test_continue_edit_outcomes(cont: ContinueLog) -> None:
    edits = "/c/0.2.0/editOutcome.jsonl"
    same = record(one(cont.feed(line(continue_edit(), edits))))
    assert same["verdict"] == "accepted" and same["correction"] is None
    assert same["previous_code"] == continue_edit()["previousCode"]
    changed = continue_edit(newCode="def add(a, b):\n    return sum(x or 0 for x in (a, b))\n")
    edited = record(one(cont.feed(line(changed, edits))))
    assert edited["verdict"] == "edited" and edited["correction"] == changed["newCode"]
    assert edited["suggestion"] == changed["completion"] and edited["id"] != same["id"]
    rejected = record(one(cont.feed(line(continue_edit(accepted=False), edits))))
    assert rejected["verdict"] == "rejected" and "prefix" not in rejected


def test_continue_files_are_the_schema_folders_event_files(tmp_path: Path) -> None:
    for name in ("0.2.0/autocomplete.jsonl", "0.1.0/autocomplete.jsonl", "0.2.0/editOutcome.jsonl"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("")
    (tmp_path / "0.2.0" / "chatFeedback.jsonl").write_text("")
    (tmp_path / "autocomplete.jsonl").write_text("")  # a flat pre-0.1.0 file: migrated by Continue
    found = [p.relative_to(tmp_path).as_posix() for p in ContinueLog(tmp_path, RULE).files()]
    assert found == [
        "0.1.0/autocomplete.jsonl",
        "0.2.0/autocomplete.jsonl",
        "0.2.0/editOutcome.jsonl",
    ]


# -- Tabby ---------------------------------------------------------------------------------------


def feed_all(log: TabbyLog, *events: dict[str, Any]) -> list[Outcome]:
    return [o for e in events for o in log.feed(line(e, "/t/2026-11-24.json"))]


def test_tabby_select_is_accepted(tmp_path: Path) -> None:
    log, cid, t = tabby_log(tmp_path), new_cid(), 1_790_000_000_000
    out = feed_all(
        log,
        tabby_completion(cid, t),
        tabby_choice("view", cid, t + 50),
        tabby_choice("select", cid, t + 900),
    )
    rec = record(one(out))
    assert rec["verdict"] == "accepted" and rec["source"] == "tabby"
    assert (rec["prefix"], rec["suffix"]) == (PREFIX, SUFFIX)
    assert rec["model"] == "aicoder:latest" and rec["language"] == "python"
    assert rec["file"] == "src/app.py" and rec["completion_id"] == cid
    assert rec["time"] == "2026-09-21T14:13:20Z"
    # A later event for the decided choice is no second record.
    assert feed_all(log, tabby_choice("dismiss", cid, t + 1000)) == [Skip("choice decided already")]


def test_tabby_dismiss_is_rejected(tmp_path: Path) -> None:
    log, cid = tabby_log(tmp_path), new_cid()
    out = feed_all(
        log, tabby_completion(cid), tabby_choice("view", cid), tabby_choice("dismiss", cid)
    )
    assert record(one(out))["verdict"] == "rejected"


def test_tabby_view_without_select_in_the_window_is_rejected_by_the_stream(tmp_path: Path) -> None:
    log, cid, t = tabby_log(tmp_path), new_cid(), 1_790_000_000_000
    assert feed_all(log, tabby_completion(cid, t), tabby_choice("view", cid, t + 10)) == []
    later = tabby_completion(new_cid(), t + 10 + int(WINDOW_S * 1000) + 1)
    rec = record(one(feed_all(log, later)))  # an event past the window decides the view
    assert rec["verdict"] == "rejected"
    # A select after that comes too late.
    assert feed_all(log, tabby_choice("select", cid, t + 9000))[0].reason.startswith("event of a")


def test_tabby_view_without_select_is_rejected_by_the_clock(tmp_path: Path) -> None:
    log, cid, t = tabby_log(tmp_path), new_cid(), 1_790_000_000_000
    feed_all(log, tabby_completion(cid, t), tabby_choice("view", cid, t + 10))
    window_end = (t + 10) / 1000 + WINDOW_S
    assert log.expire(window_end + TABBY_FLUSH_GRACE_S - 0.5) == []  # Tabby may not have flushed
    assert record(one(log.expire(window_end + TABBY_FLUSH_GRACE_S + 0.5)))["verdict"] == "rejected"
    assert log.expire(window_end + 100) == []


def test_tabby_completion_never_shown_is_no_feedback(tmp_path: Path) -> None:
    log, t = tabby_log(tmp_path), 1_790_000_000_000
    feed_all(log, tabby_completion(new_cid(), t))
    assert log.expire(t / 1000 + 60) == [Skip("completion never shown")]


def test_tabby_partial_accept_keeps_the_first_line(tmp_path: Path) -> None:
    log, cid = tabby_log(tmp_path), new_cid()
    out = feed_all(
        log,
        tabby_completion(cid, text="x = 1\ny = 2\n"),
        tabby_choice("view", cid),
        tabby_choice("select", cid, kind="line"),
    )
    rec = record(one(out))
    assert rec["verdict"] == "accepted" and rec["suggestion"] == "x = 1\n"


def test_tabby_model_rule(tmp_path: Path) -> None:
    unknown, cid = tabby_log(tmp_path, model=None), new_cid()
    out = feed_all(unknown, tabby_completion(cid), tabby_choice("dismiss", cid))
    assert out == [Skip("preference signal from another model")]
    cid = new_cid()
    rec = record(one(feed_all(unknown, tabby_completion(cid), tabby_choice("select", cid))))
    assert rec["model"] == "tabby"  # accepted completions of any model count by default


def test_tabby_lines_that_are_no_feedback(tmp_path: Path) -> None:
    log = tabby_log(tmp_path)
    assert feed_all(log, tabby("chat_completion")) == [
        Skip("chat_completion events are no feedback")
    ]
    assert feed_all(log, {"user": None, "ts": "x", "event": {}}) == [Skip("not a Tabby event")]
    unknown = feed_all(log, tabby_choice("select", new_cid()))
    assert unknown == [Skip("event of a completion not seen (or decided long ago)")]
    cid = new_cid()
    feed_all(log, tabby_completion(cid))
    assert feed_all(log, tabby_completion(cid)) == [Skip("completion_id repeated")]
    assert feed_all(log, tabby("view", completion_id=cid, choice_index=3)) == [
        Skip("event of a choice the completion does not have")
    ]


def test_tabby_join_survives_a_restart(tmp_path: Path) -> None:
    first, cid = tabby_log(tmp_path), new_cid()
    feed_all(first, tabby_completion(cid), tabby_choice("view", cid))
    saved = {k: v for k, v in first.pending_changes().items() if v is not None}
    assert list(saved) == [cid] and first.pending_changes() == {}
    second = tabby_log(tmp_path)
    second.restore(saved)
    rec = record(one(feed_all(second, tabby_choice("select", cid))))
    assert rec["verdict"] == "accepted"
    assert second.pending_changes()[cid] is not None  # decided, kept until its window ends
    assert second.expire(10**10) == [] and second.pending_changes() == {cid: None}


def test_tabby_files_are_the_dated_ones(tmp_path: Path) -> None:
    for name in ("2026-11-24.json", "2026-11-23.json", "notes.json", "2026-11-24.json.1"):
        (tmp_path / name).write_text("")
    assert [p.name for p in tabby_log(tmp_path).files()] == ["2026-11-23.json", "2026-11-24.json"]
