"""Junk names and the settle-time tracker of a folder (real files, no watcher)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from aicoderd.daemon.folder_worker import FolderPlan, FolderWorker, Plan, Progress
from aicoderd.daemon.ingest import Ingestor
from aicoderd.sources.extract import ExtractLimits
from aicoderd.sources.folders import Candidate, FolderWatch, walk
from aicoderd.sources.inotify import Inotify
from aicoderd.sources.kinds import is_junk
from aicoderd.store import DocumentFiles, Store


@pytest.mark.parametrize(
    "name",
    [
        ".hidden",
        "a.part",
        "b.tmp",
        "c.crdownload",
        "d.py~",
        ".#e.py",
        "f.swp",
        "~$doc.docx",
        "Thumbs.db",
        "__MACOSX",
    ],
)
def test_junk_names(name: str) -> None:
    assert is_junk(name)


@pytest.mark.parametrize("name", ["main.py", "README.md", "notes.txt", "archive.tar.gz"])
def test_real_names(name: str) -> None:
    assert not is_junk(name)


def test_walk_skips_junk_and_never_enters_links(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.py").write_text("a")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "x").write_text("x")
    (tmp_path / "b.part").write_text("b")
    (tmp_path / "linkdir").symlink_to(tmp_path / "sub")
    found = {c.path.name for c in walk(tmp_path, recursive=True)}
    assert found == {"a.py", "linkdir"}  # the link is reported (to be refused), not entered


def test_a_file_is_ready_only_after_it_holds_still(tmp_path: Path) -> None:
    ready: list[Candidate] = []
    watch = FolderWatch(tmp_path, True, 0.3, ready.extend)
    f = tmp_path / "x.py"
    f.write_text("1")
    watch.touch(f)
    watch.tick()  # first look: size and mtime recorded, the timer starts
    assert ready == [] and watch.pending == 1
    time.sleep(0.2)
    f.write_text("12")  # a change whose event was lost
    os.utime(f, ns=(time.time_ns(), time.time_ns()))
    time.sleep(0.15)
    watch.tick()  # due, but it changed: the timer restarts
    assert ready == []
    time.sleep(0.15)
    watch.touch(f)  # an event pushes the timer on
    time.sleep(0.2)
    watch.tick()
    assert ready == []
    time.sleep(0.15)
    watch.tick()
    assert [c.path for c in ready] == [f] and ready[0].size == 2
    assert watch.pending == 1  # in flight until done()
    watch.touch(f)  # an event while in flight marks it dirty
    watch.done(f)
    assert f in watch.tracked


def test_a_vanished_file_is_dropped(tmp_path: Path) -> None:
    watch = FolderWatch(tmp_path, True, 0.0, lambda r: None)
    f = tmp_path / "gone.py"
    f.write_text("x")
    watch.touch(f)
    f.unlink()
    watch.tick()
    assert watch.pending == 0


def test_files_outside_or_too_deep_are_not_accepted(tmp_path: Path) -> None:
    flat = FolderWatch(tmp_path, False, 0.1, lambda r: None)
    assert flat.accepts(tmp_path / "a.py")
    assert not flat.accepts(tmp_path / "sub" / "a.py")
    assert not flat.accepts(tmp_path.parent / "other.py")
    assert not flat.accepts(tmp_path / ".failed" / "x.py")


def test_inotify_coalesces_per_path_and_follows_new_folders(tmp_path: Path) -> None:
    watcher = Inotify(skip=is_junk)
    try:
        watcher.add_tree(tmp_path, recursive=True)
        tmp = tmp_path / ".a.py.tmp"
        tmp.write_text("x")
        os.rename(tmp, tmp_path / "a.py")  # the writer contract: temp name, then rename
        (tmp_path / "b.py").write_text("1")
        (tmp_path / "b.py").write_text("12")
        (tmp_path / "gone.py").write_text("x")
        (tmp_path / "gone.py").unlink()
        (tmp_path / "sub").mkdir()
        events, overflow = watcher.drain()
        assert not overflow
        seen = {e.path.name: (e.is_dir, e.deleted) for e in events}
        assert seen == {
            "a.py": (False, False),
            "b.py": (False, False),
            "gone.py": (False, True),
            "sub": (True, False),
        }
        (tmp_path / "sub" / "c.py").write_text("c")  # the new folder is watched already
        events, _ = watcher.drain()
        assert [e.path for e in events] == [tmp_path / "sub" / "c.py"]
        assert watcher.drain() == ([], False)
    finally:
        watcher.close()


def test_the_folder_worker_ingests_what_it_finds_and_what_it_hears(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    limits = ExtractLimits(1 << 20, 100, 1 << 24, 100.0)
    store = Store(tmp_path / "state.db")
    ingestor = Ingestor(store, DocumentFiles(tmp_path / "documents"), limits)
    sent: list[object] = []
    worker = FolderWorker(ingestor, sent.append)
    folder = FolderPlan(inbox, "consume", True, 0.1, "folder:inbox")
    (inbox / "early.py").write_text("a = 1\n")  # found by the first walk
    try:
        worker.configure(Plan(1, (folder,), (), 8, 300.0, 3600.0, limits))
        (inbox / "late.py").write_text("b = 2\n")  # heard through inotify
        deadline = time.monotonic() + 10
        while any(inbox.iterdir()) and time.monotonic() < deadline:
            worker.step()
            time.sleep(worker.tick_interval())
        worker.step()
    finally:
        worker.close()
        ingestor.close()
    progress = [m for m in sent if isinstance(m, Progress)]
    assert progress[-1] == Progress(1, "inotify", (0,), 0)
    assert sum(p.batches for p in progress) >= 1
    assert store.documents.counts()["by_status"] == {"stored": 2}
    store.close()
