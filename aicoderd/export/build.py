"""One export, start to finish: convert (built-in, or llama.cpp's), quantize (in process,
llama-quantize, or left to Ollama), and the parity check. The CLI and the daemon's ``export``
job both call :func:`build`. A GGUF that fails the check is renamed ``*.rejected`` and the
export fails, so nothing downstream can deploy it.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aicoderd.errors import ExportError
from aicoderd.export import constants as C
from aicoderd.export import convert, llamacpp, quantize
from aicoderd.export.verify import Limits
from aicoderd.fsutil import atomic_write


@dataclass
class BuildOptions:
    out_type: str = "f16"
    verify: bool = False
    limits: Limits = field(default_factory=Limits)
    converter: str = "builtin"  # builtin | llamacpp
    llama_cpp_dir: Path | None = None
    meta: convert.Metadata = field(default_factory=convert.Metadata)


def report_path(gguf: Path) -> Path:
    return gguf.with_name(gguf.name + C.VERIFY_SUFFIX)


def build(
    model_dir: Path, out: Path, opts: BuildOptions, progress: convert.Progress | None = None
) -> dict[str, Any]:
    """Export ``model_dir`` to ``out``; returns a JSON-able summary."""
    target = quantize.output_type(opts.out_type)
    result: dict[str, Any] = {"gguf": str(out), "type": target.name, "method": target.method.value}
    if opts.converter == "llamacpp":
        if opts.llama_cpp_dir is None:
            raise ExportError("--converter llamacpp needs a llama.cpp checkout (llama.cpp/)")
        llamacpp.convert(opts.llama_cpp_dir, model_dir, out, target.name)
        result["converter"] = "llamacpp"
    elif target.method is C.Method.IN_PROCESS:
        if not quantize.can_quantize(target.ggml):
            raise ExportError(f"this gguf package cannot quantize {target.name} in Python")
        result |= _summary(convert.export(model_dir, out, target.name, opts.meta, progress))
    else:
        result |= _kquant(model_dir, out, target, opts, progress)
    if opts.verify:
        result["verify"] = check(out, model_dir, result.get("verified_type", target.name), opts)
    return result


def _summary(r: convert.ExportResult) -> dict[str, Any]:
    d = asdict(r)
    d["path"] = str(r.path)
    d.pop("type")
    return d


def _kquant(
    model_dir: Path,
    out: Path,
    target: C.OutputType,
    opts: BuildOptions,
    progress: convert.Progress | None,
) -> dict[str, Any]:
    binary = llamacpp.quantize_binary(opts.llama_cpp_dir)
    if binary is not None:
        f16 = out.with_name(f".{out.name}.f16.{os.getpid()}.gguf")
        try:
            base = convert.export(model_dir, f16, "f16", opts.meta, progress)
            if opts.verify:  # the conversion itself must be right before it is quantized
                check(f16, model_dir, "f16", opts, keep_report=False)
            llamacpp.quantize(binary, f16, out, target.name)
        finally:
            with contextlib.suppress(OSError):
                f16.unlink()
        return _summary(base) | {"path": str(out), "bytes": out.stat().st_size, "via": str(binary)}
    if target.ollama:
        meta = convert.Metadata(**{**asdict(opts.meta), "extra": dict(opts.meta.extra)})
        meta.extra[C.KEY_OLLAMA_QUANTIZE.removeprefix(C.KEY_PREFIX)] = target.ollama
        summary = _summary(convert.export(model_dir, out, "f16", meta, progress))
        return summary | {
            "via": "ollama",
            "ollama_quantize": target.ollama,
            "verified_type": "f16",
            "note": f"written as F16; Ollama quantizes it to {target.ollama} on deploy"
            " (no llama.cpp/build/bin/llama-quantize here)",
        }
    raise ExportError(
        f"{target.name} needs llama.cpp's llama-quantize (build llama.cpp/, see its README);"
        " without it, use q8_0 or the other in-process types, or q4_k_m / q4_k_s which Ollama"
        " makes on deploy"
    )


def check(
    gguf: Path, model_dir: Path, out_type: str, opts: BuildOptions, keep_report: bool = True
) -> dict[str, Any]:
    """The parity check; a failure renames the GGUF aside and raises."""
    from aicoderd.export.verify import verify

    report = verify(gguf, model_dir, out_type, opts.limits).to_dict()
    if keep_report:
        atomic_write(report_path(gguf), (json.dumps(report, indent=2) + "\n").encode())
    if not report["passed"]:
        rejected = gguf.with_name(gguf.name + C.REJECTED_SUFFIX)
        os.replace(gguf, rejected)
        raise ExportError(
            f"parity check failed for {gguf.name} ({'; '.join(report['problems'])});"
            f" kept as {rejected.name}, not deployable"
        )
    return report


def verified(gguf: Path) -> bool | None:
    """True/False from the parity report beside ``gguf``; None when it was not checked."""
    try:
        report = json.loads(report_path(gguf).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return bool(report.get("passed"))
