"""OLLAMA_HOST parsed as Ollama's envconfig does (its envconfig.Host)."""

from __future__ import annotations

from pathlib import Path

import pytest

from aicoderd.config import load_config
from aicoderd.ollama.host import base_url


@pytest.mark.parametrize(
    ("value", "url"),
    [
        (None, "http://127.0.0.1:11434"),
        ("", "http://127.0.0.1:11434"),
        ("  '1.2.3.4'  ", "http://1.2.3.4:11434"),
        ("example.com:1234", "http://example.com:1234"),
        ("::1", "http://[::1]:11434"),
        ("[::1]", "http://[::1]:11434"),
        ("http://host", "http://host:80"),
        ("https://host", "https://host:443"),
        ("https://example.com/ollama", "https://example.com:443/ollama"),
        ("ollama.com", "https://ollama.com:443"),
        ("host:99999", "http://host:11434"),
        ("host:abc", "http://host:11434"),
        (":1234", "http://127.0.0.1:1234"),
        ("0.0.0.0", "http://127.0.0.1:11434"),
        ("::", "http://[::1]:11434"),
    ],
)
def test_base_url(value: str | None, url: str) -> None:
    assert base_url(value) == url


def _host(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return load_config(path, check_paths=False).ollama.host


def test_config_resolves_the_host_at_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OLLAMA_HOST", raising=False)
    assert _host(tmp_path, "{}") == "127.0.0.1:11434"  # Ollama's own default
    monkeypatch.setenv("OLLAMA_HOST", "gpu-box:9999")
    assert _host(tmp_path, "{}") == "gpu-box:9999"  # $OLLAMA_HOST, read when loading
    assert _host(tmp_path, "ollama: {host: null}") == "gpu-box:9999"
    assert _host(tmp_path, "ollama: {host: 'http://other'}") == "http://other"  # the key wins
    monkeypatch.setenv("AICODER_OLLAMA__HOST", "[::1]:1234")
    assert _host(tmp_path, "ollama: {host: 'http://other'}") == "[::1]:1234"
    assert base_url(_host(tmp_path, "{}")) == "http://[::1]:1234"


def test_stage_code_never_reads_the_environment() -> None:
    """OLLAMA_HOST (or any variable) is config's business: no stage module reads os.environ."""
    root = Path(__file__).resolve().parents[2] / "aicoderd"
    for package in ("export", "ollama"):
        for path in (root / package).rglob("*.py"):
            text = path.read_text()
            assert "os.environ" not in text and "getenv" not in text, path
