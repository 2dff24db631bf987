"""Model versions under ``data_dir/models/``: ``<version>/`` directories and the ``current``
link to the promoted one (swapped atomically, so a reader sees the old or the new model)."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from aicoderd.errors import TrainingError
from aicoderd.fsutil import fsync_dir

CURRENT = "current"
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def new_version(kind: str, job_id: int) -> str:
    """A sortable version name; the job id makes it stable across a resumed job."""
    return f"{time.strftime('%Y%m%d')}-{kind}-{job_id:05d}"


def version_dir(models_dir: Path, version: str) -> Path:
    if not _VERSION.match(version) or version == CURRENT:
        raise TrainingError(f"bad model version name {version!r}")
    return models_dir / version


def current(models_dir: Path) -> Path | None:
    """The promoted model's directory, or None before the first promotion."""
    link = models_dir / CURRENT
    return link.resolve() if link.is_symlink() and link.resolve().is_dir() else None


def resolve(models_dir: Path, name: str) -> Path:
    """A model given as a directory path or as a version under ``models_dir``."""
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    candidate = models_dir / name
    if candidate.is_dir():
        return candidate.resolve() if candidate.is_symlink() else candidate
    raise TrainingError(f"no model directory {name} (nor {candidate})")


def promote(models_dir: Path, model_dir: Path) -> None:
    """Point ``current`` at ``model_dir``."""
    models_dir.mkdir(parents=True, exist_ok=True)
    target = model_dir.resolve()
    rel = target.name if target.parent == models_dir.resolve() else str(target)
    tmp = models_dir / f".{CURRENT}.{os.getpid()}"
    tmp.unlink(missing_ok=True)
    os.symlink(rel, tmp)
    os.replace(tmp, models_dir / CURRENT)
    fsync_dir(models_dir)
