"""Every external program (systemctl, loginctl, git, llama-quantize…) runs through here: one
place for timeouts, logging and turning failures into our errors."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence

from aicoderd import log
from aicoderd.errors import AicoderError

logger = log.get(__name__)


class CommandError(AicoderError):
    code = "command_failed"

    def __init__(self, message: str, returncode: int | None, output: str) -> None:
        super().__init__(message)
        self.returncode = returncode
        self.output = output


def available(program: str) -> bool:
    return shutil.which(program) is not None


def run(cmd: Sequence[str], *, timeout: float = 60.0, check: bool = True) -> str:
    """Run ``cmd``; return its combined output, or raise :class:`CommandError`."""
    logger.debug("execute", cmd=list(cmd))
    try:
        proc = subprocess.run(
            list(cmd), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except FileNotFoundError:
        raise CommandError(f"{cmd[0]} is not installed", None, "") from None
    except subprocess.TimeoutExpired:
        raise CommandError(
            f"{' '.join(cmd)} did not finish within {timeout:.0f} s", None, ""
        ) from None
    output = (proc.stdout + proc.stderr).strip()
    if check and proc.returncode != 0:
        raise CommandError(
            f"{' '.join(cmd)} failed (exit {proc.returncode}): {output}", proc.returncode, output
        )
    return output
