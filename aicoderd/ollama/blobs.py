"""Getting one file into Ollama's blob store: sha256 it, ``HEAD``, and ``POST`` the raw bytes
only when missing.

An upload moves ``NEW → HASHED → (UPLOADING →) PRESENT``. The body is streamed in chunks and
hashed again on the way, so a file that changes mid-upload is caught here, not by the server.
An early answer (the server already had it) or a broken connection means: ``HEAD`` again.
The digest is cached beside the file (keyed by size and mtime), so a resumed deploy does not
hash a multi-GB file twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from enum import StrEnum
from pathlib import Path

import httpx

from aicoderd.errors import OllamaError
from aicoderd.fsutil import atomic_write
from aicoderd.ollama.client import Client

CHUNK = 4 * 2**20
Progress = Callable[[str, int, int], None]  # (phase, done bytes, total bytes)


class UploadState(StrEnum):
    NEW = "new"
    HASHED = "hashed"
    UPLOADING = "uploading"
    PRESENT = "present"


def _cache_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.sha256")


def file_digest(path: Path, progress: Progress | None = None) -> str:
    """``sha256:<64 lowercase hex>`` of ``path``, from the cache when the file is unchanged."""
    st = path.stat()
    stamp = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    cache = _cache_path(path)
    with contextlib.suppress(OSError, ValueError):
        cached = json.loads(cache.read_text())
        if {k: cached.get(k) for k in stamp} == stamp:
            return str(cached["digest"])
    h = hashlib.sha256()
    done = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
            done += len(chunk)
            if progress:
                progress("hashing", done, st.st_size)
    digest = "sha256:" + h.hexdigest()
    with contextlib.suppress(OSError):
        atomic_write(cache, json.dumps({**stamp, "digest": digest}).encode(), durable=False)
    return digest


class BlobUpload:
    def __init__(self, client: Client, path: Path, attempts: int = 3) -> None:
        self.client = client
        self.path = path
        self.attempts = attempts
        self.state = UploadState.NEW
        self.digest = ""
        self.uploaded_bytes = 0  # bytes actually sent (0 when the server had the blob)

    def _expect(self, *states: UploadState) -> None:
        if self.state not in states:
            allowed = " or ".join(s.value for s in states)
            raise OllamaError(
                f"blob upload of {self.path.name} is {self.state.value}, not {allowed}"
            )

    def hash(self, progress: Progress | None = None) -> str:
        self._expect(UploadState.NEW)
        self.digest = file_digest(self.path, progress)
        self.state = UploadState.HASHED
        return self.digest

    def ensure(self, progress: Progress | None = None) -> str:
        """Make the blob present on the server; returns its digest."""
        self._expect(UploadState.HASHED, UploadState.PRESENT)
        for attempt in range(1, self.attempts + 1):
            if self.client.has_blob(self.digest):
                self.state = UploadState.PRESENT
                return self.digest
            self.state = UploadState.UPLOADING
            try:
                self.client.post_blob(self.digest, self._body(progress), self.path.stat().st_size)
            except (httpx.TransportError, OSError) as exc:
                if attempt == self.attempts:
                    raise OllamaError(
                        f"uploading {self.path.name} failed {attempt} times: {exc}"
                    ) from exc
            except _Changed as exc:
                raise OllamaError(str(exc)) from None
            self.state = UploadState.HASHED  # re-check with HEAD whatever the answer was
        if self.client.has_blob(self.digest):
            self.state = UploadState.PRESENT
            return self.digest
        raise OllamaError(f"{self.digest} is still missing after {self.attempts} uploads")

    def _body(self, progress: Progress | None) -> Iterator[bytes]:
        h = hashlib.sha256()
        total = os.path.getsize(self.path)
        done = 0
        with open(self.path, "rb") as fh:
            while chunk := fh.read(CHUNK):
                h.update(chunk)
                done += len(chunk)
                self.uploaded_bytes += len(chunk)
                if progress:
                    progress("uploading", done, total)
                if done == total and "sha256:" + h.hexdigest() != self.digest:
                    raise _Changed(f"{self.path} changed while it was uploaded")
                yield chunk


class _Changed(Exception):
    pass
