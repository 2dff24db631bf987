"""The follower's editor side on real files and a real store, with a clock the test moves:
decisions the clock makes, Tabby's join saved and taken back, idle dated files closed and
opened again when they change."""

from __future__ import annotations

from pathlib import Path

import pytest

from aicoderd.config import Settings
from aicoderd.daemon.feedback_follower import IDLE_SECONDS, FeedbackFollower
from aicoderd.sources.editor_logs import TABBY_FLUSH_GRACE_S
from aicoderd.store import Store
from tests.editor_fixtures import append_jsonl, new_cid, tabby_choice, tabby_completion

T0 = 1_790_000_000.0  # seconds


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Settings, Store, Clock, Path]:
    events = tmp_path / "tabby"
    events.mkdir()
    settings = Settings(
        data_dir=tmp_path / "data",
        feedback={
            "editors": {
                "continue": {"enabled": False},
                "tabby": {"path": events, "model": "aicoder", "view_window_seconds": 30},
            }
        },
    )
    return settings, Store(tmp_path / "state.db"), Clock(), events


def test_the_clock_decides_a_view_and_a_restart_keeps_the_join(
    setup: tuple[Settings, Store, Clock, Path],
) -> None:
    settings, store, clock, events = setup
    day = events / "2026-09-21.json"
    viewed, waiting = new_cid(), new_cid()
    ms = int(T0 * 1000)
    append_jsonl(
        day,
        tabby_completion(viewed, ms),
        tabby_choice("view", viewed, ms + 10),
        tabby_completion(waiting, ms + 20),
        tabby_choice("view", waiting, ms + 30),
    )
    follower = FeedbackFollower(store, settings, clock)
    follower.poll_all()
    assert store.feedback.count() == 0 and set(store.feedback.pending("tabby")) == {viewed, waiting}
    # A restart: the join comes back from the store; a select decides one choice.
    follower = FeedbackFollower(store, settings, clock)
    append_jsonl(day, tabby_choice("select", waiting, ms + 1000))
    follower.poll_all()
    assert [r["verdict"] for r in store.feedback.records()] == ["accepted"]
    # The clock passes the other's window (and Tabby's flush): rejected; both leave the join.
    clock.now = T0 + 30 + TABBY_FLUSH_GRACE_S + 1
    follower.poll_all()
    assert [r["verdict"] for r in store.feedback.records()] == ["accepted", "rejected"]
    assert store.feedback.pending("tabby") == {}
    assert store.feedback.count_by_source() == {"tabby": 2}


def test_idle_dated_files_are_closed_and_opened_again_when_they_change(
    setup: tuple[Settings, Store, Clock, Path],
) -> None:
    settings, store, clock, events = setup
    old, today = events / "2026-09-20.json", events / "2026-09-21.json"
    ms = int(T0 * 1000)
    for path in (old, today):
        cid = new_cid()
        append_jsonl(path, tabby_completion(cid, ms), tabby_choice("select", cid, ms))
    follower = FeedbackFollower(store, settings, clock)
    follower.poll_all()
    editor = follower.editors["tabby"]
    assert set(editor.tails) == {old, today} and store.feedback.count() == 2
    clock.now += IDLE_SECONDS + 1
    follower.poll_all()
    assert editor.tails == {} and set(editor.idle) == {old, today}
    cid = new_cid()
    append_jsonl(old, tabby_completion(cid, ms), tabby_choice("dismiss", cid, ms))
    follower.poll_all()
    assert set(editor.tails) == {old} and store.feedback.count() == 3
    # A followed file whose name goes away is closed once idle, its lines all read.
    old.unlink()
    follower.poll_all()
    assert set(editor.tails) == {old}
    clock.now += IDLE_SECONDS + 1
    follower.poll_all()
    assert editor.tails == {}
    assert store.feedback.count() == 3
