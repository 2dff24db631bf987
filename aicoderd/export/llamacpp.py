"""A llama.cpp checkout, when there is one: ``llama-quantize`` for the k-quants, and its
``convert_hf_to_gguf.py`` for finetunes of public models (``--converter llamacpp``). Both run
through :mod:`aicoderd.execute`."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

from aicoderd import execute
from aicoderd.errors import ExportError
from aicoderd.export import constants as C

CONVERT_OUTTYPES = ("f32", "f16", "bf16", "q8_0", "tq1_0", "tq2_0")
_PRE_UNKNOWN = ("pre-tokenizer was not recognized", "NotImplementedError: BPE pre-tokenizer")


def quantize_binary(root: Path | None) -> Path | None:
    if root is None:
        return None
    binary = root / C.LLAMA_QUANTIZE_BIN
    return binary if binary.is_file() and os.access(binary, os.X_OK) else None


def quantize(binary: Path, src: Path, dst: Path, out_type: str, timeout: float = 3600) -> None:
    """``llama-quantize SRC DST TYPE`` (its type names are ours in upper case), written to a
    temp name and renamed."""
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}{C.SCRATCH_SUFFIX}")
    try:
        execute.run([str(binary), str(src), str(tmp), out_type.upper()], timeout=timeout)
        os.replace(tmp, dst)
    except execute.CommandError as exc:
        raise ExportError(f"llama-quantize failed: {exc.output[-2000:] or exc}") from exc
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def convert(root: Path, model_dir: Path, dst: Path, out_type: str, timeout: float = 3600) -> None:
    """llama.cpp's own converter. It refuses tokenizers it has not seen (every tokenizer
    trained from scratch); that failure becomes a message naming the built-in converter."""
    script = root / C.LLAMA_CONVERT_SCRIPT
    if not script.is_file():
        raise ExportError(f"--converter llamacpp needs a llama.cpp checkout: no {script}")
    if out_type not in CONVERT_OUTTYPES:
        raise ExportError(f"llama.cpp's converter writes {', '.join(CONVERT_OUTTYPES)} only")
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}{C.SCRATCH_SUFFIX}")
    cmd = [sys.executable, str(script), str(model_dir), "--outfile", str(tmp)]
    try:
        execute.run([*cmd, "--outtype", out_type], timeout=timeout)
        os.replace(tmp, dst)
    except execute.CommandError as exc:
        if any(marker in exc.output for marker in _PRE_UNKNOWN):
            raise ExportError(
                "llama.cpp's convert_hf_to_gguf.py does not recognize this tokenizer's"
                " pre-tokenizer (it only knows published tokenizers, never one trained from"
                " scratch). Use the built-in converter: drop --converter llamacpp."
            ) from exc
        raise ExportError(f"convert_hf_to_gguf.py failed: {exc.output[-2000:] or exc}") from exc
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
