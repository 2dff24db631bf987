"""Idle cost: resident memory and CPU of a daemon with nothing to do.

The daemon runs with a default-ish config (one consume inbox, one feedback file, default
settle and poll intervals). After a 10 s settle period, VmRSS is sampled every second and CPU
time (utime + stime from /proc/<pid>/stat, plus reaped and live children) is measured over 60 s.
Targets: idle RSS <= 80 MB, idle CPU <= 0.5 % of one core.

Baseline, started the same way (same interpreter, same environment) and measured over the
same window: a bare ``python -c "import time; time.sleep(...)"``.

Run: .venv/bin/python benchmarks/idle.py [--settle S] [--window S]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

from _harness import (
    Daemon,
    bench_env,
    children_of,
    context_switches,
    cpu_seconds,
    rss_kb,
    thread_count,
    verdict,
)

RSS_TARGET_MB = 80.0
CPU_TARGET_PCT = 0.5


@dataclass
class Usage:
    rss_mb_mean: float
    rss_mb_max: float
    total_rss_mb_max: float  # with its child processes (the folder worker)
    cpu_pct: float
    wakeups_per_s: float
    threads: int
    children: int


class Meter:
    """RSS samples and CPU / context-switch deltas of one process over a window."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.rss: list[int] = []
        self.total: list[int] = []
        self.t0 = time.monotonic()
        self.cpu0 = cpu_seconds(pid)
        self.cs0 = context_switches(pid)

    def sample(self) -> None:
        self.rss.append(rss_kb(self.pid))
        self.total.append(sum(rss_kb(p) for p in [self.pid, *children_of(self.pid)]))

    def result(self) -> Usage:
        wall = time.monotonic() - self.t0
        cpu = cpu_seconds(self.pid) - self.cpu0
        switches = context_switches(self.pid) - self.cs0
        return Usage(
            rss_mb_mean=sum(self.rss) / len(self.rss) / 1024,
            rss_mb_max=max(self.rss) / 1024,
            total_rss_mb_max=max(self.total) / 1024,
            cpu_pct=100 * cpu / wall,
            wakeups_per_s=switches / wall,
            threads=thread_count(self.pid),
            children=len(children_of(self.pid)),
        )


def start_sleeper(d: Daemon) -> subprocess.Popen[bytes]:
    """The baseline: a bare interpreter started like the daemon (same env, cwd, output)."""
    return subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(3600)"],
        env=bench_env(d.home),
        cwd=d.home,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )


def measure(pids: list[int], window: float) -> list[Usage]:
    meters = [Meter(pid) for pid in pids]
    end = time.monotonic() + window
    while time.monotonic() < end:
        for m in meters:
            m.sample()
        time.sleep(min(1.0, max(0.0, end - time.monotonic())))
    return [m.result() for m in meters]


def show(label: str, u: Usage) -> None:
    print(
        f"  {label:<9} RSS mean {u.rss_mb_mean:6.1f} MB  max {u.rss_mb_max:6.1f} MB   "
        f"CPU {u.cpu_pct:6.3f} % of one core   {u.wakeups_per_s:6.1f} context switches/s   "
        f"{u.threads} threads, {u.children} children"
        + (f" (RSS with them, max {u.total_rss_mb_max:.1f} MB)" if u.children else "")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--settle", type=float, default=10.0, help="seconds before measuring")
    parser.add_argument("--window", type=float, default=60.0, help="seconds measured")
    args = parser.parse_args()
    with Daemon(name="idle") as d:
        feedback = d.home / "feedback.jsonl"
        feedback.touch()
        d.write_config(feedback={"files": [str(feedback)]})
        d.start()
        sleeper = start_sleeper(d)
        try:
            print(f"idle cost: settle {args.settle:.0f} s, then {args.window:.0f} s measured")
            print("  daemon config: one consume inbox, one feedback file, default intervals")
            time.sleep(args.settle)
            daemon, bare = measure([d.pid, sleeper.pid], args.window)
        finally:
            sleeper.send_signal(signal.SIGTERM)
            sleeper.wait(timeout=10)
    show("daemon", daemon)
    show("baseline", bare)
    print(f"  daemon - baseline RSS: {daemon.rss_mb_mean - bare.rss_mb_mean:6.1f} MB")
    rss_ok = daemon.rss_mb_max <= RSS_TARGET_MB
    print(f"  target idle RSS <= {RSS_TARGET_MB:.0f} MB (max sample): {verdict(rss_ok)}")
    total_ok = daemon.total_rss_mb_max <= RSS_TARGET_MB
    print(f"  ... counting its folder worker too: {verdict(total_ok)}")
    cpu_ok = daemon.cpu_pct <= CPU_TARGET_PCT
    print(f"  target idle CPU <= {CPU_TARGET_PCT} % of one core: {verdict(cpu_ok)}")
    print(f"  (os.cpu_count() = {os.cpu_count()}; MB = 2^20 bytes)")


if __name__ == "__main__":
    main()
