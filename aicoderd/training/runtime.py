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

# Activation memory a forward/backward pass may hold on the CPU (training.pass_tokens null):
# one 512-token sequence of the small preset, the whole 16 x 128 micro-batch of tiny.
CPU_PASS_BYTES = 256 * 2**20


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


def detect(preference: str, threads: int | None = None) -> Runtime:
    """CUDA with bf16 autocast when present (or asked for), else the CPU in fp32; joins the
    process group when launched by torchrun. ``threads``: torch's CPU threads (None: torch's
    default, one per physical core)."""
    import torch

    if threads is not None and threads != torch.get_num_threads():
        # Intra-op threads only: the eager loop runs one op at a time, so inter-op threads
        # have nothing to overlap (and torch refuses to change them once any op has run).
        torch.set_num_threads(threads)

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


def rows_per_pass(
    rt: Runtime, pass_tokens: int | None, batch_size: int, context: int, bytes_per_token: int
) -> int:
    """Sequences per forward/backward pass: a micro-batch runs in slices of at most
    ``pass_tokens`` tokens; by default, on the CPU, of activations within ``CPU_PASS_BYTES``
    (on CUDA, whole micro-batches)."""
    if pass_tokens is None:
        if rt.device.type != "cpu":
            return batch_size
        pass_tokens = CPU_PASS_BYTES // bytes_per_token
    return max(1, min(batch_size, pass_tokens // context))


def release_memory() -> None:
    """Hand memory freed on the heap back to the OS: glibc keeps it, so the tokenizer's
    training and the corpus text would stay in the resident set of a run that never reads
    them again."""
    import ctypes
    import gc

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)
