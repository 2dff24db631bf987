"""Where a run executes: the device, the autocast precision, and its place in a ``torchrun``
process group (DDP). Training is plain PyTorch, so ``torchrun`` launches it unchanged; this
module only reads what torchrun hands every process (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aicoderd.errors import TrainingError

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    dtype_name: str  # "bf16" under autocast on CUDA, "fp32" on the CPU
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        """Only the first process writes files and reports progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        import torch

        if self.dtype_name == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()


def detect(preference: str) -> Runtime:
    """CUDA with bf16 autocast when present (or asked for), else the CPU in fp32; joins the
    process group when launched by torchrun."""
    import torch

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = preference == "cuda" or (preference == "auto" and torch.cuda.is_available())
    if cuda and not torch.cuda.is_available():
        raise TrainingError("training.device is cuda but no CUDA device is available")
    if cuda:
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        dtype = "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    else:
        device, dtype = torch.device("cpu"), "fp32"
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if cuda else "gloo")
    return Runtime(device, dtype, rank, world)


def finish(rt: Runtime) -> None:
    import torch

    if rt.distributed and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
