"""Loading a GGUF in llama.cpp itself (llama-cpp-python): the parity check, and every later use
of an exported model on this machine, go through :func:`load`.

Weights are loaded without llama.cpp's "extra" CPU buffer types (the online repacking into AMX
or interleaved layouts). On a CPU with AMX, llama.cpp's AMX path crashes the process on small
Q8_0 / Q4_0 / Q4_1 tensors (seen with llama-cpp-python 0.3.36 on a Sapphire Rapids Xeon); the
plain CPU kernels compute the same arithmetic, and what we check is the file, not the kernels.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aicoderd.errors import ExportError

INSTALL_HINT = (
    "llama-cpp-python is not installed, and the parity check loads the GGUF in llama.cpp"
    " through it: `pip install 'aicoderd[verify]'` (in a source checkout: `make install`)"
)


def available() -> bool:
    """Whether llama-cpp-python can be imported (without importing it)."""
    import importlib.util

    try:
        return importlib.util.find_spec("llama_cpp") is not None
    except (ImportError, ValueError):  # a broken or blocked installation
        return False


def load(
    path: Path,
    *,
    n_ctx: int,
    logits_all: bool = False,
    n_threads: int | None = None,
    lora_path: Path | None = None,
    vocab_only: bool = False,
) -> Any:
    """A ``llama_cpp.Llama`` on ``path`` (``vocab_only``: its tokenizer alone, no weights read);
    :class:`ExportError` when llama.cpp refuses it."""
    try:
        import llama_cpp
    except ImportError:
        raise ExportError(INSTALL_HINT) from None
    threads = n_threads or max(1, min(4, os.cpu_count() or 1))
    _route_logs(llama_cpp)
    try:
        with _plain_cpu_buffers(llama_cpp):
            return llama_cpp.Llama(
                model_path=str(path),
                n_ctx=n_ctx,
                n_batch=n_ctx,
                logits_all=logits_all,
                n_threads=threads,
                lora_path=None if lora_path is None else str(lora_path),
                vocab_only=vocab_only,
                seed=0,
                verbose=False,
            )
    except (ValueError, RuntimeError) as exc:
        raise ExportError(f"llama.cpp cannot load {path}: {exc}") from exc


GGML_LOG_ERROR = 4  # ggml's levels: none 0, debug 1, info 2, warn 3, error 4, continued 5
_callback: Any = None  # kept alive while llama.cpp holds it


def _route_logs(llama_cpp: Any) -> None:
    """llama.cpp's errors go to our log as warnings; its other messages are dropped.
    (llama-cpp-python's handler reads ggml's levels shifted by one and prints its warnings to
    stderr whatever ``verbose`` says, e.g. the context padding to 256 of a 128-token model.)"""
    global _callback
    if _callback is not None:
        return
    import ctypes

    import structlog

    log = structlog.get_logger("llama.cpp")

    def forward(level: int, text: bytes, _: Any) -> None:
        if level != GGML_LOG_ERROR:
            return
        # a callback from C must not raise (at interpreter exit, logging may be gone)
        with contextlib.suppress(Exception):
            log.warning("llama.cpp", message=text.decode("utf-8", errors="replace").strip())

    _callback = llama_cpp.llama_log_callback(forward)
    llama_cpp.llama_log_set(_callback, ctypes.c_void_p(0))


@contextlib.contextmanager
def _plain_cpu_buffers(llama_cpp: Any) -> Iterator[None]:
    """``Llama`` takes no ``use_extra_bufts`` argument; its default params come from this
    function, so turn the field off there for the one load."""
    low = llama_cpp.llama_cpp
    original = low.llama_model_default_params

    def defaults() -> Any:
        params = original()
        if hasattr(params, "use_extra_bufts"):
            params.use_extra_bufts = False
        return params

    low.llama_model_default_params = defaults
    try:
        yield
    finally:
        low.llama_model_default_params = original
