"""``aicoder doctor`` on the export and deploy stages: Ollama at the configured host, the
parity checker (llama-cpp-python importable and loading the newest GGUF), and a llama.cpp
checkout command that works whether or not the folder is there."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from aicoderd.cli import doctor
from aicoderd.config import Settings, load_config
from aicoderd.export import convert
from aicoderd.export.inference import INSTALL_HINT
from aicoderd.ollama.testing import FakeOllama
from tests.export.tiny import make_model


def _settings(tmp_path: Path, **sections: object) -> Settings:
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps({"data_dir": str(tmp_path / "data"), **sections}))
    return load_config(path, check_paths=False)


def test_ollama_is_looked_for_where_the_config_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAMA_HOST", "127.0.0.1:9")  # nothing there; the key wins
    with FakeOllama() as fake:
        check = doctor.check_ollama(_settings(tmp_path, ollama={"host": fake.url}))
    assert (check.level, check.detail) == ("ok", f"version 0.32.15 at {fake.url}")
    check = doctor.check_ollama(_settings(tmp_path))
    assert check.level == "problem" and "127.0.0.1:9" in check.detail


def test_parity_checker_is_importable_and_loads_the_newest_gguf(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = _settings(tmp_path)
    check = doctor.check_parity(s)
    assert check.level == "ok" and check.detail.startswith("llama-cpp-python 0.")
    assert "no GGUF" in check.detail
    s.exports_dir.mkdir(parents=True)
    model = make_model(tmp_path / "m", metrics={})
    convert.export(model, s.exports_dir / "m-q8_0.gguf", "q8_0")
    check = doctor.check_parity(s)
    assert (check.level, check.detail.split(", ")[-1]) == ("ok", "loads m-q8_0.gguf")
    (s.exports_dir / "z.gguf").write_bytes(b"GGUF" + b"\0" * 64)  # newer, and broken
    check = doctor.check_parity(s)
    assert check.level == "problem" and "cannot load" in check.detail
    missing = doctor._PARITY_PROBE.replace("import llama_cpp\n", "import llama_cpp_gone\n")
    monkeypatch.setattr(doctor, "_PARITY_PROBE", missing)
    check = doctor.check_parity(s)
    assert (check.level, check.fix) == ("problem", INSTALL_HINT)


@pytest.fixture
def upstream(tmp_path: Path) -> str:
    """A stand-in for llama.cpp's repository: a README.md and the converter script."""
    repo = tmp_path / "upstream"
    repo.mkdir()
    (repo / "README.md").write_text("llama.cpp's own readme\n")
    (repo / "convert_hf_to_gguf.py").write_text("# converter\n")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    for args in (["init", "-q", "-b", "master"], ["add", "."], ["commit", "-qm", "init"]):
        subprocess.run([*git, *args], check=True)
    return f"file://{repo}"


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_llama_cpp_clone_command_works_with_or_without_the_folder(
    tmp_path: Path, upstream: str
) -> None:
    ours = tmp_path / "src" / "llama.cpp"  # a source checkout's folder: our README only
    ours.mkdir(parents=True)
    (ours / "README.md").write_text("aicoderd's note\n")
    absent = tmp_path / "elsewhere" / "llama.cpp"
    for root in (ours, absent):
        s = _settings(tmp_path, export={"llama_cpp_dir": str(root)})
        check = doctor.check_llama_cpp(s)
        assert check.level == "note" and "no checkout" in check.detail
        command = doctor.clone_command(root, upstream)
        assert check.fix.startswith(doctor.clone_command(root))
        subprocess.run(["bash", "-c", command], check=True, capture_output=True)
        assert (root / "convert_hf_to_gguf.py").is_file()
        check = doctor.check_llama_cpp(s)
        assert check.level == "note" and "llama-quantize not built" in check.detail
    assert (ours / "README.md").read_text() == "aicoderd's note\n"  # kept


def test_llama_cpp_unset_and_absent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = _settings(tmp_path)
    monkeypatch.setattr(s.export, "llama_cpp_dir", None)  # an installed package: none beside
    check = doctor.check_llama_cpp(s)
    assert check.level == "note" and "export.llama_cpp_dir" in check.fix


def test_editor_logs_say_where_they_looked_and_what_they_found(tmp_path: Path) -> None:
    from tests.editor_fixtures import (
        append_jsonl,
        continue_autocomplete,
        new_cid,
        now_ms,
        tabby_choice,
        tabby_completion,
    )

    home = tmp_path / "home"
    s = _settings(
        tmp_path,
        feedback={
            "editors": {
                "continue": {"path": str(home / ".continue" / "dev_data")},
                "tabby": {"path": str(home / ".tabby" / "events"), "enabled": False},
            }
        },
    )
    cont, tabby = doctor.check_editor_logs(s)
    assert (cont.name, tabby.name) == ("continue", "tabby")
    assert (cont.level, cont.detail) == (
        "note",
        f"feedback: looked in {home}/.continue/dev_data: no such folder",
    )
    assert "feedback.editors.continue.path" in cont.fix
    assert (tabby.level, tabby.detail) == ("note", "feedback: off (feedback.editors.tabby)")
    dev_data = home / ".continue" / "dev_data" / "0.2.0"
    append_jsonl(
        dev_data / "autocomplete.jsonl",
        continue_autocomplete(),
        continue_autocomplete(),
        continue_autocomplete(accepted=False),
        continue_autocomplete(accepted=False, modelName="qwen2.5-coder:1.5b"),
    )
    (cont,) = doctor.check_editor_logs(s)[:1]
    assert cont.level == "ok"
    assert cont.detail == (
        f"feedback: looked in {dev_data.parent}: 1 files; records: 2 accepted, 1 rejected;"
        " events not used: preference signal from another model 1"
    )
    events = home / ".tabby" / "events"
    cid, hour_ago = new_cid(), now_ms() - 3_600_000
    append_jsonl(
        events / "2026-11-24.json",
        tabby_completion(cid, hour_ago),
        tabby_choice("view", cid, hour_ago + 100),
    )
    on = s.model_copy(deep=True)
    on.feedback.editors.tabby.enabled = True
    on.feedback.editors.tabby.model = "aicoder"
    tabby = doctor.check_editor_logs(on)[1]
    assert (
        tabby.detail == f"feedback: looked in {events}: 1 files; records: 1 rejected"
    )  # the clock decides
