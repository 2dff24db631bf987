"""Secret redaction: recall and false positives on the labelled set, and what the detector
costs a corpus build — the current detector against the one before it, in the same run.

1. The labelled set (``tests/data/secrets/cases.yaml``, values made at run time by
   ``tests/helpers/secret_cases.py``): a secret counts as found when every character of it
   was replaced; a look-alike counts as a false positive when anything in its text changed.
   Reported per kind and overall, for both detectors.
2. ``aicoder corpus build`` on the material of ``corpus_throughput.py`` (``--mb`` MB, default
   200), in a child pinned to one CPU, alternating the detector before and the current one
   (``--rounds`` times each). The detector before is the ``aicoderd/corpus/secrets.py`` of
   ``--before`` (git), loaded into the child in place of the current step; URIs are then
   recorded as they are, as that code did. A small build first fills Kingfisher's rule cache
   (the one-off compile is reported apart). Prints the wall time of each build, the secrets
   step's own seconds, the child's CPU time (user + system: less sensitive than the wall
   time to other load on the machine), the ratios current/before of the medians and of the
   best runs (target: at most 1.10 for the whole build), and the load average.

    .venv/bin/python benchmarks/secrets_recall.py [--mb 200] [--rounds 2] [--skip-build]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import subprocess
import sys
import time
import types
from collections import Counter
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _harness import ROOT, bench_env, temp_dir
from corpus_throughput import _CHILD, MB, material, run_pinned, variants, write_prefix

from aicoderd.corpus import secrets
from aicoderd.corpus.steps import STEPS
from tests.helpers.secret_cases import MARK, Case, load, replaced

# The detector before Kingfisher: the tree this work started from.
BEFORE = "63c665b"

Redact = Callable[[str], str]

# Loads the detector before in the child, in place of the current step.
_BEFORE_PREFIX = """
import sys, types
from pathlib import Path
import aicoderd.corpus.build as build
_m = types.ModuleType("aicoderd.corpus.secrets_before")
sys.modules[_m.__name__] = _m
exec(compile(Path({source!r}).read_text(), "secrets_before.py", "exec"), _m.__dict__)
build.redact_strings = lambda values, placeholder: values
"""


def load_before(rev: str, into: Path) -> tuple[types.ModuleType, Path]:
    """The secrets module of ``rev``, loaded under another name; the current step stays
    registered."""
    source = subprocess.run(
        ["git", "show", f"{rev}:aicoderd/corpus/secrets.py"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    path = into / "secrets_before.py"
    path.write_text(source)
    module = types.ModuleType("aicoderd.corpus.secrets_before")
    sys.modules[module.__name__] = module
    current = STEPS["secrets"]
    exec(compile(source, str(path), "exec"), module.__dict__)
    STEPS["secrets"] = current
    return module, path


def score(cases: list[Case], redact: Redact) -> dict[str, Counter[str]]:
    """Per kind: secrets ``found``/``secrets``, look-alikes ``flagged``/``benign``."""
    by_kind: dict[str, Counter[str]] = {}
    for case in cases:
        row = by_kind.setdefault(case.kind, Counter())
        out = redact(case.text)
        if case.is_secret:
            row["secrets"] += 1
            row["found"] += replaced(case, out, MARK)
        else:
            row["benign"] += 1
            row["flagged"] += out != case.text
    return by_kind


def print_scores(before: dict[str, Counter[str]], now: dict[str, Counter[str]]) -> None:
    print(f"\n{'kind':<28} {'n':>4} {'before':>8} {'now':>8}")
    sections = (("recall", "secrets", "found"), ("false positives", "benign", "flagged"))
    for label, total, hit in sections:
        print(f"-- {label}")
        for kind in sorted(k for k, row in now.items() if row[total]):
            n = now[kind][total]
            print(f"{kind:<28} {n:>4} {before[kind][hit] / n:>8.1%} {now[kind][hit] / n:>8.1%}")
        n = sum(r[total] for r in now.values())
        b, c = (sum(r[hit] for r in s.values()) for s in (before, now))
        print(f"{'overall':<28} {n:>4} {b / n:>8.1%} {c / n:>8.1%}")


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def build(
    env: dict[str, str], inputs: Path, out: Path, log: Path, prefix: str
) -> tuple[dict[str, float], dict[str, int]]:
    shutil.rmtree(out, ignore_errors=True)
    hwm = out.parent / f"{out.name}.hwm"
    code = prefix + _CHILD.format(hwm=str(hwm))
    cmd = [sys.executable, "-c", code, "corpus", "build", "--json", "--input", str(inputs),
           "--out", str(out)]  # fmt: skip
    wall, _, stdout, cpu = run_pinned(cmd, env, log)
    manifest = json.loads(stdout)
    return {
        "wall": wall,
        "cpu": cpu,
        "secrets": float(manifest["steps"]["secrets"]["seconds"]),
        "redactions": float(sum(manifest["redactions"].values())),
        "documents": float(manifest["documents"]),
    }, manifest["redactions"]


def throughput(mb: int, rounds: int, before_source: Path) -> None:
    rng = random.Random(20260301)
    print(f"\ncollecting material ({mb} MB) ...", flush=True)
    base = material()
    rng.shuffle(base)
    kept, size = [], 0
    for name, data in base:
        if size >= 0.7 * mb * MB:
            break
        kept.append((name, data))
        size += len(data)
    files = kept + variants(kept, mb * MB, rng)
    rng.shuffle(files)
    with temp_dir("secrets-bench") as tmp:
        env = {**bench_env(tmp), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
        inputs = tmp / "in"
        nbytes = write_prefix(files, inputs, mb * MB)
        small = tmp / "small"
        write_prefix(files[:50], small, MB)
        started = time.perf_counter()
        build(env, small, tmp / "warm", tmp / "warm.log", "")
        print(f"rules compiled and cached (first use, small build): "
              f"{time.perf_counter() - started:.1f} s")  # fmt: skip
        prefixes = {"before": _BEFORE_PREFIX.format(source=str(before_source)), "now": ""}
        runs: dict[str, list[dict[str, float]]] = {"before": [], "now": []}
        kinds: dict[str, dict[str, int]] = {}
        print(f"\n{nbytes / MB:.0f} MB, one core; load average at the start {loadavg()}")
        for r in range(rounds):
            for which, prefix in prefixes.items():
                got, kinds[which] = build(
                    env, inputs, tmp / f"out-{which}", tmp / f"{which}.log", prefix
                )
                runs[which].append(got)
                print(f"  round {r + 1} {which:<6}: {got['wall']:6.2f} s end to end, "
                      f"{got['cpu']:6.2f} s CPU "
                      f"({nbytes / MB / got['wall']:.1f} MB/s), secrets step "
                      f"{got['secrets']:.2f} s, {got['redactions']:.0f} redactions, "
                      f"{got['documents']:.0f} documents; load {loadavg()}")  # fmt: skip
        for name, pick in (("median", statistics.median), ("best", min)):
            for key, label in (("wall", "end to end"), ("cpu", "CPU"), ("secrets", "secrets step")):
                t = {w: pick(g[key] for g in runs[w]) for w in runs}
                print(f"{name} {label}: before {t['before']:.2f} s, now {t['now']:.2f} s, "
                      f"ratio now/before {t['now'] / t['before']:.3f}")  # fmt: skip
        for which, found in kinds.items():
            print(f"redactions by kind, {which}: {dict(sorted(found.items()))}")
        print(f"load average at the end {loadavg()}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=200, help="corpus size for the build timing")
    parser.add_argument("--rounds", type=int, default=2, help="builds of each detector")
    parser.add_argument("--before", default=BEFORE, help="git revision of the detector before")
    parser.add_argument("--skip-build", action="store_true", help="the labelled set only")
    args = parser.parse_args()
    cases = load()
    n_secrets = sum(c.is_secret for c in cases)
    kinds = len({c.kind for c in cases if c.is_secret})
    print(f"labelled set: {n_secrets} secrets of {kinds} kinds, "
          f"{len(cases) - n_secrets} look-alikes")  # fmt: skip
    with temp_dir("secrets-before") as tmp:
        before, before_source = load_before(args.before, tmp)
        print_scores(
            score(cases, lambda t: before.redact(t, MARK)[0]),
            score(cases, lambda t: secrets.redact(t, MARK)[0]),
        )
        if not args.skip_build:
            throughput(args.mb, args.rounds, before_source)
    return 0


if __name__ == "__main__":
    sys.exit(main())
