"""Drop folders and mirror folders, end to end through a real daemon and real inotify."""

from __future__ import annotations

import hashlib
import io
import os
import random
import sqlite3
import tarfile
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DaemonProc, wait_for


def db_rows(d: DaemonProc, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(d.data_dir / "state.db") as db:
        return db.execute(sql, args).fetchall()


def stored_text(d: DaemonProc, sha: str) -> str:
    return (d.data_dir / "documents" / sha[:2] / f"{sha}.txt").read_text(encoding="utf-8")


def test_a_thousand_dropped_files_are_each_ingested_once(daemon: DaemonProc) -> None:
    sub = daemon.inbox / "pkg" / "deep"
    sub.mkdir(parents=True)
    expected = set()
    for i in range(1000):
        folder = sub if i % 3 == 0 else daemon.inbox
        text = f"def f{i}():\n    return {i}\n"
        (folder / f"m{i}.py").write_text(text)
        expected.add(hashlib.sha256(text.encode()).hexdigest())
    wait_for(lambda: daemon.status()["documents"]["total"] == 1000, timeout=120)
    status = daemon.wait_idle()
    assert status["documents"]["total"] == 1000
    assert status["documents"]["failed"] == 0
    shas = {r[0] for r in db_rows(daemon, "SELECT sha256 FROM documents")}
    assert shas == expected
    assert len(db_rows(daemon, "SELECT id FROM documents")) == 1000
    assert [p for p in daemon.inbox.rglob("*") if p.is_file()] == []
    assert status["documents"]["by_source"] == {f"folder:{daemon.inbox}": 1000}


@pytest.mark.parametrize("first_write", [True, False], ids=["pause-mid-file", "pause-before"])
def test_a_writer_pausing_longer_than_the_settle_time_loses_nothing(
    make_daemon, first_write: bool
) -> None:
    """The file stays while its writer holds it open (inotify), whatever the settle time."""
    d = make_daemon(ingest={"settle_seconds": 0.2}).start()
    target = d.inbox / "slow.py"
    chunks = [f"# chunk {i}\nx{i} = {i}\n" for i in range(3)]
    with open(target, "w") as fh:  # like `generate > slow.py`
        if first_write:
            fh.write(chunks[0])
            fh.flush()
        # Ten settle periods: long enough that the daemon surely looked (pending counts it).
        wait_for(lambda: d.status()["documents"]["pending"] == 1, timeout=30)
        time.sleep(2.0)
        assert target.exists() and d.status()["documents"]["total"] == 0
        for chunk in chunks[1 if first_write else 0 :]:
            fh.write(chunk)
            fh.flush()
    wait_for(lambda: d.status()["documents"]["total"] == 1, timeout=30)
    d.wait_idle()
    rows = db_rows(d, "SELECT sha256 FROM documents")
    assert len(rows) == 1 and d.status()["documents"]["failed"] == 0
    assert stored_text(d, rows[0][0]) == "".join(chunks)
    assert not (d.inbox / ".failed").exists()


def test_a_file_its_writer_never_closes_is_reported_and_kept(make_daemon) -> None:
    d = make_daemon(ingest={"settle_seconds": 0.2, "stuck_after_seconds": 1.0}).start()
    target = d.inbox / "held.log.txt"
    with open(target, "w") as fh:
        fh.write("first line\n")
        fh.flush()

        def reported() -> bool:
            return any(
                e.get("event") == "folder.file_never_settles"
                and e.get("path") == str(target)
                and e.get("why") == "still open for writing"
                for e in d.log_events()
            )

        wait_for(reported, timeout=30)
        assert target.exists()
        status = d.status()["documents"]
        assert (status["total"], status["pending"]) == (0, 1)
        fh.write("second line\n")
    wait_for(lambda: d.status()["documents"]["total"] == 1, timeout=30)
    (sha,) = db_rows(d, "SELECT sha256 FROM documents")[0]
    assert stored_text(d, sha) == "first line\nsecond line\n"


def test_same_content_under_other_names_is_one_document(daemon: DaemonProc) -> None:
    (daemon.inbox / "sub").mkdir()
    for name in ("a.py", "b.py", "sub/c.py"):
        (daemon.inbox / name).write_text("import os\nprint(os.getcwd())\n")
    wait_for(lambda: len(db_rows(daemon, "SELECT * FROM locations")) == 3)
    assert daemon.wait_idle()["documents"]["total"] == 1
    assert not any(p.is_file() for p in daemon.inbox.rglob("*"))


def test_legacy_encodings_are_stored_as_their_authors_wrote_them(daemon: DaemonProc) -> None:
    texts = {
        "recette.txt": ("Le café est très bon ... crème brûlée à la française.\n", "latin-1"),
        "util.py": ("def f():\n    # naïve approach, © Müller\n    return 1\n", "cp1252"),
        "zprava.txt": ("Dobrý den, přeji hezký večer. Příliš žluťoučký kůň.\n", "cp1250"),
        "pismo.txt": ("Zażółć gęślą jaźń. Łódź leży w Polsce.\n", "iso-8859-2"),
        "privet.txt": ("Привет, как дела? Сегодня хорошая погода.\n", "koi8-r"),
        "nihongo.txt": ("東京は日本の首都です。今日はいい天気ですね。\n", "shift_jis"),
    }
    for name, (text, encoding) in texts.items():
        (daemon.inbox / name).write_bytes(text.encode(encoding))
    wait_for(lambda: daemon.status()["documents"]["total"] == len(texts), timeout=60)
    for text, _ in texts.values():
        assert stored_text(daemon, hashlib.sha256(text.encode()).hexdigest()) == text


def test_names_that_are_not_utf8_are_stored_under_an_exact_uri(make_daemon, tmp_path: Path) -> None:
    """A file name is bytes: one that is not UTF-8 must neither fail the batch it is in nor
    lose its identity (its uri writes such bytes as %XX and "%" as %25)."""
    project = tmp_path / "project"
    project.mkdir()
    d = make_daemon()
    mirror = {"path": str(project), "mode": "mirror"}
    d.write_config({**d.config, "folders": [*d.config["folders"], mirror]})
    d.start()
    odd = os.fsdecode(b"caf\xe9.py")
    (project / odd).write_text("CAFE = 1\n")
    (project / "100%.py").write_text("PERCENT = 2\n")
    wait_for(lambda: d.status()["documents"]["total"] == 2)
    uris = {r[0] for r in db_rows(d, "SELECT uri FROM documents")}
    assert uris == {f"{project}/caf%E9.py", f"{project}/100%25.py"}
    (project / odd).unlink()  # retired through its event, under the same uri
    wait_for(lambda: d.status()["documents"]["retired"] == 1)

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as archive:
        info = tarfile.TarInfo(os.fsdecode(b"pkg/na\xefve.py"))  # a Latin-1 member name
        info.size = len(b"NAIVE = 3\n")
        archive.addfile(info, io.BytesIO(b"NAIVE = 3\n"))
    drops = {
        os.fsdecode(b"r\xe9sum\xe9.txt"): b"Curriculum vitae\n",
        os.fsdecode(b"bundle\xff.tar"): buf.getvalue(),
        os.fsdecode(b"blob\xff.bin"): b"\x00\x01" * 20,  # refused: set aside, not lost
        "plain.py": b"PLAIN = 4\n",
    }
    for name, data in drops.items():
        (d.inbox / name).write_bytes(data)

    def taken() -> bool:
        left = [name for name in os.listdir(d.inbox) if not name.startswith(".")]
        return d.status()["documents"]["total"] == 4 and not left

    wait_for(taken)
    inbox = f"folder:{d.inbox}"
    uris = {r[0] for r in db_rows(d, "SELECT uri FROM documents WHERE source = ?", inbox)}
    assert uris == {
        f"{d.inbox}/r%E9sum%E9.txt",
        f"{d.inbox}/bundle%FF.tar!pkg/na%EFve.py",
        f"{d.inbox}/blob%FF.bin",  # failed
        f"{d.inbox}/plain.py",
    }
    failed = d.inbox / ".failed"
    assert (failed / os.fsdecode(b"blob\xff.bin")).read_bytes() == drops[
        os.fsdecode(b"blob\xff.bin")
    ]
    note = (failed / os.fsdecode(b"blob\xff.bin.error.txt")).read_bytes()
    assert b"blob\xff.bin" in note and b"reason: binary" in note


def _zip(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_junk_and_hostile_input_is_set_aside_with_a_reason(make_daemon, tmp_path: Path) -> None:
    d = make_daemon(ingest={"settle_seconds": 0.3, "max_file_bytes": "64KiB"}).start()
    secret = tmp_path / "id_rsa"
    secret.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nsecret\n")
    refused = {
        "link.py": None,
        "image.png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(200),
        "big.txt": b"x" * (65 * 1024),
        "empty.txt": b"",
        "slip.zip": _zip({"../../evil.py": b"print('owned')\n"}),
        "bomb.zip": _zip({"zeros.txt": bytes(30 * 2**20)}),
        "broken.zip": b"PK\x03\x04 definitely not a zip",
    }
    for name, data in refused.items():
        if data is None:
            (d.inbox / name).symlink_to(secret)
        else:
            (d.inbox / name).write_bytes(data)
    ignored = [
        "notes.txt.part",
        ".hidden.py",
        "download.crdownload",
        "x.tmp",
        "edit.py~",
        ".#lock.py",
        "f.swp",
    ]
    for name in ignored:
        (d.inbox / name).write_text("still being written\n")
    (d.inbox / "good.py").write_text("print('fine')\n")
    failed = d.inbox / ".failed"
    wait_for(lambda: all((failed / f"{n}.error.txt").exists() for n in refused), timeout=30)
    status = d.wait_idle()
    assert status["documents"]["total"] == 1  # only good.py
    assert status["documents"]["failed"] == len(refused)
    reasons = {n: (failed / f"{n}.error.txt").read_text() for n in refused}
    assert "reason: symlink" in reasons["link.py"]
    assert "reason: binary" in reasons["image.png"]
    assert "reason: too_large" in reasons["big.txt"]
    assert "reason: empty" in reasons["empty.txt"]
    assert "reason: archive_unsafe_path" in reasons["slip.zip"]
    assert "reason: archive_bomb" in reasons["bomb.zip"]
    assert "reason: archive_corrupt" in reasons["broken.zip"]
    # The originals are kept, byte for byte; the link was moved, never followed.
    assert (failed / "image.png").read_bytes() == refused["image.png"]
    assert (failed / "link.py").is_symlink()
    assert not any(
        "OPENSSH" in stored_text(d, r[0])
        for r in db_rows(d, "SELECT sha256 FROM documents WHERE status='stored'")
    )
    assert not (tmp_path / "evil.py").exists() and not (d.home / "evil.py").exists()
    for name in ignored:
        assert (d.inbox / name).exists(), name
    assert d.proc is not None and d.proc.poll() is None


def test_archive_members_become_documents(daemon: DaemonProc) -> None:
    data = _zip({"pkg/a.py": b"A = 1\n", "pkg/b.md": b"# B\n", "pkg/img.bin": b"\x00\x01" * 10})
    (daemon.inbox / "bundle.zip").write_bytes(data)
    wait_for(lambda: daemon.status()["documents"]["total"] == 2)
    uris = sorted(r[0] for r in db_rows(daemon, "SELECT uri FROM documents"))
    assert uris == [f"{daemon.inbox}/bundle.zip!pkg/a.py", f"{daemon.inbox}/bundle.zip!pkg/b.md"]


def folder_worker_pid(d: DaemonProc) -> int:
    assert d.proc is not None
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if (
            stat[stat.rindex(")") + 2 :].split()[1] == str(d.proc.pid)
            and b"folder_worker" in cmdline
        ):
            return int(entry.name)
    raise AssertionError("no folder worker under the daemon")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def compressible_code(rng: random.Random, nbytes: int) -> bytes:
    """Code-like text that deflates ~30-fold: blocks of lines from a small pool."""
    pool = [
        f"    value_{rng.randrange(10**6)} = compute({i}, {rng.random():.6f})\n" for i in range(400)
    ]
    out, size = [], 0
    while size < nbytes:
        start = rng.randrange(len(pool) - 15)
        block = "".join(pool[start : start + 15])
        out.append(block)
        size += len(block)
    return "".join(out).encode()[:nbytes]


def test_an_archive_is_ingested_member_by_member_in_bounded_memory(daemon: DaemonProc) -> None:
    """16 members of 4 MB (64 MB of text from a ~2 MB zip): the worker holds one at a time."""
    rng = random.Random(5)
    members = {f"pkg/m{i:02d}.py": compressible_code(rng, 4_000_000) for i in range(16)}
    data = _zip(members)
    worker = folder_worker_pid(daemon)
    before = peak_rss_mb(worker)
    (daemon.inbox / "big.zip").write_bytes(data)
    wait_for(lambda: daemon.status()["documents"]["total"] == 16, timeout=120)
    daemon.wait_idle()
    grown = peak_rss_mb(worker) - before
    # All members at once would be >= 64 MB of text plus its UTF-8 copy; one at a time is the
    # archive plus a few member-sized buffers.
    assert grown < 40, f"the folder worker's peak RSS grew by {grown:.0f} MB"
    sha = hashlib.sha256(members["pkg/m07.py"]).hexdigest()
    assert stored_text(daemon, sha).encode() == members["pkg/m07.py"]


def test_kill_minus_nine_mid_burst_loses_and_doubles_nothing(make_daemon) -> None:
    d = make_daemon(ingest={"settle_seconds": 0.2, "batch_size": 16}).start()
    expected = set()
    for i in range(600):
        text = f"value_{i} = {i * 7}\n"
        (d.inbox / f"v{i}.py").write_text(text)
        expected.add(hashlib.sha256(text.encode()).hexdigest())
    wait_for(lambda: d.status()["documents"]["total"] >= 50, timeout=60)
    d.kill9()
    left = len(list(d.inbox.glob("*.py")))
    assert left > 0, "the burst finished before the kill; the test proves nothing"
    d.start()
    wait_for(lambda: d.status()["documents"]["total"] == 600, timeout=120)
    d.wait_idle()
    rows = db_rows(d, "SELECT sha256 FROM documents")
    assert len(rows) == 600 and {r[0] for r in rows} == expected
    assert list(d.inbox.glob("*.py")) == []
    for sha in list(expected)[:50]:
        assert stored_text(d, sha).startswith("value_")


def _snapshot(root: Path) -> dict[str, tuple[int, int, str]]:
    return {
        str(p.relative_to(root)): (
            p.lstat().st_mode,
            p.lstat().st_mtime_ns,
            hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "",
        )
        for p in sorted(root.rglob("*"))
    }


def test_mirror_mode_never_modifies_the_folder(make_daemon, tmp_path: Path) -> None:
    src = tmp_path / "project"
    (src / "lib").mkdir(parents=True)
    (src / "lib" / "a.py").write_text("A = 1\n")
    (src / "b.md").write_text("# B\n")
    (src / "bin.dat").write_bytes(b"\x00\x01\x02" * 50)
    (src / ".git").mkdir()
    (src / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    d = make_daemon(folders=[{"path": str(src), "mode": "mirror"}]).start()
    wait_for(lambda: d.status()["documents"]["total"] == 2)
    d.wait_idle()
    before = _snapshot(src)
    assert d.status()["documents"]["failed"] == 1  # bin.dat, left where it is

    (src / "lib" / "a.py").write_text("A = 2\n")  # changed → new document, old one retired
    (src / "c.py").write_text("C = 3\n")  # new
    (src / "b.md").unlink()  # deleted → retired
    wait_for(
        lambda: d.status()["documents"]["total"] == 2 and d.status()["documents"]["retired"] == 2,
        timeout=30,
    )
    d.wait_idle()
    by_status = dict(db_rows(d, "SELECT uri, status FROM documents"))
    assert by_status[str(src / "c.py")] == "stored"
    assert by_status[str(src / "b.md")] == "retired"
    after = _snapshot(src)
    assert not (src / ".failed").exists()
    assert after[".git/HEAD"] == before[".git/HEAD"] and after["bin.dat"] == before["bin.dat"]

    # Restarted with nothing changed: no new document, nothing re-read.
    d.stop()
    d.start()
    d.wait_idle()
    time.sleep(1)
    assert d.status()["documents"]["total"] == 2
    assert _snapshot(src) == after


def test_rescan_finds_files_that_arrived_while_stopped(make_daemon) -> None:
    d = make_daemon().start()
    d.stop()
    (d.inbox / "offline.py").write_text("x = 'arrived while stopped'\n")
    os.utime(d.inbox / "offline.py", (1, 1))
    d.start()
    wait_for(lambda: d.status()["documents"]["total"] == 1)


def test_cli_ingest_copies_files_and_reports_each(daemon: DaemonProc, tmp_path: Path) -> None:
    src = tmp_path / "handed"
    src.mkdir()
    (src / "one.py").write_text("ONE = 1\n")
    (src / "two.rst").write_text("Title\n=====\n")
    (src / "blob.bin").write_bytes(b"\x00" * 64)
    out = daemon.cli("ingest", str(src))
    assert out.returncode == 1, out.stderr  # one file was refused
    lines = out.stdout.splitlines()
    assert any(x.startswith("stored") and x.endswith("one.py") for x in lines)
    assert any(x.startswith("refused") and "binary" in x for x in lines)
    assert (src / "one.py").exists() and (src / "blob.bin").exists()
    assert daemon.status()["documents"]["by_source"]["cli"] == 2


def test_a_refused_file_with_a_name_near_the_limit_gets_its_note(make_daemon) -> None:
    """A name of 250 bytes has no room for ``.error.txt``: the note's name is shortened (told
    apart by a hash), the file itself leaves the inbox once, and it is not refused again."""
    d = make_daemon(ingest={"settle_seconds": 0.3, "rescan_interval_seconds": 1}).start()
    name = "é" * 120 + "x.png"  # 245 bytes
    (d.inbox / name).write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    failed = d.inbox / ".failed"
    wait_for(lambda: (failed / name).exists(), timeout=30)
    [note] = [p for p in failed.iterdir() if p.name.endswith(".error.txt")]
    assert len(os.fsencode(note.name)) <= 255 and note.name.startswith("é" * 100)
    assert f"file: {d.inbox / name}" in note.read_text() and "reason: binary" in note.read_text()
    assert not (d.inbox / name).exists()
    time.sleep(2.5)  # two rescans
    assert d.status()["documents"]["failed"] == 1
    assert db_rows(d, "SELECT COUNT(*) FROM documents WHERE status='failed'") == [(1,)]


def test_temp_files_of_a_killed_writer_are_removed_at_start(make_daemon) -> None:
    d = make_daemon()
    shard = d.data_dir / "documents" / "ab"
    shard.mkdir(parents=True)
    dead = shard / f".{'ab' * 32}.txt.999999999.1.tmp"  # no such pid
    dead.write_text("half a document")
    alive = shard / f".{'ab' * 32}.txt.{os.getpid()}.1.tmp"  # a writer still at work
    alive.write_text("being written")
    d.start()
    wait_for(lambda: not dead.exists(), timeout=30)
    assert alive.exists()
