"""Corpus build throughput and memory on >= 200 MB of mixed text and code, on one core.

Material is local: every ``.py`` file of the installed Python (standard library and site
packages) and every ``.md``/``.rst``/``.txt``/``.html`` file found under it and the project's
virtualenv, de-duplicated by content, shuffled with a fixed seed, then topped up to the target
size with variants so that the near-duplicate pass has real work: copies with 3 % of their
lines dropped and one line added (near duplicates), and copies with trailing spaces (exact
duplicates once whitespace is ignored). Corpora of 50, 100 and 200 MB are prefixes of the same
list, so each contains the smaller one.

Each size is built from scratch by ``aicoder corpus build`` as a child process pinned to one
CPU (``sched_setaffinity``): wall time end to end (process start, imports, reading, every step,
writing the text file and the dataset), the build's own per-step times from its manifest, and
the child's own peak RSS (its ``VmHWM``, written at exit). Baseline: the I/O floor, reading the same
files and writing them out once as one text file.

    .venv/bin/python benchmarks/corpus_throughput.py [--sizes 50 100 200] [--keep DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import ROOT, bench_env, temp_dir, verdict

MB = 1_000_000
TARGET_MB_S = 20.0
TEXT_SUFFIXES = (".md", ".rst", ".txt", ".html")


def material() -> list[tuple[str, bytes]]:
    """(name, content) of local code and text files, each content once."""
    roots = [Path(sysconfig.get_paths()["stdlib"]), ROOT / ".venv"]
    seen: set[bytes] = set()
    out = []
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.suffix not in (".py", *TEXT_SUFFIXES) or not path.is_file():
                continue
            if path.is_symlink() or path.stat().st_size > 2 * MB:
                continue
            data = path.read_bytes()
            digest = hashlib.sha256(data).digest()
            if digest in seen or b"\0" in data[:8192]:
                continue
            seen.add(digest)
            out.append((f"{len(out):06d}{path.suffix}", data))
    return out


def variants(
    files: list[tuple[str, bytes]], total: int, rng: random.Random
) -> list[tuple[str, bytes]]:
    """Near and exact duplicates of random files until the list holds ``total`` bytes."""
    size = sum(len(d) for _, d in files)
    extra = []
    while size < total:
        name, data = rng.choice(files)
        if rng.random() < 0.8:
            lines = [ln for ln in data.split(b"\n") if rng.random() >= 0.03]
            lines.insert(rng.randrange(len(lines) + 1), b"# variant %d" % len(extra))
            copy = b"\n".join(lines)
        else:
            copy = data.replace(b"\n", b"  \n")
        stem, suffix = os.path.splitext(name)
        extra.append((f"{stem}-v{len(extra)}{suffix}", copy))
        size += len(copy)
    return extra


def write_prefix(files: list[tuple[str, bytes]], directory: Path, limit: int) -> int:
    directory.mkdir(parents=True)
    written = 0
    for i, (name, data) in enumerate(files):
        if written >= limit:
            break
        sub = directory / f"{i // 1000:03d}"
        sub.mkdir(exist_ok=True)
        (sub / name).write_bytes(data)
        written += len(data)
    return written


# The CLI, reporting its own peak at exit: VmHWM belongs to the process's memory image, which
# exec replaces, while ru_maxrss from wait4 starts from the parent's peak (this script holds the
# generated material, ~400 MiB), so it would hide the build's own figure.
_CHILD = """
import atexit, sys
from pathlib import Path
def _hwm():
    kib = next(l.split()[1] for l in Path("/proc/self/status").read_text().splitlines()
               if l.startswith("VmHWM:"))
    Path({hwm!r}).write_text(kib)
atexit.register(_hwm)
from aicoderd.cli.main import main
sys.argv[0] = "aicoder"
sys.exit(main())
"""


def run_pinned(args: list[str], env: dict[str, str], log: Path) -> tuple[float, int, str, float]:
    """Run on CPU 0 only; (wall seconds, peak RSS in KiB, stdout, CPU seconds)."""
    started = time.perf_counter()
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            args, env=env, stdout=subprocess.PIPE, stderr=err,
            preexec_fn=lambda: os.sched_setaffinity(0, {0}),
        )  # fmt: skip
        assert proc.stdout is not None
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)  # reaped here, so its own rusage is ours
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"build failed ({proc.returncode}):\n{log.read_text()[-3000:]}")
    return wall, usage.ru_maxrss, out.decode(), usage.ru_utime + usage.ru_stime


def io_floor(directory: Path, out: Path) -> float:
    started = time.perf_counter()
    with open(out, "wb") as fh:
        for path in sorted(directory.rglob("*")):
            if path.is_file():
                fh.write(path.read_bytes())
        fh.flush()
        os.fsync(fh.fileno())
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 100, 200], help="MB")
    parser.add_argument("--keep", type=Path, help="keep the generated inputs and corpora here")
    args = parser.parse_args()
    rng = random.Random(20260301)
    print("collecting material ...", flush=True)
    base = material()
    rng.shuffle(base)
    largest = max(args.sizes) * MB
    # Distinct files fill 70 % of the largest corpus, variants of them the rest.
    kept, size = [], 0
    for name, data in base:
        if size >= 0.7 * largest:
            break
        kept.append((name, data))
        size += len(data)
    base = kept
    files = base + variants(base, largest, rng)
    rng.shuffle(files)
    code = sum(len(d) for n, d in files if n.endswith(".py"))
    total = sum(len(d) for _, d in files)
    print(f"material: {len(base)} distinct files, {len(files)} with variants, "
          f"{total / MB:.0f} MB ({100 * code / total:.0f} % code)")  # fmt: skip
    rows = []
    with temp_dir("corpus-bench") as tmp:
        work = args.keep or tmp
        env = {**bench_env(tmp), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
        for size in sorted(args.sizes):
            inputs = work / f"in-{size}"
            out = work / f"corpus-{size}"
            shutil.rmtree(inputs, ignore_errors=True)
            shutil.rmtree(out, ignore_errors=True)
            nbytes = write_prefix(files, inputs, size * MB)
            floor = io_floor(inputs, work / "floor.txt")
            hwm = work / f"hwm-{size}"
            cmd = [sys.executable, "-c", _CHILD.format(hwm=str(hwm)), "corpus", "build", "--json",
                   "--input", str(inputs), "--out", str(out)]  # fmt: skip
            wall, _, stdout, _ = run_pinned(cmd, env, work / f"build-{size}.log")
            rss = int(hwm.read_text())
            manifest = json.loads(stdout)
            rows.append((size, nbytes, wall, rss, floor, manifest))
            print(f"\n== {size} MB: {nbytes / MB:.1f} MB in, {manifest['documents']} documents "
                  f"kept ({manifest['bytes'] / MB:.1f} MB)")  # fmt: skip
            alone = manifest["build"]["seconds"]
            print(f"   end to end {wall:.1f} s = {nbytes / MB / wall:.1f} MB/s on one core; "
                  f"build alone {alone:.1f} s = {nbytes / MB / alone:.1f} MB/s; "
                  f"peak RSS {rss / 1024:.0f} MiB")  # fmt: skip
            print(
                f"   I/O floor (read + write once): {floor:.2f} s = {nbytes / MB / floor:.0f} MB/s"
            )
            b = manifest["build"]
            parts = {f"{k}": v["seconds"] for k, v in manifest["steps"].items()}
            parts |= {"read": b.get("read_seconds", 0.0), "write": b.get("write_seconds", 0.0)}
            print("   per step (s): " + ", ".join(f"{k} {v:.2f}" for k, v in parts.items()))
            print(f"   removed: {manifest['removed']}")
            print(f"   redactions: {manifest['redactions']}")
            if args.keep is None:
                shutil.rmtree(out, ignore_errors=True)
                shutil.rmtree(inputs, ignore_errors=True)
    print("\nsummary (one core, near-dedup on)")
    print(f"{'size':>6} {'MB/s':>7} {'x target':>9} {'x floor':>8} {'peak RSS':>9}")
    for size, nbytes, wall, rss, floor, _ in rows:
        speed = nbytes / MB / wall
        print(f"{size:>4}MB {speed:>7.1f} {speed / TARGET_MB_S:>9.2f} {floor / wall:>8.3f} "
              f"{rss / 1024:>7.0f}Mi")  # fmt: skip
    size, nbytes, wall, *_ = rows[-1]
    met = nbytes / MB / wall >= TARGET_MB_S
    print(f"target >= {TARGET_MB_S:g} MB/s end to end at {size} MB: {verdict(met)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
