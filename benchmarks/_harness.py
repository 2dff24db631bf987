"""Shared benchmark harness: the real daemon as a child process in a temporary directory,
HTTP over its Unix socket, /proc readers, percentiles and generated file contents.

Nothing here reaches the network: the API is a Unix socket and ``OLLAMA_HOST`` points at a
closed local port. Independent of ``tests/`` on purpose.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- waiting -------------------------------------------------------------------------------------


def wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout} s")
        time.sleep(interval)


# -- the daemon ----------------------------------------------------------------------------------


def bench_env(home: Path) -> dict[str, str]:
    """The environment of a child started "like the daemon": private HOME and XDG dirs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AICODER_", "NOTIFY_"))}
    env.pop("JOURNAL_STREAM", None)
    env.update(
        HOME=str(home),
        XDG_RUNTIME_DIR=str(home / "run"),
        XDG_CONFIG_HOME=str(home / "config"),
        XDG_DATA_HOME=str(home / "share"),
        PYTHONPATH=str(ROOT),
        OLLAMA_HOST="127.0.0.1:9",  # nothing listens there: nothing reaches a real Ollama
    )
    return env


class Daemon:
    """A real ``aicoderd`` in its own temp dir (HOME, XDG dirs, data dir, inbox, socket).

    Use as a context manager: the daemon gets SIGTERM and the temp dir is removed on exit.
    """

    def __init__(self, config: dict[str, Any] | None = None, name: str = "bench") -> None:
        self.home = Path(tempfile.mkdtemp(prefix=f"aicoderd-{name}-"))
        (self.home / "run").mkdir(mode=0o700)
        self.data_dir = self.home / "data"
        self.socket = self.home / "run" / "aicoderd" / "aicoderd.sock"
        self.inbox = self.home / "inbox"
        self.log = self.home / "daemon.log"
        self.config_path = self.home / "config.yaml"
        self.config: dict[str, Any] = {
            "data_dir": str(self.data_dir),
            "socket": str(self.socket),
            "log_format": "json",
            "folders": [{"path": str(self.inbox), "mode": "consume"}],
            **(config or {}),
        }
        self.write_config()
        self.proc: subprocess.Popen[bytes] | None = None
        self._client: httpx.Client | None = None

    def write_config(self, **changes: Any) -> None:
        """Update top-level keys (before start) and write the YAML file."""
        self.config.update(changes)
        self.config_path.write_text(yaml.safe_dump(self.config))

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 60) -> Daemon:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "aicoderd", "--config", str(self.config_path)],
                env=bench_env(self.home),
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.home,
            )
        wait_for(self._ready, timeout=timeout)
        return self

    def _ready(self) -> bool:
        """The API answers and the folder watcher is up (the socket is served first)."""
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"daemon exited with {self.proc.returncode}:\n{self.logs()}")
        try:
            resp = self.get("/v1/status")
        except (httpx.TransportError, FileNotFoundError):
            return False
        return resp.status_code == 200 and resp.json()["watcher"] != "none"

    def client(self, timeout: float = 30) -> httpx.Client:
        """A new keep-alive client on the socket (one per thread)."""
        return httpx.Client(
            transport=httpx.HTTPTransport(uds=str(self.socket)),
            base_url="http://aicoderd",
            timeout=timeout,
        )

    def get(self, path: str, **kw: Any) -> httpx.Response:
        if self._client is None:
            self._client = self.client()
        return self._client.get(path, **kw)

    def status(self) -> dict[str, Any]:
        resp = self.get("/v1/status")
        resp.raise_for_status()
        data: dict[str, Any] = resp.json()
        return data

    def stop(self, timeout: float = 60) -> int | None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=10)

    def logs(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def __enter__(self) -> Daemon:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            code = self.stop()
            if code not in (None, 0):
                print(f"  WARNING: the daemon exited with status {code}", file=sys.stderr)
        finally:
            shutil.rmtree(self.home, ignore_errors=True)


def ingest_done(status: dict[str, Any], total: int) -> bool:
    docs = status["documents"]
    return bool(docs["total"] >= total and docs["pending"] == 0)


@dataclass
class IngestWait:
    """How waiting for ``n`` documents ended."""

    done: bool  # documents.total reached n with nothing pending
    elapsed: float  # seconds from ``t0`` to the end of the wait
    total: int  # documents.total at the end
    failed: int
    last_progress: float  # seconds from ``t0`` to the last change of documents.total
    stranded: int  # non-dot files still in the inbox at the end


def wait_ingested(
    d: Daemon,
    n: int,
    t0: float,
    *,
    stall: float = 15.0,
    timeout: float = 900.0,
    interval: float = 0.05,
) -> IngestWait:
    """Poll /v1/status every ``interval`` s until ``n`` documents are stored and nothing is
    pending. Gives up early when the daemon reports nothing pending and documents.total has
    not moved for ``stall`` seconds (files left in the inbox then wait for a periodic rescan)."""
    last_total, last_change = -1, time.perf_counter()
    while True:
        docs = d.status()["documents"]
        now = time.perf_counter()
        if docs["total"] != last_total:
            last_total, last_change = docs["total"], now
        done = docs["total"] >= n and docs["pending"] == 0
        stuck = docs["pending"] == 0 and now - last_change > stall
        if done or stuck or now - t0 > timeout:
            return IngestWait(
                done=done,
                elapsed=now - t0,
                total=docs["total"],
                failed=docs["failed"],
                last_progress=last_change - t0,
                stranded=len(inbox_files(d)),
            )
        time.sleep(interval)


def inbox_files(d: Daemon) -> list[str]:
    return [name for name in os.listdir(d.inbox) if not name.startswith(".")]


# -- raw HTTP on the socket ----------------------------------------------------------------------


class RawHttp:
    """A minimal keep-alive HTTP/1.1 client on a Unix socket: the cheapest possible round trip."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(path))
        self._buf = b""

    def get(self, target: str) -> tuple[int, bytes]:
        self.sock.sendall(f"GET {target} HTTP/1.1\r\nHost: aicoderd\r\n\r\n".encode())
        head = self._read_until(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        code = int(lines[0].split()[1])
        length = next(
            int(v)
            for k, _, v in (line.partition(":") for line in lines[1:])
            if k.strip().lower() == "content-length"
        )
        return code, self._read_exact(length)

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self._buf:
            self._fill()
        head, _, self._buf = self._buf.partition(marker)
        return head

    def _read_exact(self, n: int) -> bytes:
        while len(self._buf) < n:
            self._fill()
        body, self._buf = self._buf[:n], self._buf[n:]
        return body

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self._buf += chunk

    def close(self) -> None:
        self.sock.close()


# -- /proc readers -------------------------------------------------------------------------------


def rss_kb(pid: int) -> int:
    """VmRSS of one process in KiB (0 once it is gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def peak_rss_kb(pid: int) -> int:
    """VmHWM (peak resident set) of one process in KiB."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0
    for line in text.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name is in parentheses and may hold spaces: split after the last ')'.
    return text[text.rindex(")") + 2 :].split()


def children_of(pid: int) -> list[int]:
    """All live descendants of ``pid``."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None:
                parents.setdefault(int(fields[1]), []).append(int(entry))
    out, stack = [], [pid]
    while stack:
        for child in parents.get(stack.pop(), []):
            out.append(child)
            stack.append(child)
    return out


def cpu_seconds(pid: int, with_children: bool = True) -> float:
    """utime + stime of ``pid`` (and of its reaped children: cutime + cstime), plus, with
    ``with_children``, the same for every live descendant."""
    total = 0
    for p in [pid, *(children_of(pid) if with_children else [])]:
        fields = _stat_fields(p)
        if fields is not None:
            # After the name: state ppid ... utime(14) stime(15) cutime(16) cstime(17).
            total += sum(int(fields[i]) for i in (11, 12, 13, 14))
    return total / CLK_TCK


def context_switches(pid: int) -> int:
    """Voluntary + involuntary context switches summed over every thread of ``pid``."""
    total = 0
    with contextlib.suppress(FileNotFoundError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(FileNotFoundError):
                for line in Path(f"/proc/{pid}/task/{tid}/status").read_text().splitlines():
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        total += int(line.split()[1])
    return total


def thread_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except FileNotFoundError:
        return 0


# -- statistics ----------------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """Linear-interpolated percentile (p in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def verdict(ok: bool) -> str:
    return "MET" if ok else "MISSED"


# -- generated content ---------------------------------------------------------------------------

_NAMES = (
    "config", "item", "value", "result", "path", "request", "buffer", "count", "index", "node",
    "parser", "token", "record", "batch", "client", "handler", "offset", "payload", "cache", "row",
)  # fmt: skip
_TEMPLATES = (
    "def {a}_{b}({c}, {d}=None):",
    "    {a} = {b}.get({c!r}, {n})",
    "    if {a} is None or {b} > {n}:",
    "        return {a}[{n}:{m}]",
    "    for {a} in {b}.{c}s():",
    "        {a}.append({b} + {n})",
    "class {A}{B}({C}):",
    '    """Return the {a} of {b} for {c}."""',
    "    {a}_{b} = [{c} for {c} in {d} if {c} % {n}]",
    "    raise ValueError(f'bad {a}: {{{b}}}')",
    "    with open({a}_{b}) as {c}:",
    "        {a}: dict[str, int] = {{{c!r}: {n}}}",
    "import {a}.{b} as {c}",
    "# {a} {b} {c}: {n}",
    "",
)  # fmt: skip


def code_line(rng: random.Random) -> str:
    a, b, c, d = rng.sample(_NAMES, 4)
    n, m = rng.randrange(1000), rng.randrange(1000, 100000)
    return rng.choice(_TEMPLATES).format(
        a=a, b=b, c=c, d=d, A=a.title(), B=b.title(), C=c.title(), n=n, m=m
    )


def small_file(rng: random.Random, ident: int, lo: int = 200, hi: int = 2000) -> bytes:
    """Python-looking text of lo..hi bytes, distinct thanks to its first line."""
    target = rng.randint(lo, hi)
    lines = [f"# generated module {ident}"]
    size = len(lines[0]) + 1
    while size < target:
        line = code_line(rng)
        lines.append(line)
        size += len(line) + 1
    return ("\n".join(lines) + "\n").encode()[:hi]


class LinePool:
    """A few thousand generated lines; large files are random picks from it (fast to make)."""

    def __init__(self, rng: random.Random, size: int = 20_000) -> None:
        self.rng = rng
        self.lines = [code_line(rng) + "\n" for _ in range(size)]

    def big_file(self, ident: int, nbytes: int) -> bytes:
        avg = sum(map(len, self.lines[:1000])) / 1000
        picks = self.rng.choices(self.lines, k=int(nbytes / avg) + 1)
        text = f"# generated large module {ident}\n" + "".join(picks)
        return text.encode()[:nbytes]


def write_atomic(path: Path, data: bytes) -> None:
    """Write under a dot-name beside ``path`` (ignored by the daemon), then rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.rename(tmp, path)


def copy_durably(sources: Iterable[Path], dest_dir: Path) -> None:
    """The I/O floor of durable ingestion: read, write, fsync per file, one directory fsync."""
    for src in sources:
        data = src.read_bytes()
        fd = os.open(dest_dir / src.name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
    dfd = os.open(dest_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


@contextlib.contextmanager
def temp_dir(name: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=f"aicoderd-{name}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def log_events(log_text: str, event: str) -> list[dict[str, Any]]:
    """The daemon's JSON log lines whose ``event`` is ``event``."""
    out = []
    for line in log_text.splitlines():
        if line.startswith("{") and f'"{event}"' in line:
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if record.get("event") == event:
                    out.append(record)
    return out


def drop_all(inbox: Path, files: Sequence[tuple[str, bytes]]) -> None:
    for name, data in files:
        write_atomic(inbox / name, data)


def write_plain(directory: Path, files: Sequence[tuple[str, bytes]]) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in files:
        (directory / name).write_bytes(data)
        paths.append(directory / name)
    return paths
