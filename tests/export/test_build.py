"""Honest states of an export: ``OUT.gguf`` exists only once it passed the parity check (real
llama.cpp), a failing one is ``OUT.gguf.rejected``, an interrupted or killed run leaves no
``*.gguf``, a report never describes another file, and a missing llama-cpp-python is said."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aicoderd.cli.main import main
from aicoderd.errors import ExportError
from aicoderd.export import build as building
from aicoderd.export import export_job as job
from aicoderd.export.build import BuildOptions, build, report_path, verified
from aicoderd.export.inference import INSTALL_HINT
from aicoderd.export.verify import Limits

ROOT = Path(__file__).resolve().parents[2]


def _left(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_verified_export_and_its_report(llama_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.gguf"
    result = build(llama_dir, out, BuildOptions(out_type="f16", verify=True))
    assert result["gguf"] == str(out) and result["verify"]["passed"]
    assert result["verify"]["gguf"] == str(out)  # not the temporary name it was checked under
    assert verified(out) is True
    assert _left(tmp_path) == ["m.gguf", "m.gguf.verify.json"]
    # Written again without the check: the old report no longer describes the file.
    build(llama_dir, out, BuildOptions(out_type="q8_0"))
    assert verified(out) is None and _left(tmp_path) == ["m.gguf"]


def test_failing_export_is_only_rejected(llama_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.gguf"
    build(llama_dir, out, BuildOptions(out_type="f16", verify=True))  # an older, good one
    opts = BuildOptions(out_type="q4_0", verify=True, limits=Limits(quantized_kl=1e-9))
    with pytest.raises(ExportError, match=r"parity check failed for m\.gguf"):
        build(llama_dir, out, opts)
    assert _left(tmp_path) == ["m.gguf.rejected", "m.gguf.verify.json"]
    assert verified(out) is False


def test_interrupted_export_leaves_no_gguf(llama_dir: Path, tmp_path: Path) -> None:
    def stop(done: int, total: int, name: str) -> None:
        if done == 3:
            raise KeyboardInterrupt

    for verify in (False, True):
        with pytest.raises(KeyboardInterrupt):
            build(llama_dir, tmp_path / "m.gguf", BuildOptions(verify=verify), stop)
        assert _left(tmp_path) == []


def test_interrupted_check_leaves_no_gguf(
    llama_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*args: object) -> dict[str, object]:
        raise KeyboardInterrupt  # e.g. SIGINT while llama.cpp evaluates

    monkeypatch.setattr(building, "parity", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build(llama_dir, tmp_path / "m.gguf", BuildOptions(verify=True))
    assert _left(tmp_path) == []


def test_killed_export_leaves_no_gguf_and_the_next_job_clears_up(
    llama_dir: Path, tmp_path: Path
) -> None:
    """SIGKILL during the check: no cleanup runs, yet nothing is named *.gguf."""
    out = tmp_path / "m.gguf"
    cmd = [sys.executable, "-m", "aicoderd.cli.main", "export", str(llama_dir), "-o", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([*cmd, "--verify"], env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".*.unverified.tmp")) and time.monotonic() < deadline:
        assert proc.poll() is None, "the export ended before it was checked"
        time.sleep(0.02)
    time.sleep(0.3)  # converted; now in the check
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not list(tmp_path.glob("*.gguf")) and not report_path(out).exists()
    building.remove_scratch(tmp_path)  # what the export job does before it starts
    assert _left(tmp_path) == []


def test_missing_llama_cpp_python_is_said_before_any_work(
    llama_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # import llama_cpp now fails
    folder = tmp_path / "out"
    with pytest.raises(ExportError) as err:
        build(llama_dir, folder / "m.gguf", BuildOptions(verify=True))
    assert str(err.value) == INSTALL_HINT
    config = tmp_path / "config.yaml"
    config.write_text(f"data_dir: {tmp_path / 'data'}\n")
    cmd = ["--config", str(config), "export", str(llama_dir), "-o", str(folder / "m.gguf")]
    assert main([*cmd, "--verify"]) == 1
    assert INSTALL_HINT in capsys.readouterr().err
    assert not folder.exists() or _left(folder) == []


def test_prune_keeps_the_newest_of_each_kind(tmp_path: Path) -> None:
    names = ["a.gguf", "b.gguf", "c.gguf", "x.gguf.rejected", "y.gguf.rejected"]
    for i, name in enumerate(names):
        for path in (tmp_path / name, report_path(tmp_path / name.removesuffix(".rejected"))):
            path.write_text("x")
            os.utime(path, (1000 + i, 1000 + i))
    (tmp_path / ".b.gguf.sha256").write_text("x")
    job.prune(tmp_path, keep=1)
    assert _left(tmp_path) == [
        "c.gguf",
        "c.gguf.verify.json",
        "y.gguf.rejected",
        "y.gguf.verify.json",
    ]
