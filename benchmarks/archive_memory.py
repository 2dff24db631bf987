"""Peak memory of the folder worker while it ingests large, highly compressed zip archives.

A generated zip of ~17.6 MB whose 24 members (19 MB of Python-looking text each) expand 27-fold
to ~456 MB: within every default limit (``max_file_bytes`` 20 MiB per file and per member,
``archive_max_total_bytes`` 512 MiB, ``archive_max_ratio`` 100). Each scenario runs a fresh
daemon (consume inbox, ``settle_seconds`` 0.2) and reads the folder worker's VmHWM
(``/proc/<pid>/status``) once every dropped file has left the inbox:

0. baseline: one small Python file (the worker's own footprint, measured in the same run);
1. one archive;
2. four archives dropped at once (the worker's four ingest threads each take one).

Reported: the worker's peak RSS per scenario and its ratio to the baseline.

Run: .venv/bin/python benchmarks/archive_memory.py [--members 24] [--member-mb 19]
"""

from __future__ import annotations

import argparse
import io
import os
import random
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import Daemon, children_of, code_line, drop_all, peak_rss_kb, wait_for

MB = 1e6
SETTLE = 0.2
# Blocks of consecutive lines from a small pool: deflate finds long repeats, ~27-fold.
POOL_LINES = 380
BLOCK_LINES = 16


def member_text(rng: random.Random, pool: list[str], ident: int, nbytes: int) -> bytes:
    out, size = [f"# generated member {ident}\n"], 0
    while size < nbytes:
        start = rng.randrange(len(pool) - BLOCK_LINES)
        block = "".join(pool[start : start + BLOCK_LINES])
        out.append(block)
        size += len(block)
    return "".join(out).encode()[:nbytes]


def make_zip(members: int, member_bytes: int, seed: int = 7) -> tuple[bytes, int]:
    """The archive's bytes and its expanded size."""
    rng = random.Random(seed)
    pool = [code_line(rng) + "\n" for _ in range(POOL_LINES)]
    buf = io.BytesIO()
    expanded = 0
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(members):
            data = member_text(rng, pool, i, member_bytes)
            expanded += len(data)
            zf.writestr(f"pkg/module_{i:03d}.py", data)
    return buf.getvalue(), expanded


def worker_pid(daemon_pid: int) -> int:
    for pid in children_of(daemon_pid):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
        if b"folder_worker" in cmdline:
            return pid
    raise RuntimeError("no folder worker process under the daemon")


@dataclass
class Scenario:
    label: str
    files: list[tuple[str, bytes]]


@dataclass
class Result:
    label: str
    peak_mb: float
    seconds: float
    documents: int
    failed: int


def run(scenario: Scenario) -> Result:
    with Daemon({"ingest": {"settle_seconds": SETTLE}}, name="archive-mem") as d:
        d.start()
        pid = worker_pid(d.pid)
        t0 = time.perf_counter()
        drop_all(d.inbox, scenario.files)

        def drained() -> bool:
            docs = d.status()["documents"]
            left = [n for n in os.listdir(d.inbox) if not n.startswith(".")]
            return not left and docs["pending"] == 0

        wait_for(drained, timeout=900, interval=0.2)
        seconds = time.perf_counter() - t0
        docs = d.status()["documents"]
        return Result(
            scenario.label, peak_rss_kb(pid) / 1024, seconds, docs["total"], docs["failed"]
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=24)
    parser.add_argument("--member-mb", type=float, default=19.0)
    args = parser.parse_args()
    data, expanded = make_zip(args.members, int(args.member_mb * MB))
    print(
        f"archive: {len(data) / MB:.1f} MB, {args.members} members, expands to"
        f" {expanded / MB:.0f} MB ({expanded / len(data):.0f}-fold); load {os.getloadavg()[0]:.2f}"
    )
    small = b"def f():\n    return 1\n"
    scenarios = [
        Scenario("baseline: one small file", [("small.py", small)]),
        Scenario("one archive", [("bundle.zip", data)]),
        Scenario("four archives at once", [(f"bundle{i}.zip", data) for i in range(4)]),
    ]
    results = [run(s) for s in scenarios]
    base = results[0].peak_mb
    for r in results:
        print(
            f"  {r.label:<28} worker peak RSS {r.peak_mb:8.1f} MB  ({r.peak_mb / base:5.2f}x"
            f" baseline)  {r.seconds:6.1f} s  documents {r.documents}, failed {r.failed}"
        )
    print(f"load at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
