"""Ingest throughput of a consume-mode inbox, against the I/O floor of durable copying.

(a) 10,000 small files (200-2,000 bytes of distinct Python-looking text) -> files/s
(b) 100 files of 10 MB of distinct line-structured text                   -> MB/s

Each file is dropped with write-under-a-dot-name + rename (the daemon's writer contract), as
fast as this process can. The clock starts at the first write and stops when /v1/status says
``documents.total == N`` and ``pending == 0``; nothing is subtracted (the drop itself, the
settle time and the status polling are all inside). settle_seconds is 0.2; every other
setting is the default (rescan_interval_seconds 300, batch_size 64).

If the daemon stops making progress while files are still in the inbox and it reports nothing
pending (e.g. inotify events were lost), the run is cut after 15 s without progress and
reported as stalled rather than waiting for the 300 s periodic rescan.

Baseline (the I/O floor): the same files, already on disk, copied into another directory with
read + write + fsync per file and one directory fsync at the end; best of two runs.

Run: .venv/bin/python benchmarks/ingest_throughput.py [--small N] [--big N]
"""

from __future__ import annotations

import argparse
import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

from _harness import (
    Daemon,
    IngestWait,
    LinePool,
    children_of,
    copy_durably,
    cpu_seconds,
    drop_all,
    log_events,
    peak_rss_kb,
    small_file,
    temp_dir,
    verdict,
    wait_ingested,
    write_plain,
)

SETTLE = 0.2
STALL = 15.0
SMALL_TARGET_FPS = 500.0
BIG_BYTES = 10_000_000
MB = 1e6

Files = Sequence[tuple[str, bytes]]


@dataclass
class DaemonRun:
    wait: IngestWait
    drop: float
    cpu: float
    peak_rss_mb: float
    children_peak_rss_mb: float  # the folder worker (and multiprocessing's resource tracker)
    batches: int
    overflows: int
    watcher: str


def small_files(n: int, seed: int = 1) -> list[tuple[str, bytes]]:
    rng = random.Random(seed)
    return [(f"mod_{i:05d}.py", small_file(rng, i)) for i in range(n)]


def big_files(n: int, seed: int = 2) -> list[tuple[str, bytes]]:
    pool = LinePool(random.Random(seed))
    return [(f"big_{i:03d}.py", pool.big_file(i, BIG_BYTES)) for i in range(n)]


def floor_seconds(files: Files, runs: int = 2) -> float:
    """Best time to copy the files durably (write + fsync each, one dir fsync)."""
    best = float("inf")
    with temp_dir("floor") as tmp:
        sources = write_plain(tmp / "src", files)
        for i in range(runs):
            dest = tmp / f"dst{i}"
            dest.mkdir()
            os.sync()
            t0 = time.perf_counter()
            copy_durably(sources, dest)
            best = min(best, time.perf_counter() - t0)
    return best


def daemon_run(files: Files) -> DaemonRun:
    with Daemon({"ingest": {"settle_seconds": SETTLE}}, name="ingest") as d:
        d.start()
        watcher = d.status()["watcher"]
        os.sync()
        cpu0 = cpu_seconds(d.pid)
        t0 = time.perf_counter()
        drop_all(d.inbox, files)
        drop = time.perf_counter() - t0
        wait = wait_ingested(d, len(files), t0, stall=STALL)
        cpu = cpu_seconds(d.pid) - cpu0
        logs = d.logs()
        return DaemonRun(
            wait=wait,
            drop=drop,
            cpu=cpu,
            peak_rss_mb=peak_rss_kb(d.pid) / 1024,
            children_peak_rss_mb=children_peak_mb(d.pid),
            batches=len(log_events(logs, "ingest.batch")),
            overflows=len(log_events(logs, "folder.events_lost")),
            watcher=watcher,
        )


def backlog_run(files: Files) -> DaemonRun:
    """The same files already waiting in the inbox when the daemon starts: the daemon's own
    capacity, without the writer competing for the two cores."""
    with Daemon({"ingest": {"settle_seconds": SETTLE}}, name="backlog") as d:
        d.inbox.mkdir(parents=True)
        write_plain(d.inbox, files)
        os.sync()
        t0 = time.perf_counter()
        d.start()
        wait = wait_ingested(d, len(files), t0, stall=STALL)
        return DaemonRun(
            wait=wait,
            drop=0.0,
            cpu=cpu_seconds(d.pid),
            peak_rss_mb=peak_rss_kb(d.pid) / 1024,
            children_peak_rss_mb=children_peak_mb(d.pid),
            batches=len(log_events(d.logs(), "ingest.batch")),
            overflows=0,
            watcher="rescan",
        )


def children_peak_mb(pid: int) -> float:
    return sum(peak_rss_kb(child) for child in children_of(pid)) / 1024


def row(label: str, value: str) -> None:
    print(f"  {label:<44}{value}")


def describe(run: DaemonRun) -> None:
    w = run.wait
    row("dropping the files alone took", f"{run.drop:8.2f} s (inside the wall time)")
    share = 100 * run.cpu / w.elapsed
    row("daemon CPU", f"{run.cpu:8.2f} s ({share:.0f}% of one core over the run)")
    row(
        "daemon peak RSS (VmHWM)",
        f"{run.peak_rss_mb:8.1f} MB (+ {run.children_peak_rss_mb:.1f} MB in its children)",
    )
    avg = w.total / max(run.batches, 1)
    row("ingest batches logged", f"{run.batches:8d} (avg {avg:.1f} files per batch)")
    row("documents.total / failed", f"{w.total:8d} / {w.failed}")
    row("watcher / inotify overflows logged", f"{run.watcher} / {run.overflows}")


def stalled(run: DaemonRun, n: int) -> bool:
    w = run.wait
    if w.done:
        return False
    print(
        f"  STALLED: {w.total} of {n} stored; documents.total last moved at"
        f" {w.last_progress:.1f} s, then nothing for {w.elapsed - w.last_progress:.0f} s with"
        f" pending=0 while {w.stranded} files sit in the inbox (they wait for the periodic"
        " rescan, rescan_interval_seconds=300)"
    )
    return True


def daemon_rate(run: DaemonRun, n: int) -> tuple[float, float]:
    """(files/s, seconds per file): over the whole run, or up to the stall for a cut run."""
    w = run.wait
    seconds, files = (w.elapsed, n) if w.done else (w.last_progress, w.total)
    return files / seconds, seconds / files


def bench_small(n: int) -> None:
    files = small_files(n)
    nbytes = sum(len(b) for _, b in files)
    print(f"(a) {n} small files, {nbytes / MB:.1f} MB in all, settle_seconds={SETTLE}")
    floor = floor_seconds(files)
    run = daemon_run(files)
    fps, per_file = daemon_rate(run, n)
    if stalled(run, n):
        w = run.wait
        row("rate until the stall", f"{fps:8.0f} files/s ({w.total} in {w.last_progress:.2f} s)")
    else:
        row("daemon: first write -> all stored", f"{run.wait.elapsed:8.2f} s = {fps:8.0f} files/s")
    row("I/O floor (write+fsync each)", f"{floor:8.2f} s = {n / floor:8.0f} files/s")
    row("ratio daemon/floor (time per file)", f"{per_file / (floor / n):8.2f}x")
    describe(run)
    met = run.wait.done and fps >= SMALL_TARGET_FPS
    row(f"target >= {SMALL_TARGET_FPS:.0f} files/s (all {n} stored)", verdict(met))
    backlog = backlog_run(files)
    bfps, _ = daemon_rate(backlog, n)
    print(f"(a') the same {n} files already in the inbox at start (no writer competing)")
    row("daemon: start -> all stored", f"{backlog.wait.elapsed:8.2f} s = {bfps:8.0f} files/s")
    row("ratio daemon/floor (time per file)", f"{(floor / n) and (1 / bfps) / (floor / n):8.2f}x")
    row(
        "daemon CPU / peak RSS",
        f"{backlog.cpu:8.2f} s / {backlog.peak_rss_mb:.1f} MB"
        f" (+ {backlog.children_peak_rss_mb:.1f} MB in its children)",
    )
    row(
        f"target >= {SMALL_TARGET_FPS:.0f} files/s",
        verdict(backlog.wait.done and bfps >= SMALL_TARGET_FPS),
    )


def bench_big(n: int) -> None:
    files = big_files(n)
    total = sum(len(b) for _, b in files) / MB
    size = BIG_BYTES / MB
    print(f"(b) {n} files of {size:.0f} MB, {total:.0f} MB in all, settle_seconds={SETTLE}")
    floor = floor_seconds(files)
    run = daemon_run(files)
    _, per_file = daemon_rate(run, n)
    if stalled(run, n):
        row("rate until the stall", f"{size / per_file:8.1f} MB/s")
    else:
        wall = run.wait.elapsed
        row("daemon: first write -> all stored", f"{wall:8.2f} s = {total / wall:8.1f} MB/s")
    row("I/O floor (write+fsync each)", f"{floor:8.2f} s = {total / floor:8.1f} MB/s")
    row("ratio daemon/floor (time per file)", f"{per_file / (floor / n):8.2f}x")
    describe(run)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", type=int, default=10_000, help="small files (0: skip)")
    parser.add_argument("--big", type=int, default=100, help="10 MB files (0: skip)")
    args = parser.parse_args()
    print(f"ingest throughput on {os.cpu_count()} cores; MB = 10^6 bytes; nothing subtracted")
    if args.small:
        bench_small(args.small)
    if args.big:
        bench_big(args.big)


if __name__ == "__main__":
    main()
