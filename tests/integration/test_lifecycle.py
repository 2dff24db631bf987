"""Configuration errors, SIGHUP reload, sd_notify, the systemd unit and the CLI against a real
daemon."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from aicoderd.cli.service import render
from tests.conftest import ROOT, DaemonProc, wait_for


def run_daemon(d: DaemonProc, *args: str, env: dict[str, str] | None = None):
    return subprocess.run(
        [sys.executable, "-m", "aicoderd", *args],
        env={**d.env, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_bad_config_exits_2_with_one_line_per_problem(make_daemon) -> None:
    d = make_daemon()
    bad = {
        **d.config,
        "log_level": "loud",
        "ingest": {"settle_seconds": "soon", "sette": 1},
        "folders": [{"path": str(d.home / "missing"), "mode": "mirror"}],
    }
    d.write_config(bad)
    out = run_daemon(d, "--config", str(d.config_path))
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert "Traceback" not in out.stderr
    assert any(x.startswith("aicoderd: config: log_level:") and "'loud'" in x for x in lines)
    assert any("ingest.settle_seconds:" in x for x in lines)
    assert any(x.endswith("ingest.sette: unknown key") for x in lines)
    assert len(lines) == 3  # the folder check runs once the types are right


def test_config_path_problems(make_daemon) -> None:
    d = make_daemon()
    d.write_config({**d.config, "folders": [{"path": str(d.home / "nope"), "mode": "mirror"}]})
    out = run_daemon(d, "--config", str(d.config_path))
    assert (
        out.returncode == 2 and "folders.0.path:" in out.stderr and "not a readable" in out.stderr
    )
    out = run_daemon(d, "--config", str(d.home / "absent.yaml"))
    assert out.returncode == 2 and "does not exist" in out.stderr
    d.config_path.write_text("folders: [unclosed\n")
    out = run_daemon(d, "--config", str(d.config_path))
    assert out.returncode == 2 and "not valid YAML" in out.stderr


def test_environment_overrides_and_typos(make_daemon) -> None:
    d = make_daemon()
    out = run_daemon(
        d,
        "--config",
        str(d.config_path),
        "--check-config",
        env={"AICODER_INGEST__SETTLE_SECONDS": "x"},
    )
    assert out.returncode == 2 and "ingest.settle_seconds" in out.stderr
    out = run_daemon(
        d, "--config", str(d.config_path), "--check-config", env={"AICODER_LOG_LEVLE": "debug"}
    )
    assert out.returncode == 2 and "AICODER_LOG_LEVLE: unknown key" in out.stderr
    out = run_daemon(
        d, "--config", str(d.config_path), "--check-config", env={"AICODER_LOG_LEVEL": "debug"}
    )
    assert out.returncode == 0, out.stderr


def test_places_the_daemon_cannot_use_exit_2_naming_the_key(make_daemon, tmp_path: Path) -> None:
    """A data_dir, consume folder or socket that cannot be created, or a socket folder that is
    shared or somebody else's: one line naming the key, exit 2, and the folder left as it was."""
    d = make_daemon()
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    if os.geteuid() == 0:
        os.chown(theirs, 65534, 65534)
    cases = {
        "data_dir": {"data_dir": str(blocker / "data")},
        "folders.0.path": {"folders": [{"path": str(blocker / "inbox"), "mode": "consume"}]},
        "socket": {"socket": str(blocker / "run" / "d.sock")},
    }
    for key, change in cases.items():
        d.write_config({**d.config, **change})
        out = run_daemon(d, "--config", str(d.config_path))
        assert out.returncode == 2, (key, out.stderr)
        assert f"aicoderd: config: {key}: " in out.stderr and "Traceback" not in out.stderr
    d.write_config({**d.config, "socket": str(shared / "d.sock")})
    out = run_daemon(d, "--config", str(d.config_path))
    assert out.returncode == 2 and "socket: " in out.stderr and "writable by others" in out.stderr
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777  # never "tightened"
    if os.geteuid() == 0:
        d.write_config({**d.config, "socket": str(theirs / "d.sock")})
        out = run_daemon(d, "--config", str(d.config_path))
        assert out.returncode == 2 and "owned by uid 65534" in out.stderr


def test_defaults_without_a_config_file(make_daemon) -> None:
    d = make_daemon()
    proc = subprocess.Popen(
        [sys.executable, "-m", "aicoderd"],
        env=d.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    sock = d.runtime / "aicoderd" / "aicoderd.sock"
    try:
        wait_for(sock.exists)
        assert (d.home / "aicoder-inbox").is_dir()
        assert (d.home / "share" / "aicoderd" / "state.db").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def test_sighup_reload_keeps_old_config_when_new_is_invalid(make_daemon, tmp_path: Path) -> None:
    d = make_daemon().start()
    extra = tmp_path / "second-inbox"
    good = {**d.config, "folders": d.config["folders"] + [{"path": str(extra)}]}
    d.write_config({**good, "log_level": "shouting"})
    assert d.proc is not None
    d.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: any(e.get("event") == "config.reload_refused" for e in d.log_events()))
    assert len(d.status()["folders"]) == 1  # the old configuration still runs
    d.write_config(good)
    d.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: len(d.status()["folders"]) == 2)
    (extra / "new.py").write_text("N = 1\n")
    wait_for(lambda: d.status()["documents"]["total"] == 1)
    assert d.cli("reload").returncode == 0


def test_sd_notify_ready_and_status(make_daemon, tmp_path: Path) -> None:
    d = make_daemon()
    path = tmp_path / "notify.sock"
    sink = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sink.bind(str(path))
    sink.settimeout(30)
    try:
        d.start(extra_env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "2000000"}, wait=False)
        messages = []
        while not any("READY=1" in m for m in messages):
            messages.append(sink.recv(4096).decode())
        assert d.socket.exists()  # READY only after the socket is bound
        while not any(m == "WATCHDOG=1" for m in messages):
            messages.append(sink.recv(4096).decode())
        d.stop()
        while not any(m == "STOPPING=1" for m in messages):
            messages.append(sink.recv(4096).decode())
    finally:
        sink.close()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_unit_verifies_cleanly(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".local" / "bin").mkdir(parents=True)
    (home / ".local" / "bin" / "aicoderd").symlink_to(Path(sys.executable).parent / "aicoderd")
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    rendered = tmp_path / "aicoderd.service"
    rendered.write_text(render(f"{sys.executable} -m aicoderd"))
    for unit in (ROOT / "systemd" / "aicoderd.service", rendered):
        out = subprocess.run(
            ["systemd-analyze", "--user", "verify", str(unit)],
            env={"HOME": str(home), "XDG_RUNTIME_DIR": str(runtime), "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.stdout + out.stderr == "", out.stdout + out.stderr
    # The reference copy is the template rendered for a `pip install --user`.
    assert (
        (ROOT / "systemd" / "aicoderd.service")
        .read_text()
        .endswith(render("%h/.local/bin/aicoderd"))
    )


def test_service_install_writes_the_unit(make_daemon) -> None:
    d = make_daemon()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "aicoderd.cli.main",
            "--config",
            str(d.config_path),
            "service",
            "install",
            "--no-start",
        ],
        env=d.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    unit = d.home / "config" / "systemd" / "user" / "aicoderd.service"
    text = unit.read_text()
    assert f"ExecStart={sys.executable} -m aicoderd --config {d.config_path}" in text
    assert "Type=notify" in text and "WatchdogSec=" in text


def test_cli_json_status_is_the_api_json(daemon: DaemonProc) -> None:
    out = daemon.cli("--json", "status")
    assert out.returncode == 0, out.stderr
    cli = json.loads(out.stdout)
    api = daemon.status()
    for doc in (cli, api):
        doc.pop("uptime_s")
    assert cli == api


def test_cli_when_the_daemon_is_stopped(make_daemon) -> None:
    d = make_daemon()
    for args in (["status"], ["jobs"], ["events"]):
        out = d.cli(*args)
        assert out.returncode == 4
        assert "Traceback" not in out.stderr
        assert out.stderr.strip().count("\n") == 0
        assert "aicoderd is not running" in out.stderr


def test_cli_jobs_and_events(daemon: DaemonProc) -> None:
    (daemon.inbox / "x.py").write_text("X = 1\n")
    wait_for(lambda: daemon.status()["documents"]["total"] == 1)
    out = daemon.cli("jobs", "submit", "documents.verify", "--wait")
    assert out.returncode == 0, out.stderr
    assert "documents.verify" in out.stdout and "succeeded" in out.stdout
    job = json.loads(daemon.cli("--json", "jobs").stdout)["jobs"][0]
    assert job["result"] == {"checked": 1, "missing": [], "corrupt": []}
    out = daemon.cli("jobs", "submit", "test.sleep", "--params", '{"steps": 500}')
    job_id = out.stdout.split()[0].lstrip("#")
    assert daemon.cli("jobs", "cancel", job_id).returncode == 0
    events = daemon.cli("events").stdout
    assert "daemon.started" in events and "job.cancelled" in events
    assert daemon.cli("--json", "jobs", "--state", "cancelled").returncode == 0


def test_cli_doctor_reports_each_check(daemon: DaemonProc) -> None:
    out = daemon.cli("--config", str(daemon.config_path), "doctor", timeout=180)
    lines = out.stdout.splitlines()
    names = {line.split()[1] for line in lines if line and not line.startswith(" ")}
    assert {
        "config",
        "directories",
        "disk",
        "daemon",
        "torch",
        "cuda",
        "ollama",
        "llama.cpp",
        "continue",
        "tabby",
        "inotify",
    } <= names
    assert any(x.startswith("ok") and " daemon " in x for x in lines)
    assert any(x.startswith("problem") and " ollama " in x for x in lines)  # nothing on :9
    assert out.returncode == 1
    assert yaml.safe_load(daemon.config_path.read_text())  # untouched


def test_cli_status_says_what_each_stage_waits_for(daemon: DaemonProc) -> None:
    wait_for(lambda: daemon.status().get("pipeline") is not None)
    out = daemon.cli("status")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "corpus: snapshot none yet, 0 documents, ~0 tokens" in lines
    assert "model: none yet" in lines
    assert "  train: waiting: the first corpus snapshot" in lines
    assert any(line.startswith("  deploy: waiting: ") for line in lines)


def test_the_data_dir_is_private_and_repaired_at_start(make_daemon) -> None:
    """Stored documents are raw (secrets are redacted only in the corpus): folders 0700,
    files 0600, and what an older release or a copy left readable is tightened at start."""
    d = make_daemon().start()
    (d.inbox / "a.py").write_text("print('private')\n")
    d.wait_idle()
    d.stop()
    docs = d.data_dir / "documents"
    [stored] = [p for p in docs.rglob("*.txt")]
    os.chmod(stored, 0o644)
    os.chmod(stored.parent, 0o755)
    os.chmod(d.data_dir, 0o755)
    d.start()
    wait_for(lambda: stat.S_IMODE(stored.stat().st_mode) == 0o600, timeout=30)
    for path in (d.data_dir, docs, stored.parent):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
    (d.inbox / "b.py").write_text("print('new')\n")
    d.wait_idle()
    for path in docs.rglob("*"):
        assert not path.stat().st_mode & 0o077, path
    assert stat.S_IMODE((d.data_dir / "state.db").stat().st_mode) == 0o600
    doctor = d.cli("doctor")
    assert "privacy" in doctor.stdout and "yours alone" in doctor.stdout
