"""Git source sync of a generated 5,000-file repository: the first sync and the incremental sync
after a 10-file commit.

The repository is made in a temp dir with the git CLI: 5,000 distinct Python files (~1.5 KB
each) in 50 packages, one commit. The real daemon runs the source (``enabled: false``, so only
this script's ``POST /v1/sources/repo/fetch`` starts it); the clock runs from that request
until the ``source.fetch`` job is final (polled every 50 ms; the job's own started → finished
time is printed too).

1. First sync: clone (bare, partial) + every file read, classified and stored → files/s.
2. A commit touching 10 files (5 changed, 3 added, 2 deleted), then a sync: only those are read;
   the script checks the counts. Reported as the time ratio incremental / first.
3. A sync with nothing new: the fetch and the bookkeeping alone.

Baseline: git alone, i.e. the same bare partial clone plus ``ls-tree -r`` and ``cat-file
--batch`` of every blob, in this process, without the daemon or the store.

    .venv/bin/python benchmarks/git_sync.py [--files 5000] [--changed 10]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import Daemon

GIT_ENV = {
    **os.environ,
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@example.invalid",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@example.invalid",
}
PACKAGES = 50


def git(cwd: Path, *args: str, input: bytes | None = None) -> bytes:
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=GIT_ENV, input=input, capture_output=True, check=True
    )
    return done.stdout


def module(n: int, version: int = 0) -> str:
    body = "".join(
        f'''

def handler_{n}_{k}(request, *, retries={k + 2}):
    """Answer request kind {k} of module {n} (revision {version})."""
    for attempt in range(retries):
        try:
            return dispatch(request, attempt, scale={n * 7 + k})
        except Transient as exc:
            log.warning("retry %d of %d: %s", attempt, retries, exc)
    raise GaveUp({n}, {k})
'''
        for k in range(4)
    )
    return f'"""Module {n}."""\n\nimport logging\n\nlog = logging.getLogger(__name__)\n{body}'


def make_repo(path: Path, files: int) -> None:
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "uploadpack.allowFilter", "true")
    for n in range(files):
        target = path / f"pkg{n % PACKAGES}" / f"mod{n}.py"
        target.parent.mkdir(exist_ok=True)
        target.write_text(module(n))
    (path / "LICENSE").write_text("MIT\n")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "initial")


def commit_changes(path: Path, files: int, changed: int) -> dict[str, int]:
    """Change, add and delete files (about half, a third, the rest of ``changed``)."""
    edits, adds = changed // 2, changed // 3
    deletes = changed - edits - adds
    for n in range(edits):
        (path / f"pkg{n % PACKAGES}" / f"mod{n}.py").write_text(module(n, version=1))
    for n in range(files, files + adds):
        (path / f"pkg{n % PACKAGES}" / f"mod{n}.py").write_text(module(n))
    for n in range(files - deletes, files):
        (path / f"pkg{n % PACKAGES}" / f"mod{n}.py").unlink()
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", f"{changed} files")
    return {"added": adds, "updated": edits, "retired": deletes}


def sync(d: Daemon) -> tuple[float, dict[str, Any]]:
    """Queue a fetch, wait for the job; (wall seconds, the job)."""
    t0 = time.perf_counter()
    job = d.client().post("/v1/sources/repo/fetch").json()
    while job["state"] not in ("succeeded", "failed", "cancelled", "skipped"):
        time.sleep(0.05)
        job = d.get(f"/v1/jobs/{job['id']}").json()
    return time.perf_counter() - t0, job


def git_floor(repo: Path) -> float:
    """Bare partial clone + ls-tree + cat-file of every blob: git's share of a first sync."""
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        clone = Path(tmp) / "c.git"
        git(
            Path(tmp),
            "-c",
            "protocol.file.allow=always",
            "clone",
            "-q",
            "--bare",
            "--no-tags",
            "--single-branch",
            "--filter=blob:limit=1048576",
            f"file://{repo}",
            str(clone),
        )
        listing = git(clone, "ls-tree", "-r", "-z", "HEAD").split(b"\0")
        shas = [line.split()[2] for line in listing if line]
        git(clone, "cat-file", "--batch", input=b"\n".join(shas) + b"\n")
        return time.perf_counter() - t0


def report(label: str, wall: float, job: dict[str, Any], files: int | None = None) -> None:
    result = job.get("result") or {}
    in_job = (job["finished"] or 0) - (job["started"] or 0)
    keys = ("added", "updated", "unchanged", "retired", "skipped", "failed")
    counts = {k: result.get(k, 0) for k in keys}
    rate = f", {files / wall:.0f} files/s" if files else ""
    print(f"{label}: {wall:.2f} s wall{rate} (job process {in_job:.2f} s); {job['state']} {counts}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--changed", type=int, default=10)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="aicoderd-gitbench-"))
    try:
        repo = work / "upstream"
        t0 = time.perf_counter()
        make_repo(repo, args.files)
        print(f"repository: {args.files} files, made in {time.perf_counter() - t0:.1f} s")
        source = {"name": "repo", "type": "git", "url": str(repo), "enabled": False}
        with Daemon({"sources": [source]}, name="gitsync") as d:
            d.start()
            first_s, first = sync(d)
            report("first sync", first_s, first, args.files)
            expected = commit_changes(repo, args.files, args.changed)
            incr_s, incr = sync(d)
            report(f"incremental sync after a {args.changed}-file commit", incr_s, incr)
            got = {k: (incr.get("result") or {}).get(k, 0) for k in expected}
            verdict = "as expected" if got == expected else f"EXPECTED {expected}"
            print(f"  changed files seen: {got} ({verdict})")
            noop_s, noop = sync(d)
            report("sync with nothing new", noop_s, noop)
            ratio = incr_s / first_s
            print(f"incremental / first: {ratio:.3f}x time ({1 / ratio:.0f}x faster)")
            stored = d.status()["documents"]["by_source"].get("git:repo", 0)
            print(f"documents stored for the source: {stored}")
        floor_s = git_floor(repo)
        print(
            f"git alone (bare partial clone + ls-tree + cat-file --batch): {floor_s:.2f} s;"
            f" first sync is {first_s / floor_s:.1f}x that"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
