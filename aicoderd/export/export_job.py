"""The daemon's ``export`` job: the promoted (or named) model to ``data_dir/exports`` as GGUF,
always with the parity check."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from pathlib import Path
from typing import Any

from aicoderd.errors import JobSkipped
from aicoderd.export import completion, convert
from aicoderd.export import constants as C
from aicoderd.export.build import BuildOptions, build, remove_scratch, report_path
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
    opts = replace(
        BuildOptions.from_settings(s),
        out_type=str(params.get("type") or s.export.type),
        verify=True,  # always: a GGUF that fails is never deployed
        meta=convert.Metadata(version=model_dir.name),
    )
    out = s.exports_dir / f"{model_dir.name}-{opts.out_type}.gguf"

    def progress(done: int, total: int, name: str) -> None:
        ctx.progress(step=done, total=total, message=f"writing {name}")

    remove_scratch(s.exports_dir)  # export jobs run one at a time: leftovers of a killed one
    result = build(model_dir, out, opts, progress)
    prune(s.exports_dir, s.export.keep)
    ctx.progress(force=True, message="completion metrics in llama.cpp")
    return result | {"completion": completion.measure_export(out, model_dir, s)}


def prune(exports: Path, keep: int) -> None:
    """Keep the newest ``keep`` GGUFs and the newest ``keep`` rejected ones, with reports."""
    for pattern in ("*.gguf", f"*.gguf{C.REJECTED_SUFFIX}"):
        found = sorted(exports.glob(pattern), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in found[keep:]:
            gguf = old.with_name(old.name.removesuffix(C.REJECTED_SUFFIX))
            for path in (old, report_path(gguf), gguf.with_name(f".{gguf.name}.sha256")):
                with contextlib.suppress(OSError):
                    path.unlink()
