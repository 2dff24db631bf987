"""The daemon's ``export`` job: the promoted (or named) model to ``data_dir/exports`` as GGUF,
always with the parity check."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from aicoderd.errors import JobSkipped
from aicoderd.export import cli as export_cli
from aicoderd.export import convert
from aicoderd.export.build import BuildOptions, build, report_path
from aicoderd.jobctx import JobContext
from aicoderd.training import versions


def run(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    s = ctx.settings
    if params.get("model"):
        model_dir = versions.resolve(s.models_dir, str(params["model"]))
    else:
        current = versions.current(s.models_dir)
        if current is None:
            raise JobSkipped("no promoted model to export yet")
        model_dir = current
    out_type = str(params.get("type") or s.export.type)
    out = s.exports_dir / f"{model_dir.name}-{out_type}.gguf"
    opts = BuildOptions(
        out_type=out_type,
        verify=True,  # always: a GGUF that fails is never deployed
        limits=export_cli.limits(s),
        llama_cpp_dir=export_cli.llama_cpp_dir(s),
        meta=convert.Metadata(version=model_dir.name),
    )

    def progress(done: int, total: int, name: str) -> None:
        ctx.progress(step=done, total=total, message=f"writing {name}")

    result = build(model_dir, out, opts, progress)
    prune(s.exports_dir, s.export.keep)
    return result


def prune(exports: Path, keep: int) -> None:
    """Keep the newest ``keep`` GGUFs (and their reports)."""
    ggufs = sorted(exports.glob("*.gguf"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in ggufs[keep:]:
        for path in (old, report_path(old), old.with_name(f".{old.name}.sha256")):
            with contextlib.suppress(OSError):
                path.unlink()
