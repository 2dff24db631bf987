"""Turn a file's raw bytes into UTF-8 text documents, or refuse it with a reason.

Each document kind has one extractor in ``_EXTRACTORS``. Archives are opened in memory, never
unpacked to disk and never followed through links; every member goes through the same
extractors, one at a time: :func:`iter_extract` yields each member's document before it reads
the next, so memory stays bounded by ``max_file_bytes`` whatever the archive expands to. Plain
UTF-8 files take a fast path (NUL check, decode, newline fix) because the daemon must keep up
with hundreds of small files a second.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import logging
import lzma
import os
import re
import stat
import tarfile
import threading
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from aicoderd.errors import IngestRefused
from aicoderd.sources.decode import decode_text
from aicoderd.sources.extract_limits import ExtractLimits
from aicoderd.sources.kinds import ARCHIVE, HEAD_BYTES, TEXT_KINDS, is_junk, kind_of


def read_file(path: Path, st: os.stat_result, limits: ExtractLimits) -> bytes:
    """A regular file's bytes (``st`` from ``os.lstat``): links, special files and files over
    the size limit are refused with the reason."""
    if stat.S_ISLNK(st.st_mode):
        raise IngestRefused("symlink", "symbolic link: links are never followed")
    if not stat.S_ISREG(st.st_mode):
        raise IngestRefused("not_regular_file", "not a regular file (device, fifo or socket)")
    if st.st_size > limits.max_file_bytes:
        raise IngestRefused(
            "too_large", f"file of {st.st_size} bytes is over the limit of {limits.max_file_bytes}"
        )
    # O_NOFOLLOW: a file swapped for a link after the lstat is still refused.
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as fh:
        data = fh.read(limits.max_file_bytes + 1)
    if len(data) > limits.max_file_bytes:
        raise IngestRefused("too_large", "file grew over the size limit while being read")
    return data


@dataclass(frozen=True)
class Extracted:
    text: str  # the document text (stored later as UTF-8)
    kind: str  # one of kinds.DOCUMENT_KINDS
    language: str | None  # code: its language; notebook: the kernel's; else None
    name: str  # the given name; for archive members "<archive name>!<member path>"


def extract(data: bytes, name: str, limits: ExtractLimits) -> list[Extracted]:
    """The documents in one file; raises IngestRefused when it cannot enter the corpus."""
    return list(iter_extract(data, name, limits))


def iter_extract(data: bytes, name: str, limits: ExtractLimits) -> Iterator[Extracted]:
    """The documents in one file, each yielded before the next archive member is read.

    Raises IngestRefused, possibly after some documents were yielded (a corrupt or bomb
    archive is found out as it is read): the caller then refuses the whole file.
    """
    if len(data) > limits.max_file_bytes:
        raise IngestRefused(
            "too_large", f"file of {len(data)} bytes is over the limit of {limits.max_file_bytes}"
        )
    kind, language = kind_of(name, data[:HEAD_BYTES])
    if kind == ARCHIVE:
        yield from _extract_archive(data, name, language, limits)
    else:
        yield _extract_one(data, name, kind, language)


def _extract_one(data: bytes, name: str, kind: str, language: str | None) -> Extracted:
    text, language = _EXTRACTORS[kind](data, language)
    if not text or text.isspace():
        raise IngestRefused("empty", "empty file: no text, or only whitespace")
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return Extracted(text=text, kind=kind, language=language, name=name)


# -- text --------------------------------------------------------------------------------------


def _plain(data: bytes, language: str | None) -> tuple[str, str | None]:
    return decode_text(data), language


# -- notebooks ---------------------------------------------------------------------------------

# Cells that carry the author's text; raw cells and all outputs are left out.
_NOTEBOOK_CELLS = ("markdown", "code")


def _notebook(data: bytes, language: str | None) -> tuple[str, str | None]:
    try:
        notebook = json.loads(decode_text(data))
    except json.JSONDecodeError as exc:
        raise IngestRefused(
            "notebook_invalid", f"notebook is not valid JSON: {exc.msg} at line {exc.lineno}"
        ) from exc
    except RecursionError as exc:  # JSON nested deeper than Python's stack
        raise IngestRefused("notebook_invalid", "notebook JSON is nested too deeply") from exc
    cells = notebook.get("cells") if isinstance(notebook, dict) else None
    if not isinstance(cells, list):
        raise IngestRefused("notebook_invalid", "notebook has no list of cells (nbformat 4)")
    texts = (_cell_text(cell) for cell in cells)
    # Cells end in their own newlines or not; strip them so each join is one blank line.
    text = "\n\n".join(t.rstrip("\r\n") for t in texts if t)
    return text, _kernel_language(notebook.get("metadata"))


def _cell_text(cell: Any) -> str:
    if not isinstance(cell, dict):
        raise IngestRefused("notebook_invalid", "notebook cell is not a JSON object")
    if cell.get("cell_type") not in _NOTEBOOK_CELLS:
        return ""
    source = cell.get("source", "")
    if isinstance(source, list) and all(isinstance(line, str) for line in source):
        return "".join(source)
    if isinstance(source, str):
        return source
    raise IngestRefused("notebook_invalid", "notebook cell source is neither text nor lines")


def _kernel_language(metadata: Any) -> str:
    for section, key in (("kernelspec", "language"), ("language_info", "name")):
        value = _get(_get(metadata, section), key)
        if isinstance(value, str) and value:
            return value.lower()
    return "python"


def _get(mapping: Any, key: str) -> Any:
    return mapping.get(key) if isinstance(mapping, dict) else None


# -- PDF ---------------------------------------------------------------------------------------


class _QuietLogger:
    """Holds a logger at ERROR while any thread is inside, then restores its level once."""

    def __init__(self, name: str) -> None:
        self._logger = logging.getLogger(name)
        self._lock = threading.Lock()
        self._inside = 0
        self._saved = logging.NOTSET

    def __enter__(self) -> None:
        with self._lock:
            if self._inside == 0:
                self._saved = self._logger.level
                self._logger.setLevel(logging.ERROR)
            self._inside += 1

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with self._lock:
            self._inside -= 1
            if self._inside == 0:
                self._logger.setLevel(self._saved)


# pypdf warns on its own logger about every oddity of a malformed PDF; the refusal says enough.
_QUIET_PYPDF = _QuietLogger("pypdf")


def _pdf(data: bytes, language: str | None) -> tuple[str, str | None]:
    from pypdf import PdfReader  # here: it brings Pillow and fontTools (~30 MB) into memory

    with _QUIET_PYPDF:
        try:
            reader = PdfReader(io.BytesIO(data))
            locked = reader.is_encrypted and not reader.decrypt("")
            pages = [] if locked else [page.extract_text() for page in reader.pages]
        except Exception as exc:  # pypdf raises many exception types on malformed input
            raise IngestRefused("pdf_corrupt", f"corrupt PDF: {exc}") from exc
    if locked:
        raise IngestRefused("unsupported", "encrypted PDF: it opens only with a password")
    text = "\n\n".join(pages)
    if not text or text.isspace():
        raise IngestRefused("pdf_no_text", "PDF has no text layer (a scan?); OCR it first")
    return text, None


# Document kind -> extractor: (bytes, language from kinds) -> (text, language).
_EXTRACTORS: dict[str, Callable[[bytes, str | None], tuple[str, str | None]]] = {
    **dict.fromkeys(TEXT_KINDS, _plain),
    "notebook": _notebook,
    "pdf": _pdf,
}


# -- archives ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    """One archive member as its header declares it."""

    path: str  # as stored in the archive
    skip: str | None  # why it is never read (a directory, a link...), or None for a file
    size: int  # declared uncompressed size
    compressed: int | None  # compressed size, where the format records one per member
    open: Callable[[], IO[bytes]]


def _zip_entries(data: bytes) -> Generator[_Entry, None, None]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for info in archive.infolist():
            opener = functools.partial(archive.open, info)
            yield _Entry(info.filename, _zip_skip(info), info.file_size, info.compress_size, opener)


def _zip_skip(info: zipfile.ZipInfo) -> str | None:
    # Unix file-type bits, when the zip was made on Unix; many writers leave them zero.
    file_type = stat.S_IFMT(info.external_attr >> 16)
    if info.is_dir():
        return "directory"
    if file_type not in (0, stat.S_IFREG):
        return "link or special file"
    if info.flag_bits & 0x1:
        return "encrypted"
    return None


def _tar_entries(data: bytes) -> Generator[_Entry, None, None]:
    # Headers are read one at a time, so a bomb is refused before its data is decompressed.
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as archive:
        for info in archive:
            opener = functools.partial(_tar_open, archive, info)
            yield _Entry(info.name, _tar_skip(info), info.size, None, opener)


def _tar_skip(info: tarfile.TarInfo) -> str | None:
    if info.isreg():
        return None
    return "directory" if info.isdir() else "link or special file"


def _tar_open(archive: tarfile.TarFile, info: tarfile.TarInfo) -> IO[bytes]:
    handle = archive.extractfile(info)
    if handle is None:  # only regular files reach here, which always have data
        raise tarfile.ReadError(f"no data for member {info.name}")
    return handle


_ARCHIVE_FORMATS: dict[str, Callable[[bytes], Generator[_Entry, None, None]]] = {
    "zip": _zip_entries,
    "tar": _tar_entries,
}

# What a damaged zip, tar, gzip, bzip2 or xz stream raises while being read (zipfile raises
# ValueError when a mangled header makes it seek before the start).
_CORRUPT = (
    zipfile.BadZipFile,
    tarfile.TarError,
    EOFError,
    zlib.error,
    lzma.LZMAError,
    OSError,
    ValueError,
)


def _extract_archive(
    data: bytes, name: str, archive_format: str | None, limits: ExtractLimits
) -> Iterator[Extracted]:
    entries_of = _ARCHIVE_FORMATS.get(archive_format or "")
    if entries_of is None:
        raise IngestRefused("unsupported", f"unsupported archive format {archive_format!r}")
    reader = _ArchiveReader(name, len(data), limits)
    with contextlib.closing(entries_of(data)) as entries:
        while (document := _next_document(reader, entries)) is not None:
            yield document  # outside the try: the caller's own errors are not "corrupt"
    reader.finish()


def _next_document(
    reader: _ArchiveReader, entries: Generator[_Entry, None, None]
) -> Extracted | None:
    """The next member that becomes a document; None at the end of the archive."""
    try:
        for entry in entries:
            document = reader.take(entry)
            if document is not None:
                return document
    except _CORRUPT as exc:
        raise IngestRefused("archive_corrupt", f"corrupt or truncated archive: {exc}") from exc
    except NotImplementedError as exc:  # a zip made by a tool newer than Python's zipfile
        raise IngestRefused("unsupported", f"unsupported archive: {exc}") from exc
    return None


_DRIVE = re.compile(r"^[A-Za-z]:")
# Under this size a member cannot be a bomb, whatever its ratio (one line of 3,000 spaces
# compresses 100-fold), so ratios are judged only above it.
_RATIO_FLOOR_BYTES = 1 << 20


class _ArchiveReader:
    """Checks each member against the limits, then extracts it or counts why it was skipped.
    Keeps counts only: a member's document is handed on before the next one is read."""

    def __init__(self, name: str, archive_bytes: int, limits: ExtractLimits) -> None:
        self.name = name
        self.archive_bytes = archive_bytes
        self.limits = limits
        self.members = 0
        self.declared = 0  # sum of declared uncompressed sizes
        self.read = 0  # bytes actually decompressed
        self.skipped: Counter[str] = Counter()
        self.found = 0

    def take(self, entry: _Entry) -> Extracted | None:
        """The member's document, or None when it was skipped (and counted)."""
        self._check_header(entry)
        path = _member_path(entry.path)
        why = entry.skip or _junk(path)
        if why is None:
            found = self._extract(entry, path)
            if isinstance(found, Extracted):
                self.found += 1
                return found
            why = found
        self.skipped[why] += 1
        return None

    def finish(self) -> None:
        """At the end of the archive: refuse one that gave no document."""
        if self.found:
            return
        if not self.skipped:
            raise IngestRefused("empty", "empty archive: it has no members")
        counts = ", ".join(f"{why}: {n}" for why, n in self.skipped.most_common())
        total = self.skipped.total()
        raise IngestRefused(
            "empty", f"archive has no documents: {total} members skipped ({counts})"
        )

    def _check_header(self, entry: _Entry) -> None:
        self.members += 1
        if self.members > self.limits.archive_max_members:
            raise IngestRefused(
                "archive_too_many_members",
                f"archive has more than {self.limits.archive_max_members} members",
            )
        if _unsafe(entry.path):
            raise IngestRefused(
                "archive_unsafe_path", f"archive member {entry.path!r} would land outside it"
            )
        self.declared += entry.size
        self._check_total(self.declared, "declares")
        if entry.compressed is not None:
            self._check_ratio(entry.size, entry.compressed, f"member {entry.path!r}")
        self._check_ratio(self.declared, self.archive_bytes, "archive")

    def _check_total(self, total: int, verb: str) -> None:
        if total > self.limits.archive_max_total_bytes:
            raise IngestRefused(
                "archive_bomb",
                f"archive {verb} over {self.limits.archive_max_total_bytes} bytes uncompressed",
            )

    def _check_ratio(self, size: int, compressed: int, what: str) -> None:
        if size > _RATIO_FLOOR_BYTES and size > compressed * self.limits.archive_max_ratio:
            raise IngestRefused(
                "archive_bomb",
                f"{what} expands {size / max(compressed, 1):.0f}-fold, over the limit of "
                f"{self.limits.archive_max_ratio:g}",
            )

    def _extract(self, entry: _Entry, path: str) -> Extracted | str:
        """Extract one member: its document, or why it was skipped."""
        cap = self.limits.max_file_bytes
        if entry.size > cap:
            return "too_large"
        try:
            with entry.open() as handle:
                # Never trust the header alone: read one byte past the cap to see if more comes.
                data = handle.read(cap + 1)
        except NotImplementedError:  # a zip compression method or feature Python cannot read
            return "unsupported"
        self.read += len(data)
        self._check_total(self.read, "expands to")
        if len(data) > cap:
            return "too_large"
        kind, language = kind_of(path, data[:HEAD_BYTES])
        if kind == ARCHIVE:
            return "nested archive"
        try:
            return _extract_one(data, f"{self.name}!{path}", kind, language)
        except IngestRefused as exc:
            return exc.reason


def _unsafe(path: str) -> bool:
    """True for a name that could escape the archive's folder (zip-slip)."""
    path = path.replace("\\", "/")
    return path.startswith("/") or bool(_DRIVE.match(path)) or ".." in path.split("/")


def _member_path(path: str) -> str:
    # "./pkg/a.py" and "pkg//a.py" are "pkg/a.py"; tar writes the first form for `tar c .`.
    parts = path.replace("\\", "/").split("/")
    return "/".join(part for part in parts if part not in ("", "."))


def _junk(path: str) -> str | None:
    """Editor, OS or download leftovers: the same rule as for files in a watched folder."""
    if not path or any(is_junk(part) for part in path.split("/")):
        return "junk name"
    return None
