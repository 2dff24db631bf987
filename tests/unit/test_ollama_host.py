"""OLLAMA_HOST parsed as Ollama's envconfig does (reference/ollama-api.md section 11)."""

from __future__ import annotations

import pytest

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
