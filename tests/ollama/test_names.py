from __future__ import annotations

import pytest

from aicoderd.errors import OllamaError
from aicoderd.ollama import names
from aicoderd.ollama.deploy import tag_for


@pytest.mark.parametrize(
    ("text", "display"),
    [
        ("coder", "coder:latest"),
        ("coder:v1", "coder:v1"),
        ("team/coder:v1", "team/coder:v1"),
        ("library/coder", "coder:latest"),
        ("myhost:5000/team/m:v1", "myhost:5000/team/m:v1"),
        ("registry.ollama.ai/library/Coder:X", "Coder:X"),
        ("a_b.c-d:1.2_3-x", "a_b.c-d:1.2_3-x"),
    ],
)
def test_valid_names(text: str, display: str) -> None:
    assert names.parse(text).display == display


@pytest.mark.parametrize(
    "text",
    [
        "",
        "m:",
        ":t",
        "ns/",
        "-m",
        "m:-t",
        "m@sha",
        "ns.x/m",
        "é",
        "a/b/c/d/e",
        "m:" + "t" * 81,
        "m" * 81,
        "m:t:u",
    ],
)
def test_invalid_names(text: str) -> None:
    assert not names.is_valid(text)
    with pytest.raises(OllamaError, match="invalid model name"):
        names.parse(text)


def test_case_insensitive_key() -> None:
    assert names.parse("MyModel").key() == names.parse("mymodel:LATEST").key()


@pytest.mark.parametrize(
    ("version", "tag"),
    [
        ("20260101-train-00007", "20260101-train-00007"),
        ("V 1/2", "v-1-2"),
        ("cloud", "cloud-v"),
        ("x-cloud", "x-cloud-v"),
        ("local", "local-v"),
    ],
)
def test_version_tags_avoid_cloud_and_local(version: str, tag: str) -> None:
    assert tag_for(version) == tag
