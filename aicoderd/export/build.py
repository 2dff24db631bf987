"""One export, start to finish: convert (built-in, or llama.cpp's), quantize (in process,
llama-quantize, or left to Ollama), and the parity check. The CLI and the daemon's ``export``
job both call :func:`build`.

What a reader finds beside ``OUT.gguf`` is honest: with the check, the file is written under a
temporary name and becomes ``OUT.gguf`` only once it passed (its report ``OUT.gguf.verify.json``
written first); one that fails becomes ``OUT.gguf.rejected``; an interrupted run leaves no
``*.gguf``. A new build first removes the report and rejected copy of an older ``OUT.gguf``,
which describe another file.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aicoderd.errors import ExportError
from aicoderd.export import constants as C
from aicoderd.export import convert, inference, llamacpp, quantize
from aicoderd.export.verify import Limits, Reference
from aicoderd.fsutil import atomic_write
from aicoderd.gguf_types import Method, OutputType

if TYPE_CHECKING:
    from aicoderd.config import Settings


@dataclass
class BuildOptions:
    out_type: str = "f16"
    verify: bool = False
    limits: Limits = field(default_factory=Limits)
    converter: str = "builtin"  # builtin | llamacpp
    llama_cpp_dir: Path | None = None
    meta: convert.Metadata = field(default_factory=convert.Metadata)
    reference: Reference | None = None  # what parity compares with (None: the model dir)

    @classmethod
    def from_settings(cls, settings: Settings) -> BuildOptions:
        e = settings.export
        limits = Limits(e.lossless_kl, e.quantized_kl, e.quantized_top1, dict(e.per_type))
        return cls(e.type, e.verify, limits, llama_cpp_dir=e.llama_cpp_dir)


def report_path(gguf: Path) -> Path:
    return gguf.with_name(gguf.name + C.VERIFY_SUFFIX)


def rejected_path(gguf: Path) -> Path:
    return gguf.with_name(gguf.name + C.REJECTED_SUFFIX)


def scratch_path(out: Path, what: str) -> Path:
    """A temporary file beside ``out``: hidden, and never named ``*.gguf``."""
    return out.with_name(f".{out.name}.{os.getpid()}.{what}{C.SCRATCH_SUFFIX}")


def build(
    model_dir: Path, out: Path, opts: BuildOptions, progress: convert.Progress | None = None
) -> dict[str, Any]:
    """Export ``model_dir`` to ``out``; returns a JSON-able summary."""
    target = quantize.output_type(opts.out_type)
    if opts.verify and not inference.available():
        raise ExportError(inference.INSTALL_HINT)
    for stale in (out, report_path(out), rejected_path(out)):
        stale.unlink(missing_ok=True)
    staging = scratch_path(out, "unverified") if opts.verify else out
    try:
        result = _produce(model_dir, staging, target, opts, progress)
        result |= {"gguf": str(out), "path": str(out)}
        if opts.verify:
            checked = result.get("verified_type", target.name)
            result["verify"] = settle(staging, out, parity(staging, model_dir, checked, opts))
    finally:
        if staging != out:
            staging.unlink(missing_ok=True)
    return result


def _produce(
    model_dir: Path,
    dst: Path,
    target: OutputType,
    opts: BuildOptions,
    progress: convert.Progress | None,
) -> dict[str, Any]:
    result: dict[str, Any] = {"type": target.name, "method": target.method.value}
    if opts.converter == "llamacpp":
        if opts.llama_cpp_dir is None:
            raise ExportError("--converter llamacpp needs a llama.cpp checkout (llama.cpp/)")
        llamacpp.convert(opts.llama_cpp_dir, model_dir, dst, target.name)
        return result | {"converter": "llamacpp", "bytes": dst.stat().st_size}
    if target.method is Method.IN_PROCESS:
        if not quantize.can_quantize(target.ggml):
            raise ExportError(f"this gguf package cannot quantize {target.name} in Python")
        return result | _summary(convert.export(model_dir, dst, target.name, opts.meta, progress))
    return result | _kquant(model_dir, dst, target, opts, progress)


def _summary(r: convert.ExportResult) -> dict[str, Any]:
    d = asdict(r)
    d.pop("type")
    d.pop("path")
    return d


def _kquant(
    model_dir: Path,
    dst: Path,
    target: OutputType,
    opts: BuildOptions,
    progress: convert.Progress | None,
) -> dict[str, Any]:
    binary = llamacpp.quantize_binary(opts.llama_cpp_dir)
    if binary is not None:
        f16 = scratch_path(dst, "f16")
        try:
            base = convert.export(model_dir, f16, "f16", opts.meta, progress)
            if opts.verify:  # the conversion itself must be right before it is quantized
                report = parity(f16, model_dir, "f16", opts)
                if not report["passed"]:
                    raise ExportError(f"the F16 conversion failed its parity check: {_why(report)}")
            llamacpp.quantize(binary, f16, dst, target.name)
        finally:
            f16.unlink(missing_ok=True)
        return _summary(base) | {"bytes": dst.stat().st_size, "via": str(binary)}
    if target.ollama:
        meta = replace(opts.meta, extra=dict(opts.meta.extra))
        meta.extra[C.KEY_OLLAMA_QUANTIZE.removeprefix(C.KEY_PREFIX)] = target.ollama
        summary = _summary(convert.export(model_dir, dst, "f16", meta, progress))
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


def parity(gguf: Path, model_dir: Path, out_type: str, opts: BuildOptions) -> dict[str, Any]:
    """The parity report of ``gguf`` against ``model_dir`` (torch loads only here)."""
    from aicoderd.export.verify import verify

    return verify(gguf, model_dir, out_type, opts.limits, reference=opts.reference).to_dict()


def settle(staging: Path, out: Path, report: dict[str, Any]) -> dict[str, Any]:
    """Put the checked file in its place: ``out`` with its report, or ``out.rejected``."""
    report = report | {"gguf": str(out)}
    atomic_write(report_path(out), (json.dumps(report, indent=2) + "\n").encode())
    if report["passed"]:
        os.replace(staging, out)
        return report
    os.replace(staging, rejected_path(out))
    raise ExportError(
        f"parity check failed for {out.name} ({_why(report)});"
        f" kept as {rejected_path(out).name}, not deployable"
    )


def _why(report: dict[str, Any]) -> str:
    return "; ".join(report["problems"])


def verified(gguf: Path) -> bool | None:
    """True/False from the parity report beside ``gguf``; None when it was not checked."""
    try:
        report = json.loads(report_path(gguf).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return bool(report.get("passed"))


def remove_scratch(folder: Path) -> None:
    """Temporary files a killed export left in ``folder`` (call only when none is running)."""
    for path in folder.glob(f".*{C.SCRATCH_SUFFIX}"):
        with contextlib.suppress(OSError):
            path.unlink()
