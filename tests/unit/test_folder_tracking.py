"""Junk names, the settle-time tracker of a folder (real files, a clock the test drives) and
what inotify tells of writers (real inotify)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import structlog

from aicoderd.daemon.folder_messages import FolderPlan, Plan, Progress
from aicoderd.daemon.folder_worker import FolderWorker
from aicoderd.daemon.ingest import Ingestor
from aicoderd.sources.extract_limits import ExtractLimits
from aicoderd.sources.folders import Candidate, FolderWatch, walk
from aicoderd.sources.inotify import FsEvent, Inotify
from aicoderd.sources.kinds import is_junk
from aicoderd.store import DocumentFiles, Store
from aicoderd.store.writer import DocumentWriter


class Clock:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def watching(
    root: Path, settle: float, stuck_after: float = 3600.0
) -> tuple[FolderWatch, list[Candidate], Clock]:
    """A recursive folder's tracker on a test clock, and the list of files it hands on."""
    ready: list[Candidate] = []
    clock = Clock()
    watch = FolderWatch(root, True, settle, ready.extend, stuck_after=stuck_after, clock=clock)
    return watch, ready, clock


def rewrite(path: Path, text: str, mtime_ns: int) -> None:
    """Change a file's content and set its mtime (the clock of the test is not the disk's)."""
    path.write_text(text)
    os.utime(path, ns=(mtime_ns, mtime_ns))


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
    watch, ready, clock = watching(tmp_path, 0.3)
    f = tmp_path / "x.py"
    rewrite(f, "1", 10**18)
    watch.touch(f)
    watch.tick()  # first look: size and mtime recorded, the timer starts
    assert ready == [] and watch.pending == 1
    clock.advance(0.2)
    rewrite(f, "12", 10**18 + 1)  # a change whose event was lost
    clock.advance(0.15)
    watch.tick()  # due, but it changed: the timer restarts
    assert ready == []
    clock.advance(0.15)
    watch.touch(f)  # an event pushes the timer on (due at +0.3 from now)
    clock.advance(0.2)
    watch.tick()
    assert ready == []
    clock.advance(0.1)
    watch.tick()
    assert [c.path for c in ready] == [f] and ready[0].size == 2
    assert watch.pending == 1  # in flight until done()
    watch.touch(f)  # an event while in flight marks it dirty
    watch.done(f)
    assert f in watch.tracked


def test_a_file_open_for_writing_waits_for_its_close_however_long(tmp_path: Path) -> None:
    watch, ready, clock = watching(tmp_path, 0.5, stuck_after=60.0)
    f = tmp_path / "slow.py"
    rewrite(f, "part one\n", 10**18)
    watch.touch(f, writing=True)  # written, its writer still holds it open
    with structlog.testing.capture_logs() as logs:
        for _ in range(200):  # 100 s of a writer that pauses: nothing changes on disk
            clock.advance(0.5)
            watch.tick()
        assert ready == [] and watch.pending == 1
        stuck = [e for e in logs if e["event"] == "folder.file_never_settles"]
    assert [(e["path"], e["why"]) for e in stuck] == [(str(f), "still open for writing")]
    watch.touch(f, writing=False)  # IN_CLOSE_WRITE: the settle time counts from the close
    clock.advance(0.4)
    watch.tick()
    assert ready == []
    clock.advance(0.2)
    watch.tick()
    assert [c.path for c in ready] == [f]


def test_lost_events_fall_back_to_the_settle_time(tmp_path: Path) -> None:
    watch, ready, clock = watching(tmp_path, 0.5)
    f = tmp_path / "a.py"
    rewrite(f, "x = 1\n", 10**18)
    watch.touch(f, writing=True)
    watch.tick()
    clock.advance(5)
    watch.tick()
    assert ready == []
    watch.writers_unknown()  # the queue overflowed: its close may be among the lost events
    clock.advance(0.5)
    watch.tick()
    assert [c.path for c in ready] == [f]


def test_a_vanished_file_is_dropped(tmp_path: Path) -> None:
    watch = FolderWatch(tmp_path, True, 0.0, lambda r: None, clock=Clock())
    f = tmp_path / "gone.py"
    f.write_text("x")
    watch.touch(f)
    f.unlink()
    watch.tick()
    assert watch.pending == 0


def test_inotify_tells_which_files_are_still_open_for_writing(tmp_path: Path) -> None:
    watcher = Inotify(skip=is_junk)

    def seen() -> dict[str, FsEvent]:
        events, overflow = watcher.drain()
        assert not overflow
        return {e.path.name: e for e in events}

    try:
        watcher.add_tree(tmp_path, recursive=True, opens=True)
        with open(tmp_path / "made.py", "w") as made:  # `cmd > made.py`: nothing written yet
            assert seen()["made.py"].writing
            made.write("x" * 10)
            made.flush()
            assert seen()["made.py"].writing
            (tmp_path / "made.py").read_text()  # a reader opens and closes it meanwhile
            assert seen() == {}  # no news: it is still open for writing
        assert not seen()["made.py"].writing  # IN_CLOSE_WRITE
        (tmp_path / "made.py").read_text()
        assert seen() == {}  # a reader of a closed file changes nothing
        with open(tmp_path / "made.py", "a") as again:
            again.write("more")  # an existing file opened to append: known from its write
            again.flush()
            assert seen()["made.py"].writing
        assert not seen()["made.py"].writing
        os.link(tmp_path / "made.py", tmp_path / "linked.py")  # created, never opened
        assert not seen()["linked.py"].writing
        with open(tmp_path / "gone.py", "w") as gone:
            gone.write("x")
            gone.flush()
            os.unlink(tmp_path / "gone.py")
            event = seen()["gone.py"]
            assert event.deleted and not event.writing
    finally:
        watcher.close()


def test_without_opens_a_writer_is_known_from_its_first_write(tmp_path: Path) -> None:
    watcher = Inotify(skip=is_junk)
    try:
        watcher.add_tree(tmp_path, recursive=False)  # a mirror folder: readers are not heard
        with open(tmp_path / "m.py", "w") as fh:
            assert [e.writing for e in watcher.drain()[0]] == [False]
            fh.write("x")
            fh.flush()
            assert [e.writing for e in watcher.drain()[0]] == [True]
        assert [e.writing for e in watcher.drain()[0]] == [False]
    finally:
        watcher.close()


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
    ingestor = Ingestor(DocumentWriter(store, DocumentFiles(tmp_path / "documents")))
    sent: list[object] = []
    clock = Clock()
    worker = FolderWorker(ingestor, sent.append, clock=clock)
    folder = FolderPlan(inbox, "consume", True, 0.1, "folder:inbox")
    (inbox / "early.py").write_text("a = 1\n")  # found by the first walk
    try:
        worker.configure(Plan(1, (folder,), (), 8, 300.0, 3600.0, limits))
        (inbox / "late.py").write_text("b = 2\n")  # heard through inotify
        for _ in range(4):  # heard, looked at, settled, ingested
            worker.step()
            clock.advance(0.1)
        assert list(inbox.iterdir()) == []
        worker.step()
    finally:
        worker.close()
        ingestor.close()
    progress = [m for m in sent if isinstance(m, Progress)]
    assert progress[-1] == Progress(1, "inotify", (0,), 0)
    assert sum(p.batches for p in progress) >= 1
    assert store.documents.counts()["by_status"] == {"stored": 2}
    store.close()
