"""Every external program (systemctl, loginctl, git, llama-quantize…) runs through here: one
place for timeouts, logging and turning failures into our errors."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aicoderd import log
from aicoderd.errors import CommandError

__all__ = ["CommandError", "available", "run", "run_bytes"]

logger = log.get(__name__)


def available(program: str) -> bool:
    return shutil.which(program) is not None


def run(
    cmd: Sequence[str],
    *,
    timeout: float = 60.0,
    check: bool = True,
    env: Mapping[str, str | None] | None = None,
    cwd: Path | None = None,
) -> str:
    """Run ``cmd``; return its combined output, or raise :class:`CommandError`. ``env``
    changes the inherited environment: a value sets a variable, None removes it."""
    logger.debug("execute", cmd=list(cmd))
    proc = _completed(cmd, timeout, env, cwd, text=True, stdin=subprocess.DEVNULL)
    output: str = (proc.stdout + proc.stderr).strip()
    if check and proc.returncode != 0:
        raise CommandError(
            f"{' '.join(cmd)} failed (exit {proc.returncode}): {output}", proc.returncode, output
        )
    return output


def _completed(
    cmd: Sequence[str],
    timeout: float,
    env: Mapping[str, str | None] | None,
    cwd: Path | None,
    **kwargs: Any,
) -> subprocess.CompletedProcess[Any]:
    """``subprocess.run`` with output captured; a missing program or a timeout becomes a
    :class:`CommandError`."""
    try:
        env_ = _environment(env)
        return subprocess.run(
            list(cmd), capture_output=True, timeout=timeout, env=env_, cwd=cwd, **kwargs
        )
    except FileNotFoundError:
        raise CommandError(f"{cmd[0]} is not installed", None, "") from None
    except subprocess.TimeoutExpired:
        raise CommandError(
            f"{' '.join(cmd)} did not finish within {timeout:.0f} s", None, ""
        ) from None


def run_bytes(
    cmd: Sequence[str],
    *,
    input: bytes = b"",
    timeout: float = 60.0,
    env: Mapping[str, str | None] | None = None,
    cwd: Path | None = None,
) -> bytes:
    """Run ``cmd`` with ``input`` on its stdin; return its stdout as bytes (for binary output
    such as ``git cat-file --batch``), or raise :class:`CommandError` with its stderr."""
    logger.debug("execute", cmd=list(cmd), input_bytes=len(input))
    proc = _completed(cmd, timeout, env, cwd, input=input)
    if proc.returncode != 0:
        output = proc.stderr.decode("utf-8", "replace").strip()
        raise CommandError(
            f"{' '.join(cmd)} failed (exit {proc.returncode}): {output}", proc.returncode, output
        )
    stdout: bytes = proc.stdout
    return stdout


def _environment(changes: Mapping[str, str | None] | None) -> dict[str, str] | None:
    if changes is None:
        return None
    env = dict(os.environ)
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env
