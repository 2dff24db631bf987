"""``aicoder corpus build/stats`` as real processes, including a kill -9 in the middle."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
from pathlib import Path

import datasets
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
STDLIB = Path(sysconfig.get_paths()["stdlib"])


def env() -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("AICODER_")}
    e.update(PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    return e


def aicoder(*args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    pre = ["--config", str(config)] if config else []
    return subprocess.run(
        [sys.executable, "-m", "aicoderd.cli.main", *pre, *args],
        env=env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def start_build(inputs: list[Path], out: Path, config: Path) -> subprocess.Popen[str]:
    args = ["--config", str(config), "corpus", "build", "--out", str(out), "--input"]
    return subprocess.Popen(
        [sys.executable, "-m", "aicoderd.cli.main", *args, *map(str, inputs)],
        env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[Path, Path]:
    """A small first input and a larger second one (standard library modules)."""
    small, large = tmp_path / "small", tmp_path / "large"
    small.mkdir()
    for name in ("json/decoder.py", "json/encoder.py", "textwrap.py"):
        shutil.copy(STDLIB / name, small / Path(name).name)
    shutil.copytree(STDLIB / "email", large, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("argparse.py", "typing.py", "inspect.py", "pathlib.py", "difflib.py"):
        shutil.copy(STDLIB / name, large / name)
    return small, large


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    # Small batches: a build makes progress in many steps, so a kill lands in the middle.
    path.write_text(yaml.safe_dump({"corpus": {"batch_bytes": "16KiB"}}))
    return path


def test_build_then_stats(tmp_path: Path, inputs: tuple[Path, Path], config: Path) -> None:
    small, _ = inputs
    out = tmp_path / "out"
    built = aicoder("corpus", "build", "--json", "--input", str(small), "--out", str(out))
    assert built.returncode == 0, built.stderr
    manifest = json.loads(built.stdout)
    assert manifest["documents"] == 3
    stats = aicoder("corpus", "stats", "--json", str(out))
    assert stats.returncode == 0 and json.loads(stats.stdout) == manifest
    human = aicoder("corpus", "stats", str(out))
    assert f"snapshot {manifest['snapshot']}" in human.stdout and "3 documents" in human.stdout
    (small / "tiny.py").write_text("x = 1\n")
    again = aicoder("corpus", "build", "--input", str(small), "--out", str(out))
    assert again.returncode == 0, again.stderr
    removed = aicoder("corpus", "stats", "--removed", "--json", str(out))
    assert [(r["reason"], Path(r["uri"]).name) for r in json.loads(removed.stdout)] == [
        ("quality.min_chars", "tiny.py")
    ]
    unchanged = aicoder("corpus", "build", "--input", str(small), "--out", str(out))
    assert unchanged.stdout.startswith(f"corpus in {out} is up to date\n")
    missing = aicoder("corpus", "stats", str(tmp_path / "nothing"))
    assert missing.returncode == 1 and "no corpus snapshot" in missing.stderr


def snapshot_of(out: Path) -> tuple[str, int, bytes]:
    """(snapshot id, dataset rows, text) of what a reader sees now; fails if unreadable."""
    manifest = json.loads((out / "manifest.json").read_text())
    rows = datasets.load_from_disk(str(out / "dataset"))
    assert len(rows) == manifest["documents"]
    return manifest["snapshot"], len(rows), (out / "preprocessed_corpus.txt").read_bytes()


@pytest.mark.parametrize("phase", ["processing documents", "writing the dataset"])
def test_kill_9_mid_build_keeps_a_whole_snapshot(
    tmp_path: Path, inputs: tuple[Path, Path], config: Path, phase: str
) -> None:
    small, large = inputs
    out = tmp_path / "out"
    assert aicoder("corpus", "build", "--input", str(small), "--out", str(out)).returncode == 0
    before = snapshot_of(out)
    proc = start_build([small, large], out, config)
    assert proc.stderr is not None
    for line in proc.stderr:
        if phase in line:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the build ended before the kill"
    now = snapshot_of(out)
    if phase == "processing documents":
        assert now == before  # nothing of the interrupted build is visible
    else:
        assert now == before or now[1] > before[1]  # the old snapshot or the new, whole
    done = aicoder(
        "corpus", "build", "--json", "--input", str(small), str(large), "--out", str(out)
    )
    assert done.returncode == 0, done.stderr
    fresh = tmp_path / "fresh"
    aicoder("corpus", "build", "--input", str(small), str(large), "--out", str(fresh))
    assert snapshot_of(out)[1:] == snapshot_of(fresh)[1:]
    leftovers = [p.name for p in (out / "snapshots").iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []
