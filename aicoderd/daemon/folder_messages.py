"""What the daemon and its folder worker tell each other (pickled over one socket pair), and the
files they talk about. A light module: the daemon imports it without the extractors."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from aicoderd.sources.extract_limits import ExtractLimits
from aicoderd.sources.pathnames import uri_path

Mode = Literal["consume", "mirror", "copy"]


@dataclass(frozen=True)
class Target:
    """One file to ingest. ``copy`` (files handed over by ``aicoder ingest``) never touches the
    original; ``consume`` removes it once stored; ``mirror`` never touches it either."""

    source: str
    mode: Mode
    root: Path
    path: Path

    @property
    def uri(self) -> str:
        """The file's place in the store (a name that is not UTF-8 escaped: see pathnames)."""
        return uri_path(str(self.path))


@dataclass
class Outcome:
    path: str
    status: Literal["stored", "duplicate", "refused", "unchanged", "missing"]
    documents: int = 0
    reason: str | None = None
    message: str | None = None


@dataclass(frozen=True)
class FolderPlan:
    path: Path
    mode: Mode
    recursive: bool
    settle: float
    source: str


@dataclass(frozen=True)
class Plan:
    """What to watch and how; a new generation replaces the folders and rescans."""

    generation: int
    folders: tuple[FolderPlan, ...]
    extra_junk: tuple[str, ...]
    batch_size: int
    rescan_interval: float
    stuck_after: float
    limits: ExtractLimits


@dataclass(frozen=True)
class IngestRequest:
    """Files handed over by ``aicoder ingest``: one batch, answered by :class:`Ingested`."""

    id: int
    targets: list[Target]
    limits: ExtractLimits


@dataclass(frozen=True)
class Stop:
    pass


@dataclass(frozen=True)
class Progress:
    generation: int
    watcher: str  # "inotify" | "polling"
    pending: tuple[int, ...]  # per folder of the plan, in order
    batches: int  # batches stored since the last report: their events are in the store


@dataclass(frozen=True)
class Ingested:
    id: int
    outcomes: list[Outcome] | None  # None: the batch failed (logged by the worker)
