"""Every Python child process of the daemon (the folder worker, job children, torchrun's
workers) starts through here, as :mod:`aicoderd.execute` runs every external program: one
place for how a child finds this package, its environment and its priority."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Mapping
from pathlib import Path

import aicoderd

PACKAGE_ROOT = str(Path(aicoderd.__file__).resolve().parents[1])


def lean() -> None:
    """For the daemon and its folder worker, called before structlog is imported: structlog
    renders with rich when it is installed (transformers brings it in), and rich would cost
    ~4 MB of resident memory in each, for logs that are JSON lines or plain console lines. Job
    processes and the CLI keep it."""
    sys.modules.setdefault("rich", None)  # type: ignore[arg-type]  # None blocks an import


# The folder worker's ``python -c`` prelude (lean as the daemon is).
LEAN = "from aicoderd import children; children.lean(); "


def python(*args: str) -> list[str]:
    """The command line of a Python child running this interpreter: ``python ARGS...``."""
    return [sys.executable, *args]


def environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The inherited environment, with this package importable (a child started from a
    source checkout imports the same code as its parent)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
    env.update(extra or {})
    return env


def lower_priority(nice: int, idle_io: bool) -> None:
    """Lower this process's CPU priority by ``nice`` and, with ``idle_io``, put its disk I/O in
    the best-effort class's lowest level, so that training leaves the user's machine
    responsive. Called by the child itself (a ``preexec_fn`` is unsafe in a threaded parent)."""
    if nice:
        with contextlib.suppress(OSError):
            os.nice(nice)
    if idle_io:
        _lowest_io_priority()


# ioprio_set(2): no wrapper in Python's os module; the syscall number differs per architecture.
_IOPRIO_SET = {"x86_64": 251, "aarch64": 30, "arm64": 30, "i686": 289, "ppc64le": 273}
_IOPRIO_CLASS_BE, _IOPRIO_WHO_PROCESS = 2, 1


def _lowest_io_priority() -> None:
    import ctypes
    import platform

    number = _IOPRIO_SET.get(platform.machine())
    if number is None:
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall(number, _IOPRIO_WHO_PROCESS, 0, (_IOPRIO_CLASS_BE << 13) | 7)
