"""Checkpoints: everything a run needs to continue exactly (model, optimizer, scheduler, RNG,
data position, history), one file per step, written atomically, the last K kept.

``step-N.pt`` is streamed to a temp file, fsynced and renamed into place; its SHA-256 then goes
to ``step-N.pt.sha256`` the same way. A checkpoint without a matching checksum (a torn or
damaged file, or a crash between the two renames) is recognised as unusable rather than
half-loaded, and resuming falls back to the one before it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aicoderd.errors import TrainingError
from aicoderd.fsutil import atomic_write, fsync_dir

_NAME = re.compile(r"^step-(\d{8})\.pt$")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class Checkpoints:
    def __init__(self, directory: Path, keep: int) -> None:
        self.directory = directory
        self.keep = keep

    def path(self, step: int) -> Path:
        return self.directory / f"step-{step:08d}.pt"

    def steps(self) -> list[int]:
        """Steps with a checkpoint file, oldest first."""
        if not self.directory.is_dir():
            return []
        found = (_NAME.match(p.name) for p in self.directory.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def save(self, step: int, state: dict[str, Any]) -> Path:
        import torch

        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.path(step)
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                torch.save(state, fh)  # streamed: no second copy of the state in memory
                fh.flush()
                os.fsync(fh.fileno())
            digest = _sha256(Path(tmp))
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        atomic_write(path.with_name(path.name + ".sha256"), f"{digest}\n".encode())
        fsync_dir(self.directory)
        for old in self.steps()[: -self.keep]:
            self.path(old).unlink(missing_ok=True)
            self.path(old).with_name(self.path(old).name + ".sha256").unlink(missing_ok=True)
        return path

    def read(self, step: int) -> dict[str, Any]:
        """One checkpoint; :class:`TrainingError` saying why when it cannot be used."""
        import torch

        path = self.path(step)
        try:
            expected = path.with_name(path.name + ".sha256").read_text().strip()
        except OSError:
            raise TrainingError(f"checkpoint {path} is incomplete (no checksum)") from None
        try:
            actual = _sha256(path)
        except OSError as exc:
            raise TrainingError(f"checkpoint {path} cannot be read: {exc}") from exc
        if actual != expected:
            raise TrainingError(f"checkpoint {path} is corrupt (checksum mismatch)")
        try:
            state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for a bad pickle
            raise TrainingError(f"checkpoint {path} cannot be loaded: {exc}") from exc
        return state

    def latest(self, warn: Callable[[str], None]) -> dict[str, Any] | None:
        """The newest usable checkpoint; each unusable newer one is reported through ``warn``
        and skipped. None when there are none; an error when none is usable."""
        steps = self.steps()
        for i, step in enumerate(reversed(steps)):
            try:
                return self.read(step)
            except TrainingError as exc:
                before = steps[-2 - i] if i + 1 < len(steps) else None
                then = f"resuming from step {before}" if before is not None else "none left"
                warn(f"{exc}; {then}")
        if steps:
            raise TrainingError(f"no usable checkpoint in {self.directory}")
        return None
