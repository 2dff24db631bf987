"""The standalone ``aicoder corpus build`` and ``aicoder corpus stats``: the same build as the
daemon's job, over files and folders, no daemon needed. ``aicoderd.cli`` reaches ``build``
through :func:`importlib.import_module` so that the CLI never imports numpy or ``datasets``
before the command runs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from aicoderd.config import Settings
from aicoderd.corpus.build import Builder
from aicoderd.corpus.inputs import FileInputs
from aicoderd.sources.extract_limits import ExtractLimits


def build(
    inputs: list[Path], out: Path, settings: Settings, *, full: bool, quiet: bool
) -> dict[str, Any] | None:
    """Build ``out`` from ``inputs``; the manifest, or None when it was already up to date."""

    def progress(**fields: Any) -> None:
        if not quiet:
            step = f" {fields['step']}" if "step" in fields else ""
            print(f"corpus: {fields.get('message', '')}{step}", file=sys.stderr, flush=True)

    return Builder(
        FileInputs(inputs, ExtractLimits.from_config(settings.ingest)),
        out,
        settings.corpus,
        full=full,
        progress=progress,
    ).run()
