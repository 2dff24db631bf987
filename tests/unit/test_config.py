"""Configuration: YAML, environment overrides, readable errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from aicoderd.config import load_config
from aicoderd.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_defaults_follow_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    s = load_config(None)
    assert s.data_dir == tmp_path / "data" / "aicoderd"
    assert s.socket == tmp_path / "run" / "aicoderd" / "aicoderd.sock"
    assert s.folders[0].path == tmp_path / "aicoder-inbox"
    assert s.feedback_files() == [
        tmp_path / "data" / "aicoderd" / "feedback" / "user_feedback.jsonl"
    ]


def test_environment_overrides_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, f"data_dir: {tmp_path}\ningest:\n  settle_seconds: 9\n  batch_size: 5\n")
    monkeypatch.setenv("AICODER_INGEST__SETTLE_SECONDS", "0.5")
    s = load_config(path)
    assert s.ingest.settle_seconds == 0.5 and s.ingest.batch_size == 5
    assert s.data_dir == tmp_path


def test_sizes_accept_units(tmp_path: Path) -> None:
    s = load_config(write(tmp_path, "ingest:\n  max_file_bytes: 1MiB\n"))
    assert int(s.ingest.max_file_bytes) == 2**20


def test_every_problem_is_one_line_naming_the_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "log_level: loud\nfolders:\n  - path: /tmp\n    mode: eat\n"
        "ingest:\n  batch_size: lots\n  typo: 1\nextra: 2\n",
    )
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert sorted(p.split(":")[0] for p in err.value.problems) == [
        "extra",
        "folders.0.mode",
        "ingest.batch_size",
        "ingest.typo",
        "log_level",
    ]
    assert "unknown key" in next(p for p in err.value.problems if p.startswith("extra"))


def test_file_problems(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))
    with pytest.raises(ConfigError, match="line 2"):
        load_config(write(tmp_path, "a: 1\n b: [\n"))
    file = tmp_path / "plain"
    file.write_text("x")
    with pytest.raises(ConfigError, match=r"folders\.0\.path: .* is not a directory"):
        load_config(write(tmp_path, f"folders:\n  - path: {file}\n"))


def test_export_and_ollama_names_come_from_one_table(tmp_path: Path) -> None:
    from aicoderd.gguf_types import OLLAMA_QUANTIZE, OUTPUT_TYPES

    s = load_config(write(tmp_path, "export: {type: Q4_K_M}\nollama: {quantize: Q4_K_m}\n"))
    assert s.export.type == "q4_k_m" and s.ollama.quantize == "q4_K_M"  # Ollama's spelling
    assert OUTPUT_TYPES["q4_k_m"].ollama == OLLAMA_QUANTIZE["q4_k_m"] == "q4_K_M"
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, "export: {type: q9}\nollama: {quantize: q4_0}\n"))
    assert [p.split(":")[0] for p in err.value.problems] == ["export.type", "ollama.quantize"]
    assert "known: f32, f16" in err.value.problems[0]
    assert "only q8_0, q4_k_m" in err.value.problems[1]


def test_llama_cpp_dir_is_resolved_at_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    checkout = Path(__file__).resolve().parents[2] / "llama.cpp"  # beside the package
    assert load_config(write(tmp_path, "{}")).export.llama_cpp_dir == checkout
    monkeypatch.chdir(tmp_path)
    s = load_config(write(tmp_path, "export: {llama_cpp_dir: src/llama.cpp}\n"))
    assert s.export.llama_cpp_dir == tmp_path / "src" / "llama.cpp"  # absolute from the start
    s = load_config(write(tmp_path, "export: {llama_cpp_dir: ~/llama.cpp}\n"))
    assert s.export.llama_cpp_dir == Path.home() / "llama.cpp"


def test_editor_logs_keys_and_their_environment_override(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("AICODER_FEEDBACK__EDITORS__CONTINUE__ENABLED", "false")
    path = tmp_path / "config.yaml"
    path.write_text("feedback:\n  editors:\n    tabby: {model: aicoder, view_window_seconds: 5}\n")
    editors = load_config(path, check_paths=False).feedback.editors
    assert editors.continue_.enabled is False
    assert editors.continue_.path == tmp_path / ".continue" / "dev_data"
    assert editors.tabby.path == tmp_path / ".tabby" / "events"
    assert (editors.tabby.model, editors.tabby.view_window_seconds) == ("aicoder", 5.0)
    assert (editors.accepted_from, editors.rejected_from) == ("all", "ours")
    path.write_text("feedback:\n  editors:\n    tabby: {nope: 1}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, check_paths=False)
    assert info.value.problems == ["feedback.editors.tabby.nope: unknown key"]
