"""Standalone builds over real files: outputs, the dataset on disk, increments == full build."""

from __future__ import annotations

import json
import random
from pathlib import Path

import datasets
import pytest

from aicoderd.config import CorpusConfig
from aicoderd.corpus.snapshot import SEPARATOR, Layout, read_removed

from .conftest import build_files

COLUMNS = ["text", "doc_id", "source", "uri", "kind", "language", "split"]


def drop_lines(text: str, share: float, seed: int) -> str:
    rng = random.Random(seed)
    return "\n".join(line for line in text.split("\n") if rng.random() >= share)


def write(root: Path, files: dict[str, str | bytes]) -> Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return root


def rows(out: Path) -> list[dict[str, object]]:
    ds = datasets.load_from_disk(str(out / "dataset"))
    assert ds.column_names == COLUMNS
    return list(ds)


def corpus_state(out: Path) -> dict[str, object]:
    """Everything a build produced that must not depend on how it was reached."""
    manifest = json.loads((out / "manifest.json").read_text())
    keep = ("documents", "bytes", "tokens_estimate", "splits", "removed", "redactions",
            "content_digest")  # fmt: skip
    removed = [(r["reason"], Path(r["uri"]).name, r["dup_of"]) for r in read_removed(out)]
    return {
        "manifest": {k: manifest[k] for k in keep},
        "rows": [{**r, "source": None, "uri": Path(str(r["uri"])).name} for r in rows(out)],
        "text": (out / "preprocessed_corpus.txt").read_bytes(),
        "removed": sorted(removed, key=str),
    }


@pytest.fixture
def trees(tmp_path: Path, stdlib_texts: dict[str, str]) -> tuple[Path, Path, Path]:
    """Three input folders; later ones hold duplicates of earlier ones."""
    texts = list(stdlib_texts.values())
    a = write(tmp_path / "in" / "a", {f"m{i}.py": texts[i] for i in range(8)})
    b = write(
        tmp_path / "in" / "b",
        {
            **{f"n{i}.py": texts[8 + i] for i in range(6)},
            "near_m0.py": drop_lines(texts[0], 0.05, 1),  # near duplicate of a/m0.py
            "notes.md": "# Notes\n\n" + "Plain prose about the parser and its options. " * 20,
        },
    )
    c = write(
        tmp_path / "in" / "c",
        {
            "spaces_n0.py": texts[8].replace("\n", "   \n"),  # exact duplicate of b/n0.py
            "near_near.py": drop_lines(texts[0], 0.07, 2),  # near duplicate of a/m0.py
            **{f"o{i}.py": texts[14 + i] for i in range(4)},
        },
    )
    return a, b, c


def test_outputs_dataset_and_text_agree(tmp_path: Path, stdlib_texts: dict[str, str]) -> None:
    texts = list(stdlib_texts.values())
    secret = "ghp_" + "Zq3xW9" * 6
    src = write(
        tmp_path / "src",
        {
            "good.py": texts[0],
            "copy/good_again.py": texts[0],  # same content: one document
            "keyed.py": f"TOKEN = {secret!r}\n" + texts[1],
            "tiny.py": "x = 1\n",
            "page.html": "<html><body><main><h1>Title</h1><p>Some words here &amp; there, "
            "long enough to pass the length filter.</p><pre>for i in range(3):\n    print(i)"
            "</pre></main></body></html>",
            "data.bin": b"\x00\x01\x02binary",
            ".hidden.py": texts[2],  # junk name: never read
        },
    )
    out = tmp_path / "out"
    manifest = build_files(out, src, config=CorpusConfig(eval_fraction=0.5))
    assert manifest is not None
    table = rows(out)
    assert len(table) == manifest["documents"] == 3
    # inside a folder, paths in order: copy/good_again.py is met first and stands for both
    names = [Path(str(r["uri"])).name for r in table]
    assert names == ["good_again.py", "keyed.py", "page.html"]
    by_name = dict(zip(names, table, strict=True))
    assert by_name["good_again.py"]["text"] == texts[0]
    good = by_name["good_again.py"]
    assert good["kind"] == "code" and good["language"] == "python"
    assert secret not in str(by_name["keyed.py"]["text"])
    assert "TOKEN = '<SECRET>'" in str(by_name["keyed.py"]["text"])
    assert "```\nfor i in range(3):\n    print(i)\n```" in str(by_name["page.html"]["text"])
    assert {r["split"] for r in table} <= {"train", "eval"}
    # the text file is the dataset's texts joined by the separator, in the same order
    joined = (out / "preprocessed_corpus.txt").read_text(encoding="utf-8")
    assert joined.split(SEPARATOR) == [r["text"] for r in table]
    assert manifest["bytes"] == sum(len(str(r["text"]).encode()) for r in table)
    assert manifest["redactions"] == {"github_token": 1}
    assert manifest["removed"] == {"ingest.binary": 1, "quality.min_chars": 1}
    assert manifest["inputs"]["same_content"] == 1
    removed = {Path(r["uri"]).name: r["reason"] for r in read_removed(out)}
    assert removed == {"tiny.py": "quality.min_chars", "data.bin": "ingest.binary"}
    assert manifest["steps"]["secrets"]["redacted.github_token"] == 1
    assert (out / "current").is_symlink() and Layout(out).current_id() == manifest["snapshot"]


def test_three_increments_equal_one_full_build(
    tmp_path: Path, trees: tuple[Path, Path, Path]
) -> None:
    a, b, c = trees
    full = build_files(tmp_path / "full", a, b, c)
    assert full is not None and full["removed"] == {"dedup.exact": 1, "dedup.near": 2}
    step = tmp_path / "step"
    first = build_files(step, a)
    second = build_files(step, a, b)
    third = build_files(step, a, b, c)
    assert first and second and third
    assert [m["build"]["processed"] for m in (first, second, third)] == [8, 8, 6]
    assert third["build"]["mode"] == "incremental" and third["build"]["reused"] == 15
    assert corpus_state(step) == corpus_state(tmp_path / "full")
    assert build_files(step, a, b, c) is None  # nothing changed: no new snapshot


def test_retired_documents_leave_and_their_duplicates_return(
    tmp_path: Path, trees: tuple[Path, Path, Path]
) -> None:
    a, b, c = trees
    out = tmp_path / "out"
    build_files(out, a, b, c)
    (a / "m0.py").unlink()  # the kept original of two near duplicates
    manifest = build_files(out, a, b, c)
    assert manifest is not None and manifest["build"]["retired"] == 1
    assert manifest["build"]["replayed"] >= 1
    assert not any(Path(str(r["uri"])).name == "m0.py" for r in rows(out))
    assert any(Path(str(r["uri"])).name == "near_m0.py" for r in rows(out))  # back
    assert corpus_state(out) == corpus_state_of_full(tmp_path / "again", a, b, c)


def corpus_state_of_full(out: Path, *inputs: Path) -> dict[str, object]:
    build_files(out, *inputs)
    return corpus_state(out)


def test_split_is_stable_and_config_changes_rebuild(
    tmp_path: Path, trees: tuple[Path, Path, Path]
) -> None:
    a, b, c = trees
    out = tmp_path / "out"
    config = CorpusConfig(eval_fraction=0.3)
    build_files(out, a, b, config=config)
    before = {r["doc_id"]: r["split"] for r in rows(out)}
    assert set(before.values()) == {"train", "eval"}
    build_files(out, a, b, c, config=config)
    after = {r["doc_id"]: r["split"] for r in rows(out)}
    assert {k: after[k] for k in before} == before
    # a config change that alters decisions forgets the ledger: a full build
    manifest = build_files(out, a, b, c, config=CorpusConfig(eval_fraction=0.3, min_chars=10_000))
    assert manifest is not None and manifest["build"]["mode"] == "full"
    assert manifest["removed"]["quality.min_chars"] > 0
    # a config change that alters no decision keeps it
    assert build_files(out, a, b, c, config=CorpusConfig(eval_fraction=0.3, min_chars=10_000,
                                                        keep_snapshots=5)) is None  # fmt: skip


def test_old_snapshots_are_pruned(tmp_path: Path, trees: tuple[Path, Path, Path]) -> None:
    a, b, c = trees
    out = tmp_path / "out"
    for inputs in ((a,), (a, b), (a, b, c)):
        build_files(out, *inputs, config=CorpusConfig(keep_snapshots=2))
    snapshots = sorted(p.name for p in (out / "snapshots").iterdir())
    assert len(snapshots) == 2 and Layout(out).current_id() == snapshots[-1]
