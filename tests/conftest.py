"""Shared fixtures: the real daemon as a child process, in temporary XDG directories, talked to
over its real Unix socket."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
HELPERS = Path(__file__).resolve().parent / "helpers"


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


class DaemonProc:
    """A real ``aicoderd`` process with its own HOME, XDG dirs, config and socket."""

    def __init__(self, home: Path, config: dict[str, Any]) -> None:
        self.home = home
        self.config_path = home / "config.yaml"
        self.runtime = home / "run"
        self.runtime.mkdir(mode=0o700, exist_ok=True)
        self.data_dir = home / "data"
        self.socket = self.runtime / "aicoderd" / "aicoderd.sock"
        self.inbox = home / "inbox"
        self.config = {
            "data_dir": str(self.data_dir),
            "socket": str(self.socket),
            "log_format": "json",
            "folders": [{"path": str(self.inbox), "mode": "consume"}],
            "ingest": {"settle_seconds": 0.3, "rescan_interval_seconds": 60},
            "feedback": {"poll_interval_seconds": 0.2},
            "jobs": {"cancel_grace_seconds": 2, "plugins": ["jobs_plugin"]},
            **config,
        }
        self.write_config(self.config)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = home / "daemon.log"
        self._client: httpx.Client | None = None

    def write_config(self, config: dict[str, Any]) -> None:
        self.config_path.write_text(yaml.safe_dump(config))

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AICODER_", "NOTIFY_"))}
        env.update(
            HOME=str(self.home),
            XDG_RUNTIME_DIR=str(self.runtime),
            XDG_CONFIG_HOME=str(self.home / "config"),
            XDG_DATA_HOME=str(self.home / "share"),
            PYTHONPATH=os.pathsep.join([str(HELPERS), str(ROOT)]),
            OLLAMA_HOST="127.0.0.1:9",  # nothing listens there: no test reaches a real Ollama
        )
        return env

    def start(self, extra_env: dict[str, str] | None = None, wait: bool = True) -> DaemonProc:
        env = {**self.env, **(extra_env or {})}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "aicoderd", "--config", str(self.config_path)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if wait:
            wait_for(self._ready, timeout=30)
        return self

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{self.logs()}")
        try:
            return self.get("/v1/status").status_code == 200
        except (httpx.TransportError, FileNotFoundError):
            return False

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(
                transport=httpx.HTTPTransport(uds=str(self.socket)),
                base_url="http://aicoderd",
                timeout=30,
            )
        return self._client

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.client.get(path, **kw)

    def status(self) -> dict[str, Any]:
        resp = self.get("/v1/status")
        assert resp.status_code == 200, resp.text
        data: dict[str, Any] = resp.json()
        return data

    def wait_idle(self, timeout: float = 60) -> dict[str, Any]:
        """Until nothing is pending in any folder, twice in a row."""

        def idle() -> bool:
            return self.status()["documents"]["pending"] == 0

        wait_for(lambda: idle() and (time.sleep(0.4) or idle()), timeout=timeout)
        return self.status()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        assert self.proc is not None
        if self._client is not None:
            self._client.close()
            self._client = None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout=timeout)
        return code

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)
        if self._client is not None:
            self._client.close()
            self._client = None

    def logs(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def log_events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.logs().splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    out.append(json.loads(line))
        return out

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "aicoderd.cli.main", "--socket", str(self.socket), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


@pytest.fixture
def make_daemon(tmp_path: Path) -> Iterator[Callable[..., DaemonProc]]:
    started: list[DaemonProc] = []

    def factory(**config: Any) -> DaemonProc:
        home = tmp_path / f"home{len(started)}"
        home.mkdir()
        d = DaemonProc(home, config)
        started.append(d)
        return d

    yield factory
    for d in started:
        if d.proc is not None and d.proc.poll() is None:
            d.stop(signal.SIGKILL)


@pytest.fixture
def daemon(make_daemon: Callable[..., DaemonProc]) -> DaemonProc:
    return make_daemon().start()
