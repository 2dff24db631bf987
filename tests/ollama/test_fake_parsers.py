"""The product's Ollama parsers against the fake's own, on the same inputs: model names, GGUF
headers, versions. The fake shares no code with the product (an import contract holds it), so
a bug in either shows here instead of hiding in every deploy test."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from aicoderd.errors import OllamaError
from aicoderd.ollama import ggufinfo, names
from aicoderd.ollama.deploy import QUANTIZABLE_SOURCES, parse_version
from aicoderd.ollama.testing import ggufheader, modelnames
from aicoderd.ollama.testing.server import version_tuple

NAMES = [
    "coder",
    "coder:v1",
    "Coder:V1",
    "team/coder:v1",
    "library/coder",
    "registry.ollama.ai/library/coder:latest",
    "REGISTRY.OLLAMA.AI/Library/coder",
    "myhost:5000/team/m:v1",
    "https://myhost:5000/team/m:v1",
    "http://host",
    "a://b",
    "https://m",
    "a_b.c-d:1.2_3-x",
    "_m:_t",
    "",
    "m:",
    ":t",
    "ns/",
    "/m",
    "/ns/m",
    "//m",
    "ns//m",
    "-m",
    "m:-t",
    ".m",
    "m@sha",
    "ns.x/m",
    "h.o.st/ns/m",
    "h_o-st/ns/m",
    "é",
    "m:é",
    "a/b/c/d/e",
    "a/b/c/d",
    "m:t:u",
    "m:" + "t" * 80,
    "m:" + "t" * 81,
    "m" * 80,
    "m" * 81,
    "n" * 80 + "/m",
    "n" * 81 + "/m",
    "h" * 350 + "/n/m",
    "h" * 351 + "/n/m",
    "x:cloud",
    "x:v1-cloud",
    "x:local",
    "h:1/ns/m",
    "host/ns/m:t/x",
]


@pytest.mark.parametrize("text", NAMES)
def test_names_agree_with_the_fakes(text: str) -> None:
    fake = modelnames.parse(text)
    assert names.is_valid(text) == fake.valid(), text
    if fake.valid():
        ours = names.parse(text)
        assert ours.display == fake.display()
        assert ours.key() == fake.key()
    else:
        with pytest.raises(OllamaError, match="invalid model name"):
            names.parse(text)


VERSIONS = ["0.5.4", "0.5.5", "0.6.8", "0.7.0", "0.12.3", "0.22.1", "0.30.0", "0.32.15"]


def test_versions_order_as_the_fakes() -> None:
    shuffled = [*VERSIONS[4:], "v0.33.0-rc2", "0.0.0", *VERSIONS[:4], "1.0.0"]
    assert sorted(shuffled, key=parse_version) == sorted(shuffled, key=version_tuple)
    assert sorted(shuffled, key=parse_version)[-1] == "0.0.0"  # a dev build is the newest
    for v in shuffled:
        assert (parse_version(v) < parse_version("0.5.5")) == (
            version_tuple(v) < version_tuple("0.5.5")
        )


def _both(path: Path) -> tuple[ggufinfo.Header, ggufheader.Decoded]:
    return ggufinfo.read_file(str(path)), ggufheader.decode(path)


def test_exported_headers_read_alike(exports: dict[str, Path]) -> None:
    for out_type, path in exports.items():
        ours, fake = _both(path)
        assert ours.kv == fake.kv, out_type
        assert ours.architecture == fake.architecture == "llama"
        assert ours.file_type_u32 == fake.file_type_id
        assert (ours.file_type in QUANTIZABLE_SOURCES) == (fake.file_type in ("F16", "BF16"))
        if out_type in ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1"):
            assert ours.file_type == fake.file_type, out_type
        assert len(ours.tensors) == len(fake.tensor_elements)


def test_broken_files_fail_alike(exports: dict[str, Path], tmp_path: Path) -> None:
    data = exports["f16"].read_bytes()
    cases = {
        "truncated": (data[: len(data) // 2], "exceeds file size"),
        "header cut": (data[:100], "unexpected EOF"),
        "not gguf": (b"PK\x03\x04" + data[4:200], "not in GGUF format"),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(ggufinfo.GGUFError, match=message):
            ggufinfo.read_file(str(path))
        with pytest.raises(ggufheader.BadGGUF, match=message):
            ggufheader.decode(path)


KV = tuple[str, int, bytes]  # key, value type, packed value
TENSOR = tuple[str, list[int], int]  # name, shape, ggml type


def _raw_gguf(kvs: list[KV], tensors: list[TENSOR]) -> bytes:
    """A GGUF v3 written by hand, every tensor at offset 0, 4 KiB of data."""
    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs))
    for key, kind, packed in kvs:
        out += _str(key) + struct.pack("<I", kind) + packed
    for name, shape, kind in tensors:
        out += _str(name) + struct.pack("<I", len(shape)) + struct.pack(f"<{len(shape)}Q", *shape)
        out += struct.pack("<IQ", kind, 0)
    out += b"\0" * (-len(out) % 32)
    return out + b"\0" * 4096


def _str(text: str) -> bytes:
    return struct.pack("<Q", len(text.encode())) + text.encode()


CRAFTED: dict[str, tuple[list[KV], list[TENSOR], str | None]] = {
    "file type as uint64": (
        [
            ("general.architecture", 8, _str("llama")),
            ("general.file_type", 10, struct.pack("<Q", 1)),
        ],
        [("w", [32, 2], 1)],
        None,
    ),
    "file type as uint32": ([("general.file_type", 4, struct.pack("<I", 1))], [], None),
    "arrays and scalars": (
        [
            ("a.strings", 9, struct.pack("<IQ", 8, 2) + _str("x") + _str("é")),
            ("a.ints", 9, struct.pack("<IQ", 5, 3) + struct.pack("<3i", -1, 0, 7)),
            ("a.bool", 7, b"\x01"),
            ("a.f64", 12, struct.pack("<d", 0.25)),
        ],
        [],
        None,
    ),
    "bad kv type": ([("x", 13, b"")], [], "invalid type: 13"),
    "bad array type": ([("x", 9, struct.pack("<IQ", 13, 1))], [], "invalid type: 13"),
    "array of arrays": ([("x", 9, struct.pack("<IQ", 9, 1))], [], "invalid type: 9"),
    "five dimensions": ([], [("w", [1, 1, 1, 1, 1], 0)], "5 dimensions"),
    "zero alignment": ([("general.alignment", 4, struct.pack("<I", 0))], [], "non-zero"),
    "q8_0 rows not whole blocks": ([], [("w", [33, 1], 8)], "multiple of 32"),
    "tensor past the end": ([], [("w", [4096, 4], 0)], "exceeds file size"),
}


@pytest.mark.parametrize("case", list(CRAFTED))
def test_crafted_headers_read_alike(case: str, tmp_path: Path) -> None:
    kvs, tensors, error = CRAFTED[case]
    path = tmp_path / "x.gguf"
    path.write_bytes(_raw_gguf(kvs, tensors))
    if error:
        with pytest.raises(ggufinfo.GGUFError, match=error):
            ggufinfo.read_file(str(path))
        with pytest.raises(ggufheader.BadGGUF, match=error):
            ggufheader.decode(path)
        return
    ours, fake = _both(path)
    assert ours.kv == fake.kv
    assert ours.file_type_u32 == fake.file_type_id
    assert ours.file_type == fake.file_type


def test_fake_block_sizes_are_ggmls() -> None:
    """The fake's own size table against the gguf package's (the product's source)."""
    import gguf

    from aicoderd.ollama.testing.ggufheader import _BLOCKS

    for kind, sizes in _BLOCKS.items():
        assert gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(kind)] == sizes, kind
