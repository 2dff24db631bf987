"""Latencies: drop-to-stored, and GET /v1/status (idle and during an ingest burst).

1. Drop-to-stored. 200 small files dropped at a steady 20 files/s, each written under a
   dot-name and renamed into the inbox (so the drop time is the rename, exactly). A file is
   "stored" when it leaves the inbox: in consume mode that happens only after its content and
   the database commit are durable. The inbox is listed every 5 ms. Done with the default
   settle_seconds (3.0) and a short one (0.5). Target: p95 <= settle + 1 s.
2. GET /v1/status round trips: ~500 on an idle daemon, then from a second process while a burst
   of 5,000 small files is ingested (status and the baseline route alternate every 10 ms).
   Target: status p99 <= 20 ms during the burst.
   Baseline: GET /v1/jobs/1 (a 404, the cheapest route) on the same kind of keep-alive httpx
   connection, and the same requests on a raw socket without httpx.
3. 200 parallel clients (two client processes of 100 asyncio connections each, keep-alive,
   each alternating GET /v1/status and the 404 baseline with 10 ms pauses), for 5 s on an idle
   daemon and then during another 5,000-file burst. Target: status p99 <= 50 ms during the
   burst.

Run: .venv/bin/python benchmarks/latency.py
"""

from __future__ import annotations

import multiprocessing
import os
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
from _harness import (
    Daemon,
    RawHttp,
    drop_all,
    percentile,
    small_file,
    verdict,
    wait_for,
    wait_ingested,
)

DROP_RATE = 20.0  # files per second
DROP_COUNT = 200
SETTLES = (3.0, 0.5)
POLL = 0.005  # inbox listing interval
STATUS_REQUESTS = 500
BURST_FILES = 5000
BURST_SETTLE = 0.5
BURST_GAP = 0.01  # pause between two requests of the sampler thread
STATUS_P99_TARGET_MS = 20.0


def files(n: int, seed: int, prefix: str) -> list[tuple[str, bytes]]:
    rng = random.Random(seed)
    return [(f"{prefix}_{i:05d}.py", small_file(rng, seed * 100_000 + i)) for i in range(n)]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f} ms"


# -- 1. drop-to-stored -------------------------------------------------------------------------


def drop_steadily(d: Daemon, batch: list[tuple[str, bytes]], dropped: dict[str, float]) -> None:
    start = time.monotonic()
    for i, (name, data) in enumerate(batch):
        delay = start + i / DROP_RATE - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        tmp = d.inbox / f".{name}.tmp"
        tmp.write_bytes(data)
        os.rename(tmp, d.inbox / name)
        dropped[name] = time.monotonic()


def watch_inbox(d: Daemon, dropped: dict[str, float], n: int, timeout: float) -> dict[str, float]:
    """When each dropped file left the inbox (5 ms resolution)."""
    gone: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while len(gone) < n and time.monotonic() < deadline:
        known = dict(dropped)  # before the listing: every name in it was renamed in already
        present = set(os.listdir(d.inbox))
        now = time.monotonic()
        for name in known.keys() - present - gone.keys():
            gone[name] = now
        time.sleep(POLL)
    return gone


def drop_to_stored(settle: float) -> None:
    batch = files(DROP_COUNT, seed=int(settle * 10) + 1, prefix="drop")
    with Daemon({"ingest": {"settle_seconds": settle}}, name="latency") as d:
        d.start()
        dropped: dict[str, float] = {}
        dropper = threading.Thread(target=drop_steadily, args=(d, batch, dropped))
        dropper.start()
        timeout = DROP_COUNT / DROP_RATE + settle + 60
        gone = watch_inbox(d, dropped, DROP_COUNT, timeout)
        dropper.join()
        docs = wait_for(lambda: _settled(d, DROP_COUNT), timeout=30)
    lat = [gone[name] - dropped[name] for name in gone]
    target = settle + 1.0
    p95 = percentile(lat, 95)
    print(f"  settle_seconds={settle}: {len(lat)}/{DROP_COUNT} files stored", end="")
    print(f" (documents.total={docs['total']}, failed={docs['failed']})")
    print(f"    p50 {ms(percentile(lat, 50))}   p95 {ms(p95)}   max {ms(max(lat, default=0))}")
    print(f"    target p95 <= settle + 1 s = {target:.1f} s: {verdict(p95 <= target)}")


def _settled(d: Daemon, n: int) -> dict[str, int] | None:
    docs: dict[str, int] = d.status()["documents"]
    return docs if docs["total"] + docs["failed"] >= n and docs["pending"] == 0 else None


# -- 2. status latency -------------------------------------------------------------------------


def timed(call: Callable[[], object], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        call()
        out.append(time.perf_counter() - t0)
    return out


def httpx_get(client: httpx.Client, path: str, code: int) -> Callable[[], object]:
    def call() -> object:
        resp = client.get(path)
        if resp.status_code != code:
            raise RuntimeError(f"GET {path}: {resp.status_code} {resp.text[:200]}")
        return resp.content

    return call


def raw_get(raw: RawHttp, path: str, code: int) -> Callable[[], object]:
    def call() -> object:
        status, body = raw.get(path)
        if status != code:
            raise RuntimeError(f"raw GET {path}: {status}")
        return body

    return call


def report(label: str, lat: list[float]) -> None:
    p50, p99 = percentile(lat, 50), percentile(lat, 99)
    print(f"    {label:<42} n={len(lat):4d}  p50 {ms(p50)}  p99 {ms(p99)}  max {ms(max(lat))}")


def ratio(label: str, status: list[float], base: list[float]) -> None:
    r50 = percentile(status, 50) / percentile(base, 50)
    r99 = percentile(status, 99) / percentile(base, 99)
    print(f"    {label:<42} p50 {r50:5.1f}x   p99 {r99:5.1f}x")


def idle_status(d: Daemon, what: str) -> None:
    print(f"  idle, {what}:")
    with d.client() as client:
        raw = RawHttp(d.socket)
        try:
            timed(httpx_get(client, "/v1/status", 200), 20)  # warm-up
            status = timed(httpx_get(client, "/v1/status", 200), STATUS_REQUESTS)
            base = timed(httpx_get(client, "/v1/jobs/1", 404), STATUS_REQUESTS)
            raw_status = timed(raw_get(raw, "/v1/status", 200), STATUS_REQUESTS)
            raw_base = timed(raw_get(raw, "/v1/jobs/1", 404), STATUS_REQUESTS)
        finally:
            raw.close()
    report("GET /v1/status (httpx)", status)
    report("baseline GET /v1/jobs/1 404 (httpx)", base)
    report("GET /v1/status (raw socket)", raw_status)
    report("baseline GET /v1/jobs/1 404 (raw socket)", raw_base)
    ratio("ratio status/baseline (httpx)", status, base)


def sample(socket: str, total: int, stop: Any, out: Any) -> None:
    """Alternates GET /v1/status and GET /v1/jobs/1 until told to stop; keeps the samples
    taken while the burst was still being ingested (by the status answer itself). Runs in its
    own process, so the dropping writer's GIL does not delay the client."""
    status: list[float] = []
    base: list[float] = []
    transport = httpx.HTTPTransport(uds=socket)
    with httpx.Client(transport=transport, base_url="http://aicoderd", timeout=30) as client:
        while not stop.is_set():
            t0 = time.perf_counter()
            resp = client.get("/v1/status")
            lat = time.perf_counter() - t0
            docs = resp.json()["documents"]
            busy = docs["total"] < total or docs["pending"] > 0
            time.sleep(BURST_GAP)
            t0 = time.perf_counter()
            client.get("/v1/jobs/1")
            if busy:
                status.append(lat)
                base.append(time.perf_counter() - t0)
            time.sleep(BURST_GAP)
    out.put((status, base))


def burst_status(d: Daemon) -> None:
    batch = files(BURST_FILES, seed=7, prefix="burst")
    ctx = multiprocessing.get_context("spawn")
    stop, out = ctx.Event(), ctx.Queue()
    proc = ctx.Process(target=sample, args=(str(d.socket), BURST_FILES, stop, out))
    proc.start()
    time.sleep(1.0)  # the sampler's interpreter is up before the burst starts
    t0 = time.perf_counter()
    try:
        drop_all(d.inbox, batch)
        wait = wait_ingested(d, BURST_FILES, t0, stall=15.0, interval=0.2)
    finally:
        stop.set()
        status, base = out.get(timeout=60)
        proc.join()
    print(f"  during a burst of {BURST_FILES} files (settle_seconds={BURST_SETTLE}):")
    if wait.done:
        print(f"    all stored in {wait.elapsed:.1f} s = {BURST_FILES / wait.elapsed:.0f} files/s")
    else:
        print(
            f"    STALLED: {wait.total} stored, {wait.stranded} files left in the inbox with"
            f" nothing pending (no progress after {wait.last_progress:.1f} s)"
        )
    report("GET /v1/status (httpx)", status)
    report("baseline GET /v1/jobs/1 404 (httpx)", base)
    ratio("ratio status/baseline (httpx)", status, base)
    met = percentile(status, 99) * 1000 <= STATUS_P99_TARGET_MS
    print(f"    target status p99 <= {STATUS_P99_TARGET_MS:.0f} ms: {verdict(met)}")


PARALLEL_CLIENTS = 200
CLIENT_PROCESSES = 2
PARALLEL_P99_TARGET_MS = 50.0


async def _client(
    path: str, stop_at: float, busy: Any, out: list[tuple[str, float, bool]], errors: list[str]
) -> None:
    """One keep-alive connection, requests back to back with a short pause; a connection the
    daemon closes (or refuses) is counted and opened again."""
    import asyncio

    routes = ("/v1/status", "/v1/jobs/1")
    i = 0
    while time.monotonic() < stop_at:
        try:
            reader, writer = await asyncio.open_unix_connection(path)
        except OSError as exc:
            errors.append(f"connect: {exc}")
            await asyncio.sleep(0.1)
            continue
        try:
            while time.monotonic() < stop_at:
                route = routes[i % 2]
                i += 1
                t0 = time.perf_counter()
                writer.write(f"GET {route} HTTP/1.1\r\nHost: aicoderd\r\n\r\n".encode())
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
                await reader.readexactly(length)
                if not head.startswith(b"HTTP/1.1 200") and route == "/v1/status":
                    errors.append(head.split(b"\r\n")[0].decode())
                out.append((route, time.perf_counter() - t0, bool(busy.is_set())))
                await asyncio.sleep(BURST_GAP)
        except (OSError, asyncio.IncompleteReadError, StopIteration) as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            writer.close()


def parallel_clients(path: str, clients: int, seconds: float, busy: Any, out: Any) -> None:
    """One client process: ``clients`` connections at once for ``seconds``."""
    import asyncio

    samples: list[tuple[str, float, bool]] = []
    errors: list[str] = []

    async def run() -> None:
        stop_at = time.monotonic() + seconds
        await asyncio.gather(
            *(_client(path, stop_at, busy, samples, errors) for _ in range(clients))
        )

    asyncio.run(run())
    out.put((samples, errors))


def parallel_status(d: Daemon, burst: bool) -> None:
    ctx = multiprocessing.get_context("spawn")
    busy, out = ctx.Event(), ctx.Queue()
    seconds = 5.0
    if burst:
        busy.set()
        seconds = 120.0  # cut short below, once the burst is stored
    procs = [
        ctx.Process(
            target=parallel_clients,
            args=(str(d.socket), PARALLEL_CLIENTS // CLIENT_PROCESSES, seconds, busy, out),
        )
        for _ in range(CLIENT_PROCESSES)
    ]
    for proc in procs:
        proc.start()
    time.sleep(1.0)
    wait = None
    if burst:
        batch = files(BURST_FILES, seed=11, prefix="parallel")
        t0 = time.perf_counter()
        drop_all(d.inbox, batch)
        wait = wait_ingested(d, 2 * BURST_FILES, t0, stall=15.0, interval=0.2)
        busy.clear()
    samples: list[tuple[str, float, bool]] = []
    errors: list[str] = []
    for _ in procs:
        got, failed = out.get(timeout=300)
        samples += got
        errors += failed
    for proc in procs:
        proc.join()
    keep = [(r, lat) for r, lat, b in samples if b == burst]
    status = [lat for r, lat in keep if r == "/v1/status"]
    base = [lat for r, lat in keep if r != "/v1/status"]
    what = "during a burst of 5,000 files" if burst else "idle"
    print(f"  {PARALLEL_CLIENTS} clients at once, {what}:")
    if wait is not None and wait.done:
        print(f"    burst stored in {wait.elapsed:.1f} s")
    report("GET /v1/status", status)
    report("baseline GET /v1/jobs/1 404", base)
    ratio("ratio status/baseline", status, base)
    if errors:
        print(f"    {len(errors)} connections failed or closed, e.g. {errors[0]}")
    if burst:
        met = percentile(status, 99) * 1000 <= PARALLEL_P99_TARGET_MS
        print(f"    target status p99 <= {PARALLEL_P99_TARGET_MS:.0f} ms: {verdict(met)}")


def main() -> None:
    print(f"latency on {os.cpu_count()} cores")
    print(f"1. drop-to-stored: {DROP_COUNT} files at {DROP_RATE:.0f}/s (temp name + rename)")
    for settle in SETTLES:
        drop_to_stored(settle)
    print("2. GET /v1/status round trips (keep-alive connection)")
    with Daemon({"ingest": {"settle_seconds": BURST_SETTLE}}, name="status") as d:
        d.start()
        idle_status(d, "empty store")
        burst_status(d)
        time.sleep(1.0)
        idle_status(d, f"{BURST_FILES} documents stored")
        print(f"3. {PARALLEL_CLIENTS} parallel clients")
        parallel_status(d, burst=False)
        parallel_status(d, burst=True)


if __name__ == "__main__":
    main()
