"""The socket API of a real daemon: permissions, peer check, routes, errors, OpenAPI, metrics,
events, jobs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from openapi_spec_validator import validate
from prometheus_client.parser import text_string_to_metric_families

from aicoderd.daemon.schemas import Status
from tests.conftest import DaemonProc, wait_for


def test_socket_and_directory_modes(daemon: DaemonProc) -> None:
    assert stat.S_IMODE(daemon.socket.stat().st_mode) == 0o600
    assert stat.S_IMODE(daemon.socket.parent.stat().st_mode) == 0o700
    assert stat.S_ISSOCK(daemon.socket.stat().st_mode)


def test_status_has_the_contracted_shape(daemon: DaemonProc) -> None:
    status = daemon.status()
    Status.model_validate(status)
    assert status["documents"]["total"] == 0
    assert status["folders"] == [{"path": str(daemon.inbox), "mode": "consume", "pending": 0}]
    assert daemon.inbox.is_dir()


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("curl") is None,
    reason="needs root (to connect as another uid) and curl",
)
def test_another_uid_is_refused(daemon: DaemonProc) -> None:
    # Open the directory gate on purpose (a hard link to the socket in an open folder, the
    # socket made 0666), so only the SO_PEERCRED check stands in the way.
    gate = Path(tempfile.mkdtemp())  # the same file system as tmp_path
    os.chmod(gate, 0o755)
    os.link(daemon.socket, gate / "open.sock")
    os.chmod(daemon.socket, 0o666)
    out = subprocess.run(
        ["curl", "-s", "-i", "--unix-socket", str(gate / "open.sock"), "http://aicoderd/v1/status"],
        user=65534,
        cwd="/",
        capture_output=True,
        text=True,
        timeout=30,
    )
    shutil.rmtree(gate)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("HTTP/1.1 403"), out.stdout
    assert '"code": "forbidden"' in out.stdout
    # And our own uid is still served.
    assert daemon.get("/v1/status").status_code == 200


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_unix_socket_works(daemon: DaemonProc) -> None:
    out = subprocess.run(
        ["curl", "-sf", "--unix-socket", str(daemon.socket), "http://aicoderd/v1/status"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0
    assert json.loads(out.stdout)["version"]


def test_errors_are_json_with_a_code(daemon: DaemonProc) -> None:
    cases = [
        (daemon.get("/v1/nope"), 404, "not_found"),
        (daemon.get("/v1/jobs/999"), 404, "not_found"),
        (daemon.get("/v1/jobs/abc"), 400, "bad_request"),
        (daemon.client.post("/v1/jobs", json={"kind": "no.such"}), 400, "bad_request"),
        (daemon.client.post("/v1/jobs", content=b"{not json"), 400, "bad_request"),
        (daemon.client.post("/v1/jobs", json={"kind": "x", "bogus": 1}), 400, "bad_request"),
        (daemon.get("/v1/documents", params={"limit": "many"}), 400, "bad_request"),
    ]
    for resp, status, code in cases:
        assert resp.status_code == status, resp.text
        assert resp.json()["error"]["code"] == code
        assert resp.json()["error"]["message"]


def test_openapi_document_is_valid(daemon: DaemonProc) -> None:
    spec = daemon.get("/openapi.json").json()
    validate(spec)
    for path in (
        "/v1/status",
        "/v1/documents",
        "/v1/jobs",
        "/v1/jobs/{id}",
        "/v1/events",
        "/metrics",
        "/openapi.json",
    ):
        assert path in spec["paths"]
    assert set(spec["paths"]["/v1/jobs/{id}"]) == {"get", "delete"}


def test_metrics_are_prometheus_text(daemon: DaemonProc) -> None:
    (daemon.inbox / "a.py").write_text("print('hello')\n")
    daemon.wait_idle()
    wait_for(lambda: daemon.status()["documents"]["total"] == 1)
    resp = daemon.get("/metrics")
    assert resp.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(resp.text)}
    docs = {s.labels["status"]: s.value for s in families["aicoderd_documents"].samples}
    assert docs["stored"] == 1
    assert "aicoderd_jobs" in families


def test_events_stream_and_follow(daemon: DaemonProc) -> None:
    events = [json.loads(x) for x in daemon.get("/v1/events").text.splitlines()]
    assert events[0]["type"] == "daemon.started"
    last = events[-1]["seq"]
    seen: list[dict[str, object]] = []
    with daemon.client.stream(
        "GET", "/v1/events", params={"since": last, "follow": 1}, timeout=30
    ) as resp:
        assert resp.headers["content-type"] == "application/x-ndjson"
        (daemon.inbox / "b.md").write_text("# title\n\nbody\n")
        for line in resp.iter_lines():
            seen.append(json.loads(line))
            if seen[-1]["type"] == "ingest.batch":
                break
    assert all(int(str(e["seq"])) > last for e in seen)
    assert seen[-1]["stored"] == 1


def test_job_runs_in_a_child_process_and_reports_progress(daemon: DaemonProc) -> None:
    job = daemon.client.post(
        "/v1/jobs", json={"kind": "test.sleep", "params": {"steps": 5, "interval": 0.05}}
    )
    assert job.status_code == 201
    job_id = job.json()["id"]
    done = wait_for(
        lambda: (
            (j := daemon.get(f"/v1/jobs/{job_id}").json())["state"] in ("succeeded", "failed") and j
        )
    )
    assert done["state"] == "succeeded", done
    assert done["result"] == {"steps": 5}
    assert done["progress"] == {"step": 5, "total": 5}
    assert done["pid"] is None and done["attempts"] == 1
    types = [json.loads(x)["type"] for x in daemon.get("/v1/events").text.splitlines()]
    assert types.count("job.progress") == 5 and "job.succeeded" in types


def test_a_jobs_log_is_kept_apart_from_its_messages(daemon: DaemonProc) -> None:
    """What a job's process logs or prints never reaches the result channel: it lands in the
    job's log (API and `aicoder jobs log`) and in the daemon's log, tagged with the job."""
    job_id = daemon.client.post("/v1/jobs", json={"kind": "test.chatty"}).json()["id"]
    done = wait_for(
        lambda: (j := daemon.get(f"/v1/jobs/{job_id}").json())["state"] == "succeeded" and j
    )
    assert done["result"] == {"said": 3} and done["progress"] == {"step": 1, "total": 1}
    resp = daemon.get(f"/v1/jobs/{job_id}/log")
    text = resp.text
    assert resp.headers["X-Log-Size"] == str(len(resp.content))
    for line in ("chatty.working", "a library printing to stdout", "a warning on stderr"):
        assert line in text
    entry = next(json.loads(x) for x in text.splitlines() if "chatty.working" in x)
    assert entry["job_id"] == job_id and entry["answer"] == 42
    tail = daemon.get(f"/v1/jobs/{job_id}/log", params={"offset": len(resp.content) - 10})
    assert tail.content == resp.content[-10:]
    out = daemon.cli("jobs", "log", str(job_id))
    assert out.returncode == 0 and "a warning on stderr" in out.stdout
    forwarded = [x for x in daemon.logs().splitlines() if "chatty.working" in x]
    assert forwarded and f'"job_id": {job_id}' in forwarded[0]
    assert daemon.get("/v1/jobs/999999/log").status_code == 404


def test_failed_and_skipped_jobs(daemon: DaemonProc) -> None:
    ids = [
        daemon.client.post("/v1/jobs", json={"kind": k}).json()["id"]
        for k in ("test.fail", "test.skip")
    ]
    final = [
        wait_for(
            lambda i=i: (
                (j := daemon.get(f"/v1/jobs/{i}").json())["state"] not in ("queued", "running")
                and j
            )
        )
        for i in ids
    ]
    assert final[0]["state"] == "failed"
    assert "this job fails on purpose" in final[0]["error"]
    assert final[1]["state"] == "skipped" and final[1]["error"] == "nothing to do"


def test_cancel_queued_and_running_jobs(daemon: DaemonProc, tmp_path: Path) -> None:
    running = daemon.client.post(
        "/v1/jobs", json={"kind": "test.sleep", "params": {"steps": 1000}}
    ).json()
    queued = daemon.client.post("/v1/jobs", json={"kind": "test.sleep"}).json()
    wait_for(lambda: daemon.get(f"/v1/jobs/{running['id']}").json()["progress"])
    # Heavy jobs take turns: the second waits.
    assert daemon.get(f"/v1/jobs/{queued['id']}").json()["state"] == "queued"
    assert daemon.client.delete(f"/v1/jobs/{queued['id']}").json()["state"] == "cancelled"
    assert daemon.client.delete(f"/v1/jobs/{running['id']}").json()["state"] == "cancelled"
    again = daemon.client.delete(f"/v1/jobs/{running['id']}")
    assert again.status_code == 409 and "cancelled" in again.json()["error"]["message"]


def test_cancel_escalates_to_sigkill(daemon: DaemonProc, tmp_path: Path) -> None:
    marker = tmp_path / "stubborn"
    job = daemon.client.post(
        "/v1/jobs", json={"kind": "test.stubborn", "params": {"marker": str(marker)}}
    ).json()
    wait_for(marker.exists)
    pid = daemon.get(f"/v1/jobs/{job['id']}").json()["pid"]
    t0 = time.monotonic()
    assert daemon.client.delete(f"/v1/jobs/{job['id']}").json()["state"] == "cancelled"
    assert 1.5 < time.monotonic() - t0 < 15  # the 2 s grace, then SIGKILL
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_job_running_when_the_daemon_dies_is_requeued(make_daemon, tmp_path: Path) -> None:
    d = make_daemon().start()
    marker = tmp_path / "marker"
    job = d.client.post(
        "/v1/jobs",
        json={
            "kind": "test.sleep",
            "params": {"steps": 30, "interval": 0.05, "marker": str(marker)},
        },
    ).json()
    wait_for(lambda: marker.exists() and marker.read_text().count("\n") >= 2)
    pid = d.get(f"/v1/jobs/{job['id']}").json()["pid"]
    d.kill9()
    os.killpg(pid, signal.SIGKILL)  # what systemd's KillMode=mixed does to the cgroup
    d.start()
    done = wait_for(
        lambda: (j := d.get(f"/v1/jobs/{job['id']}").json())["state"] == "succeeded" and j,
        timeout=60,
    )
    assert done["attempts"] == 2
    types = [json.loads(x)["type"] for x in d.get("/v1/events").text.splitlines()]
    assert "job.requeued" in types


def test_sigterm_requeues_running_job_and_exits_cleanly(make_daemon) -> None:
    d = make_daemon().start()
    job = d.client.post("/v1/jobs", json={"kind": "test.sleep", "params": {"steps": 1000}})
    job_id = job.json()["id"]
    wait_for(lambda: d.get(f"/v1/jobs/{job_id}").json()["progress"])
    t0 = time.monotonic()
    assert d.stop() == 0
    assert time.monotonic() - t0 < 15
    assert not d.socket.exists()
    d.start()
    again = wait_for(lambda: (j := d.get(f"/v1/jobs/{job_id}").json())["attempts"] == 2 and j)
    assert again["state"] == "running"  # requeued by the shutdown, started again
    d.client.delete(f"/v1/jobs/{job_id}")


def test_second_daemon_on_the_same_data_dir_refuses(daemon: DaemonProc) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "aicoderd", "--config", str(daemon.config_path)],
        env=daemon.env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 1
    assert "another aicoderd" in out.stderr
    assert daemon.get("/v1/status").status_code == 200


def test_documents_listing_pages(daemon: DaemonProc) -> None:
    for i in range(5):
        (daemon.inbox / f"f{i}.txt").write_text(f"document number {i}\n")
    wait_for(lambda: daemon.status()["documents"]["total"] == 5)
    first = daemon.get("/v1/documents", params={"limit": 3}).json()
    assert len(first["documents"]) == 3 and first["next_after"]
    rest = daemon.get("/v1/documents", params={"limit": 3, "after": first["next_after"]}).json()
    assert len(rest["documents"]) == 2 and rest["next_after"] is None
    doc = first["documents"][0]
    assert doc["status"] == "stored" and doc["kind"] == "text"
    stored = daemon.data_dir / "documents" / doc["sha256"][:2] / f"{doc['sha256']}.txt"
    assert stored.read_text() == "document number 0\n"


def test_hostile_numbers_and_bodies_are_400_with_the_error_shape(daemon: DaemonProc) -> None:
    huge = str(10**30)
    answers = [
        daemon.get(f"/v1/jobs/{huge}"),
        daemon.get("/v1/documents", params={"after": huge}),
        daemon.get("/v1/documents", params={"limit": huge}),
        daemon.get("/v1/jobs", params={"limit": "-1"}),
        daemon.get("/v1/events", params={"since": huge}),
        daemon.client.post(
            "/v1/jobs",
            content=b'{"kind": "test.sleep", "params": {"x": NaN}}',
            headers={"Content-Type": "application/json"},
        ),
        daemon.client.post(
            "/v1/jobs",
            content=b'{"kind": "test.sleep", "params": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
            headers={"Content-Type": "application/json"},
        ),
        daemon.client.post(
            "/v1/ingest",
            content=b'{"paths": ' + b"[" * 50 + b"]" * 50 + b"}",
            headers={"Content-Type": "application/json"},
        ),
    ]
    for resp in answers:
        assert resp.status_code == 400, (resp.request.url, resp.text[:200])
        assert set(resp.json()["error"]) == {"code", "message"}
    assert daemon.get("/v1/jobs").json()["jobs"] == []  # nothing was stored
    assert daemon.status()["jobs"]["queued"] == 0


def test_idle_and_half_open_connections_are_closed_and_capped(make_daemon) -> None:
    """A client that connects and says nothing, or half a request, is closed after the idle
    timeout; past the connection cap a new connection gets a 503 at once, and the API keeps
    answering."""
    d = make_daemon(api={"idle_timeout_seconds": 1.0, "max_connections": 20}).start()
    silent = [_connect(d.socket) for _ in range(15)]
    half = _connect(d.socket)
    half.sendall(b"GET /v1/status HTTP/1.1\r\nHost: aicoderd\r\n")  # never finished
    held = [*silent, half]
    extra = [_connect(d.socket) for _ in range(8)]  # 24 in all: the last ones are refused
    refused = [c for c in extra if c.recv(4096).startswith(b"HTTP/1.1 503")]
    assert len(refused) >= 4
    t0 = time.monotonic()
    for c in held:  # the daemon hangs up (at most with an error answer): then EOF
        c.settimeout(10)
        first = c.recv(4096)
        assert first == b"" or first.startswith(b"HTTP/1.1 4"), first[:60]
        while first:
            first = c.recv(4096)
    assert time.monotonic() - t0 < 8
    assert d.status()["version"]  # and it still answers
    for c in held + extra:
        c.close()


def _connect(path: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(str(path))
    return s


def test_a_burst_of_connects_is_queued_not_dropped(make_daemon) -> None:
    """Hundreds of clients connecting at once (editor plugins, scripts) all get in line: the
    listen backlog holds them until the daemon accepts (past the cap they get a 503)."""
    d = make_daemon().start()
    clients, dropped = [], 0
    for _ in range(400):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.setblocking(False)  # a full backlog fails a non-blocking connect at once (EAGAIN)
        try:
            s.connect(str(d.socket))
        except BlockingIOError:
            dropped += 1
        clients.append(s)
    assert dropped == 0
    for s in clients:
        s.close()
    assert d.status()["version"]
