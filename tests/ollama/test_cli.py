"""``aicoder deploy``, ``models`` and ``rollback`` as a user runs them, against the fake Ollama
named by the config's ``ollama.host``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from aicoderd.cli.main import main
from aicoderd.export.build import BuildOptions, build, report_path
from aicoderd.ollama.client import Client
from aicoderd.ollama.testing import FakeOllama
from tests.export.tiny import Shape, make_model

TRAIN, FINETUNE = "20260101-train-00003", "20260101-finetune-00007"


@pytest.fixture(scope="module")
def versions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A pretrained model and its finetune, exported and verified, as the daemon names them."""
    root = tmp_path_factory.mktemp("versions")
    metrics = {
        TRAIN: {"kind": "pretrain", "eval_loss": 2.5, "steps": 8},
        FINETUNE: {"kind": "finetune", "train_loss": 1.25, "steps": 3},  # no eval_loss
    }
    out = {}
    for version, m in metrics.items():
        model = make_model(root / version, Shape(), m)
        out[version] = root / f"{version}-f16.gguf"
        build(model, out[version], BuildOptions(verify=True))
    return out


def _config(tmp_path: Path, fake: FakeOllama, **export: object) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(
        json.dumps(
            {
                "data_dir": str(tmp_path / "data"),
                "ollama": {"host": fake.url, "model": "coder", "check_generate": False},
                "export": export,
            }
        )
    )
    return str(path)


def _run(config: str, *args: str) -> int:
    return main(["--config", config, *args])


def test_deploy_refuses_an_unchecked_gguf_unless_forced(
    fake: FakeOllama,
    ggufs: dict[str, Path],
    versions: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = _config(tmp_path, fake)
    assert _run(config, "deploy", str(ggufs["f16"])) == 1  # exported without --verify
    err = capsys.readouterr().err
    assert "has no parity report" in err and "--force" in err
    failed = tmp_path / "failed.gguf"
    shutil.copy(versions[TRAIN], failed)
    report = json.loads(report_path(versions[TRAIN]).read_text()) | {"passed": False}
    report_path(failed).write_text(json.dumps(report))
    assert _run(config, "deploy", str(failed)) == 1
    assert "failed its parity check" in capsys.readouterr().err
    assert fake.manifests == {}  # nothing reached Ollama
    assert _run(config, "deploy", str(ggufs["f16"]), "--force") == 0
    assert "deployed coder:20260101-train-00007" in capsys.readouterr().out


def test_deploy_of_a_model_dir_exports_and_checks_it_first(
    fake: FakeOllama, tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(_config(tmp_path, fake), "deploy", str(tiny_model), "--quantize", "Q8_0") == 0
    gguf = tmp_path / "data" / "exports" / f"{tiny_model.name}-f16.gguf"
    assert json.loads(report_path(gguf).read_text())["passed"] is True
    assert "deployed coder:20260101-train-00007" in capsys.readouterr().out
    with Client(fake.url) as c:
        shown = c.show("coder:latest")
    assert shown is not None and shown["details"]["quantization_level"] == "Q8_0"
    # A model whose export fails its check is not deployed, and says so.
    strict = _config(tmp_path, fake, type="q4_0", quantized_kl=1e-9)
    assert _run(strict, "deploy", str(tiny_model)) == 1
    assert "parity check failed" in capsys.readouterr().err
    assert (gguf.parent / f"{tiny_model.name}-q4_0.gguf.rejected").exists()


def test_models_rollback_follow_creation_not_names(
    fake: FakeOllama,
    versions: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = _config(tmp_path, fake)
    assert _run(config, "models") == 0
    assert f"no versions of coder in Ollama at {fake.url}" in capsys.readouterr().out
    for version in (TRAIN, FINETUNE):  # the finetune comes later; its name sorts first
        assert _run(config, "deploy", str(versions[version])) == 0
    capsys.readouterr()
    plot = tmp_path / "data" / "models" / TRAIN / "loss.png"  # trained here: its plot is shown
    plot.parent.mkdir(parents=True)
    plot.write_bytes(b"\x89PNG\r\n")
    assert _run(config, "models") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == f"coder:{TRAIN} F16 pretrain eval_loss 2.5000 8 steps".split()
    assert lines[1].split() == ["loss", "plot:", str(plot)]
    assert lines[2].split() == f"* coder:{FINETUNE} F16 finetune train_loss 1.2500 3 steps".split()
    assert len(lines) == 3
    assert _run(config, "rollback") == 0
    assert capsys.readouterr().out.strip() == f"coder:latest now points to coder:{TRAIN}"
    assert _run(config, "rollback") == 1
    assert "is the oldest version" in capsys.readouterr().err
    assert _run(config, "rollback", FINETUNE) == 0
    capsys.readouterr()
    assert _run(config, "--json", "models") == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(v["version"], v["latest"]) for v in listed] == [(TRAIN, False), (FINETUNE, True)]
    assert [v["loss_plot"] for v in listed] == [str(plot), None]
