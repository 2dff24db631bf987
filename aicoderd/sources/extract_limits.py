"""What extraction accepts: the size of a file or archive member, and an archive's member count,
total size and compression ratio. A light module: the daemon hands these limits to its folder
worker without loading the extractors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aicoderd.config import IngestConfig


@dataclass(frozen=True)
class ExtractLimits:
    max_file_bytes: int  # per file, and per archive member
    archive_max_members: int
    archive_max_total_bytes: int  # sum of uncompressed member sizes
    archive_max_ratio: float  # uncompressed / compressed, per member and overall

    @classmethod
    def from_config(cls, ingest: IngestConfig, max_file_bytes: int | None = None) -> ExtractLimits:
        """The ``ingest`` section's limits (a git source caps file sizes on its own)."""
        return cls(
            max_file_bytes=int(max_file_bytes or ingest.max_file_bytes),
            archive_max_members=ingest.archive_max_members,
            archive_max_total_bytes=int(ingest.archive_max_total_bytes),
            archive_max_ratio=ingest.archive_max_ratio,
        )
