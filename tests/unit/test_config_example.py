"""config.example.yaml documents every key with its default: it validates, it names every key
the settings have, and each value it gives is the default (the machine-dependent paths
aside)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from aicoderd.config import Settings

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.yaml"
MACHINE_DEPENDENT = {
    "data_dir",
    "socket",
    "folders",
    "feedback.files",
    "feedback.editors.continue.path",
    "feedback.editors.tabby.path",
}


def _leaves(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict) and data:
        out: dict[str, Any] = {}
        for key, value in data.items():
            out |= _leaves(value, f"{prefix}{key}.")
        return out
    return {prefix.rstrip("."): data}


def test_the_example_validates_and_gives_the_defaults(tmp_path: Path) -> None:
    example = yaml.safe_load(EXAMPLE.read_text())
    Settings(**example)  # an unknown or misspelt key fails here
    defaults = Settings(data_dir=tmp_path).model_dump(mode="json")
    given, expected = _leaves(example), _leaves(defaults)
    dependent = {k for k in expected if any(k.startswith(m) for m in MACHINE_DEPENDENT)}
    missing = sorted(k for k in expected if k not in given and k not in dependent)
    assert not missing, f"config.example.yaml does not document: {missing}"
    parsed = _leaves(Settings(**example).model_dump(mode="json"))
    wrong = {k: given[k] for k in given if k in expected and k not in dependent}
    wrong = {k: v for k, v in wrong.items() if parsed[k] != expected[k]}
    assert not wrong, f"config.example.yaml gives values other than the defaults: {wrong}"
