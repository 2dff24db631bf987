"""Extraction on real bytes: real zip and tar archives built in memory, a real PDF written by
hand, real legacy encodings. No mocks."""

from __future__ import annotations

import codecs
import io
import json
import logging
import tarfile
import zipfile
from collections.abc import Callable
from typing import Literal

import pytest
from pypdf import PdfReader

from aicoderd.errors import IngestRefused
from aicoderd.sources.extract import Extracted, extract, iter_extract
from aicoderd.sources.extract_limits import ExtractLimits
from aicoderd.sources.kinds import kind_of

LIMITS = ExtractLimits(
    max_file_bytes=1 << 20,
    archive_max_members=50,
    archive_max_total_bytes=100 << 20,
    archive_max_ratio=100.0,
)


def one(data: bytes, name: str, limits: ExtractLimits = LIMITS) -> Extracted:
    docs = extract(data, name, limits)
    assert len(docs) == 1
    return docs[0]


def refused(data: bytes, name: str, limits: ExtractLimits = LIMITS) -> IngestRefused:
    with pytest.raises(IngestRefused) as info:
        extract(data, name, limits)
    assert str(info.value)  # every refusal carries a sentence for the .error.txt file
    return info.value


# -- builders ----------------------------------------------------------------------------------


def make_pdf(content: bytes) -> bytes:
    """A minimal valid PDF: one page, Helvetica as /F1, the given content stream."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792]"
        b" /Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content),
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref_at = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\n" % (len(objects) + 1)
    out += b"startxref\n%d\n" % xref_at + b"%%EOF\n"
    return bytes(out)


def make_zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, data in members.items():
            archive.writestr(path, data)
    return buf.getvalue()


TarMode = Literal["w", "w:gz", "w:xz"]


def make_tar(mode: TarMode, *build: Callable[[tarfile.TarFile], None]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as archive:
        for step in build:
            step(archive)
    return buf.getvalue()


def tar_file(path: str, data: bytes) -> Callable[[tarfile.TarFile], None]:
    info = tarfile.TarInfo(path)
    info.size = len(data)
    return lambda archive: archive.addfile(info, io.BytesIO(data))


def tar_entry(path: str, kind: bytes, linkname: str = "") -> Callable[[tarfile.TarFile], None]:
    info = tarfile.TarInfo(path)
    info.type = kind
    info.linkname = linkname
    return lambda archive: archive.addfile(info)


def notebook(cells: list[dict[str, object]], metadata: dict[str, object]) -> bytes:
    return json.dumps(
        {"nbformat": 4, "nbformat_minor": 5, "metadata": metadata, "cells": cells}
    ).encode()


PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00"


# -- kinds -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "head", "expected"),
    [
        ("notes.txt", b"", ("text", None)),
        ("server.LOG", b"", ("text", None)),
        ("README.md", b"", ("markdown", None)),
        ("index.rst", b"", ("rst", None)),
        ("page.xhtml", b"", ("html", None)),
        ("/home/u/drop/model.py", b"", ("code", "python")),
        ("App.TSX", b"", ("code", "typescript")),
        ("lib.rs", b"", ("code", "rust")),
        ("ci.yml", b"", ("code", "yaml")),
        ("main.tf", b"", ("code", "terraform")),
        ("Makefile", b"", ("code", "makefile")),
        ("Dockerfile", b"", ("code", "dockerfile")),
        ("CMakeLists.txt", b"", ("code", "cmake")),
        ("analysis.ipynb", b"", ("notebook", None)),
        ("paper.pdf", b"", ("pdf", None)),
        ("src.tar.gz", b"", ("archive", "tar")),
        ("src.TBZ2", b"", ("archive", "tar")),
        ("my.src.zip", b"", ("archive", "zip")),
        ("deploy", b"#!/bin/bash\nset -e\n", ("code", "shell")),
        ("tool", b"#!/usr/bin/env python3\n", ("code", "python")),
        ("tool", b"#!/usr/bin/env -S python3.12 -u\n", ("code", "python")),
        ("serve", b"#!/usr/bin/node\n", ("code", "javascript")),
        ("run.cgi", b"#!/usr/bin/perl -w\n", ("code", "perl")),
        ("notes.py", b"#!/bin/sh\n", ("code", "python")),  # the extension wins
        ("data.weird", b"just words\n", ("text", None)),
        ("LICENSE", b"#!/usr/bin/unknown\n", ("text", None)),
    ],
)
def test_kind_of(name: str, head: bytes, expected: tuple[str, str | None]) -> None:
    assert kind_of(name, head) == expected


@pytest.mark.parametrize(
    ("name", "kind", "language"),
    [
        ("a.txt", "text", None),
        ("a.md", "markdown", None),
        ("a.rst", "rst", None),
        ("a.go", "code", "go"),
        ("a.unknown", "text", None),
    ],
)
def test_text_kinds(name: str, kind: str, language: str | None) -> None:
    doc = one(b"body of the file\n", name)
    assert doc == Extracted("body of the file\n", kind, language, name)


def test_html_is_kept_as_html() -> None:
    html = b"<!doctype html>\n<p>Hello <b>there</b></p>\n"
    assert one(html, "page.htm") == Extracted(html.decode(), "html", None, "page.htm")


def test_shebang_file_without_extension() -> None:
    doc = one(b"#!/usr/bin/env python3\nprint('hi')\n", "/drop/bin/tool")
    assert (doc.kind, doc.language) == ("code", "python")


# -- decoding ----------------------------------------------------------------------------------


def test_python_source_round_trips_byte_for_byte() -> None:
    source = "def f():\n\treturn 'café ☕'   \n\n    # ünïcode  \t\n".encode()
    assert one(source, "m.py").text.encode() == source


def test_crlf_and_cr_become_lf() -> None:
    assert one(b"a\r\nb\rc\n", "a.txt").text == "a\nb\nc\n"


@pytest.mark.parametrize(
    "data",
    [
        codecs.BOM_UTF8 + "héllo\n".encode(),
        codecs.BOM_UTF16_LE + "héllo\r\n".encode("utf-16-le"),
        codecs.BOM_UTF16_BE + "héllo\n".encode("utf-16-be"),
        codecs.BOM_UTF32_LE + "héllo\n".encode("utf-32-le"),
    ],
    ids=["utf-8-bom", "utf-16-le", "utf-16-be", "utf-32-le"],
)
def test_byte_order_marks(data: bytes) -> None:
    assert one(data, "a.txt").text == "héllo\n"


def test_cp1252_french_is_detected() -> None:
    french = (
        "Il était une fois, dans un petit village de Provence, une vieille femme qui vivait\n"
        "seule avec son chat. Chaque matin, elle se levait très tôt pour aller chercher du pain\n"
        "frais à la boulangerie. Les habitants du village l'appréciaient beaucoup, car elle\n"
        "était toujours prête à rendre service. Un jour, un étranger arriva au village : il\n"
        "cherchait un endroit où passer l'été.\n"
    )
    # The same bytes are Latin-1: no character here differs between the two.
    assert one(french.encode("cp1252"), "conte.txt").text == french


def test_binary_is_refused() -> None:
    assert refused(PNG + b"\x00" * 64, "image.png").reason == "binary"


@pytest.mark.parametrize(
    "data", [b"print(1)\x00\x01\x02", codecs.BOM_UTF8 + b"print(1)\x00"], ids=["plain", "utf-8-bom"]
)
def test_nul_in_text_file_is_binary(data: bytes) -> None:
    assert refused(data, "a.py").reason == "binary"


def test_bad_utf16_is_undecodable() -> None:
    assert refused(codecs.BOM_UTF16_LE + b"a\x00b", "a.txt").reason == "undecodable"


def test_too_large_is_refused_first() -> None:
    small = ExtractLimits(10, 10, 100, 100.0)
    assert refused(b"\x00" * 11, "big.bin", small).reason == "too_large"


@pytest.mark.parametrize("data", [b"", b" \n\t\r\n  "])
def test_empty_is_refused(data: bytes) -> None:
    assert refused(data, "blank.txt").reason == "empty"


# -- notebooks ---------------------------------------------------------------------------------


def test_notebook_cells_in_order_without_outputs() -> None:
    cells: list[dict[str, object]] = [
        {"cell_type": "markdown", "metadata": {}, "source": ["# Title\n", "Some prose.\n"]},
        {
            "cell_type": "code",
            "metadata": {},
            "execution_count": 1,
            "source": "import math\nmath.pi",
            "outputs": [{"output_type": "execute_result", "data": {"text/plain": ["3.14159"]}}],
        },
        {"cell_type": "raw", "metadata": {}, "source": "raw stuff"},
        {"cell_type": "code", "metadata": {}, "source": [], "outputs": []},
        {"cell_type": "code", "metadata": {}, "source": ["x = 1\n"], "outputs": []},
    ]
    metadata: dict[str, object] = {"kernelspec": {"name": "ir", "language": "R"}}
    doc = one(notebook(cells, metadata), "nb.ipynb")
    assert doc.text == "# Title\nSome prose.\n\nimport math\nmath.pi\n\nx = 1"
    assert (doc.kind, doc.language) == ("notebook", "r")


@pytest.mark.parametrize(
    ("metadata", "language"),
    [({"language_info": {"name": "julia"}}, "julia"), ({}, "python")],
)
def test_notebook_language_fallbacks(metadata: dict[str, object], language: str) -> None:
    data = notebook([{"cell_type": "code", "source": "1 + 1"}], metadata)
    assert one(data, "nb.ipynb").language == language


@pytest.mark.parametrize(
    "data",
    [
        b"{not json",
        b'{"nbformat": 3, "worksheets": []}',
        b"[1, 2]",
        b'{"cells": [1]}',
        b'{"cells": [{"cell_type": "code", "source": 7}]}',
        b"[" * 100_000,
    ],
)
def test_invalid_notebook_is_refused(data: bytes) -> None:
    assert refused(data, "nb.ipynb").reason == "notebook_invalid"


# -- PDF ---------------------------------------------------------------------------------------


def test_pdf_text_is_extracted() -> None:
    pdf = make_pdf(b"BT /F1 12 Tf 72 712 Td (hello pdf world) Tj ET")
    assert "hello pdf world" in PdfReader(io.BytesIO(pdf)).pages[0].extract_text()
    doc = one(pdf, "paper.pdf")
    assert (doc.kind, doc.language) == ("pdf", None)
    assert doc.text.strip() == "hello pdf world"


def test_pdf_without_text_is_refused() -> None:
    pdf = make_pdf(b"0 0 m 100 100 l S")  # a line drawing: what a scan's page is, text-wise
    assert refused(pdf, "scan.pdf").reason == "pdf_no_text"


def test_corrupt_pdf_is_refused_without_pypdf_log_noise(caplog: pytest.LogCaptureFixture) -> None:
    level = logging.getLogger("pypdf").level
    with caplog.at_level(logging.DEBUG):
        assert refused(b"%PDF-1.4\nthis is not a pdf body\n", "bad.pdf").reason == "pdf_corrupt"
    assert not [r for r in caplog.records if r.name.startswith("pypdf")]
    assert logging.getLogger("pypdf").level == level


# -- archives ----------------------------------------------------------------------------------


def test_zip_members_become_documents() -> None:
    data = make_zip(
        {
            "pkg/": b"",
            "pkg/a.py": b"print('a')\n",
            "./docs/readme.md": b"# Docs\n",
            "__MACOSX/pkg/._a.py": b"\x00\x05\x16\x07",
            "pkg/.hidden.py": b"x = 1\n",
            "pkg/a.py~": b"backup\n",
            "inner.zip": make_zip({"b.py": b"b = 2\n"}),
            "logo.png": PNG,
        }
    )
    docs = extract(data, "arc.zip", LIMITS)
    assert docs == [
        Extracted("print('a')\n", "code", "python", "arc.zip!pkg/a.py"),
        Extracted("# Docs\n", "markdown", None, "arc.zip!docs/readme.md"),
    ]


@pytest.mark.parametrize("evil", ["../evil.py", "/etc/x", "pkg/../../x.py", "C:/x.py", "a\\..\\b"])
def test_zip_slip_is_refused(evil: str) -> None:
    data = make_zip({"ok.py": b"ok = 1\n", evil: b"boom = 1\n"})
    assert refused(data, "arc.zip").reason == "archive_unsafe_path"


@pytest.fixture(scope="module")
def zip_bomb() -> bytes:
    # 50 MB of zeros deflates to about 50 KB: a thousand-fold ratio.
    return make_zip({"zeros.txt": bytes(50_000_000)})


def test_zip_bomb_ratio_is_refused(zip_bomb: bytes) -> None:
    assert len(zip_bomb) < 100_000
    roomy = ExtractLimits(1 << 20, 50, 1 << 30, 100.0)
    error = refused(zip_bomb, "bomb.zip", roomy)
    assert error.reason == "archive_bomb"
    assert "fold" in str(error)


def test_zip_over_total_size_is_refused(zip_bomb: bytes) -> None:
    tight = ExtractLimits(1 << 20, 50, 10_000_000, 1e9)
    assert refused(zip_bomb, "bomb.zip", tight).reason == "archive_bomb"


def test_too_many_members_is_refused() -> None:
    data = make_zip({f"m{i}.py": b"x = 1\n" for i in range(LIMITS.archive_max_members + 1)})
    assert refused(data, "many.zip").reason == "archive_too_many_members"


def test_oversized_member_is_skipped() -> None:
    small = ExtractLimits(4096, 50, 1 << 20, 1000.0)
    data = make_zip({"big.txt": b"words " * 1000, "small.txt": b"words\n"})
    assert [d.name for d in extract(data, "a.zip", small)] == ["a.zip!small.txt"]


def test_tar_gz_skips_links_and_keeps_files() -> None:
    data = make_tar(
        "w:gz",
        tar_entry("./src", tarfile.DIRTYPE),
        tar_entry("./src/passwd", tarfile.SYMTYPE, "/etc/passwd"),
        tar_entry("./src/hard", tarfile.LNKTYPE, "src/main.c"),
        tar_entry("./src/fifo", tarfile.FIFOTYPE),
        tar_file("./src/main.c", b"int main(void) { return 0; }\n"),
    )
    assert extract(data, "src.tar.gz", LIMITS) == [
        Extracted("int main(void) { return 0; }\n", "code", "c", "src.tar.gz!src/main.c"),
    ]


def test_tar_slip_is_refused() -> None:
    data = make_tar("w", tar_file("ok.py", b"ok = 1\n"), tar_file("../../x", b"boom\n"))
    assert refused(data, "a.tar").reason == "archive_unsafe_path"


def test_tar_bomb_is_refused() -> None:
    data = make_tar("w:xz", tar_file("zeros.txt", bytes(5_000_000)))
    assert refused(data, "a.tar.xz").reason == "archive_bomb"


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (b"PK\x03\x04" + b"garbage" * 20, "bad.zip"),
        (make_zip({"a.py": b"a = 1\n" * 500})[:-40], "cut.zip"),
        (make_tar("w:gz", tar_file("a.py", b"a = 1\n" * 500))[:-30], "cut.tgz"),
        (b"not a tar at all, just text\n" * 50, "bad.tar"),
    ],
    ids=["garbage-zip", "truncated-zip", "truncated-tgz", "text-as-tar"],
)
def test_corrupt_archive_is_refused(data: bytes, name: str) -> None:
    assert refused(data, name).reason == "archive_corrupt"


def test_archive_of_only_binaries_is_refused_as_empty() -> None:
    data = make_zip({"a.png": PNG, "b.png": PNG, "c.txt": b"  \n"})
    error = refused(data, "pics.zip")
    assert error.reason == "empty"
    assert "3 members skipped" in str(error)
    assert "binary: 2" in str(error) and "empty: 1" in str(error)


def corrupt_second_member(members: dict[str, bytes]) -> bytes:
    """A zip whose second member's data is damaged (its CRC check fails when it is read)."""
    data = bytearray(make_zip(members))
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        second = archive.infolist()[1]
    start = second.header_offset + 30 + len(second.filename.encode())  # past its local header
    data[start : start + 8] = bytes(8)
    return bytes(data)


@pytest.mark.parametrize("build", ["zip", "tar"])
def test_archive_members_are_yielded_one_at_a_time(build: str) -> None:
    """Each member's document is handed on before the next member is read, so the caller never
    holds more than one (a damaged second member is found only after the first was taken)."""
    first, second = b"A = 1\n" * 50, b"B = 2\n" * 50
    if build == "zip":
        data, name = corrupt_second_member({"a.py": first, "b.py": second}), "x.zip"
    else:
        whole = make_tar("w", tar_file("a.py", first), tar_file("b.py", second))
        data, name = whole[: 3 * 512 + 100], "x.tar"  # cut inside b.py's data (512-byte blocks)
    documents = iter_extract(data, name, LIMITS)
    assert next(documents).text == first.decode()
    with pytest.raises(IngestRefused) as info:
        next(documents)
    assert info.value.reason == "archive_corrupt"
