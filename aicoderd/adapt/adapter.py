"""The LoRA as a GGUF adapter, as llama.cpp's ``convert_lora_to_gguf.py`` writes one and llama.cpp
(and Ollama's ``adapters``) loads it: ``general.type = adapter``, ``adapter.type = lora``,
``adapter.lora.alpha``, the base's architecture, and per adapted matrix ``<base GGUF tensor
name>.lora_a`` (rank x in) and ``.lora_b`` (out x rank), as PEFT stores them. Llama's Q/K rows
are permuted for llama.cpp's RoPE, so B's rows (the output side) get the same permutation; A is
untouched. No vocabulary: the base's is used.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from aicoderd.errors import ExportError
from aicoderd.export import arch as archs
from aicoderd.export import constants as EC
from aicoderd.fsutil import fsync_dir

_PREFIX = "base_model.model."  # PEFT's wrapper around the HF model
_A, _B = ".lora_A.weight", ".lora_B.weight"


def tensors(model: Any) -> dict[str, tuple[Any, Any]]:
    """HF weight name (``model.layers.0.self_attn.q_proj.weight``) → (A, B) as float32."""
    from peft import get_peft_model_state_dict

    state = get_peft_model_state_dict(model)
    pairs: dict[str, tuple[Any, Any]] = {}
    for key, value in state.items():
        if not key.endswith(_A):
            continue
        name = key.removeprefix(_PREFIX).removesuffix(_A) + ".weight"
        b = state[key.removesuffix(_A) + _B]
        pairs[name] = (value.detach().float().cpu().numpy(), b.detach().float().cpu().numpy())
    if not pairs:
        raise ExportError("the model carries no LoRA weights")
    return pairs


def write(model: Any, alpha: float, out: Path, name: str) -> Path:
    """Write the LoRA of ``model`` (a peft model) to ``out``, atomically."""
    config = model.get_base_model().config.to_dict()
    arch = archs.for_config(config)
    tmp = out.with_name(f".{out.name}.{os.getpid()}{EC.SCRATCH_SUFFIX}")
    try:
        w = gguf.GGUFWriter(tmp, arch.arch_name)
        w.add_type(gguf.GGUFType.ADAPTER)
        w.add_name(name)
        w.add_string(gguf.Keys.Adapter.TYPE, "lora")
        w.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(alpha))
        for hf_name, (a, b) in sorted(tensors(model).items()):
            base = arch.tensor_name(hf_name)
            if base is None:
                raise ExportError(f"{hf_name} has no llama.cpp tensor to adapt")
            w.add_tensor(f"{base}.lora_a", np.ascontiguousarray(a, dtype=np.float32))
            rows = np.ascontiguousarray(arch.transform(hf_name, b), dtype=np.float32)
            w.add_tensor(f"{base}.lora_b", rows)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        os.replace(tmp, out)
        fsync_dir(out.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return out
