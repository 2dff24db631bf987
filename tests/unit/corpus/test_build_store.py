"""The daemon's side: building from the document store, through the ``corpus.build`` job."""

from __future__ import annotations

import io
import json
from pathlib import Path

import datasets
import pytest

from aicoderd.config import Settings
from aicoderd.corpus import build_job as job
from aicoderd.errors import JobSkipped
from aicoderd.jobctx import JobContext
from aicoderd.store import DocumentFiles, NewDocument, Store

from .test_build import drop_lines


def settings_for(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", socket=tmp_path / "s.sock", folders=[])


def ingest(settings: Settings, docs: dict[str, str]) -> None:
    """What ingestion does for each file: content-addressed text, then the store rows."""
    store = Store(settings.state_db)
    files = DocumentFiles(settings.documents_dir)
    new = []
    for uri, text in docs.items():
        sha, data = files.digest(text)
        files.put(sha, data)
        new.append(NewDocument("folder:/inbox", uri, "code", "python", len(data), sha, "stored"))
    store.documents.record(new)
    store.close()


def run_job(settings: Settings, **params: object) -> dict[str, object]:
    out = io.StringIO()
    result = job.run(dict(params), JobContext(1, settings, out))
    progress = [json.loads(line) for line in out.getvalue().splitlines()]
    assert progress and all(p["type"] == "progress" for p in progress)
    return result


@pytest.fixture
def batches(stdlib_texts: dict[str, str]) -> list[dict[str, str]]:
    texts = list(stdlib_texts.values())
    return [
        {f"/inbox/a{i}.py": texts[i] for i in range(6)},
        {"/inbox/near.py": drop_lines(texts[0], 0.05, 3), "/inbox/b.py": texts[6]},
        {"/inbox/c.py": texts[7], "/inbox/dup.py": texts[6].replace("\n", " \n")},
    ]


def test_job_builds_incrementally_like_one_build(
    tmp_path: Path, batches: list[dict[str, str]]
) -> None:
    step = settings_for(tmp_path / "step")
    for batch in batches:
        ingest(step, batch)
        result = run_job(step)
    assert result["removed"] == {"dedup.exact": 1, "dedup.near": 1}
    with pytest.raises(JobSkipped):
        run_job(step)
    once = settings_for(tmp_path / "once")
    for batch in batches:
        ingest(once, batch)
    run_job(once)
    for s in (step, once):
        assert (s.corpus_dir / "manifest.json").exists()
    a = datasets.load_from_disk(str(step.corpus_dir / "dataset"))
    b = datasets.load_from_disk(str(once.corpus_dir / "dataset"))
    assert list(a) == list(b) and len(a) == 8
    manifest = json.loads((step.corpus_dir / "manifest.json").read_text())
    assert manifest["inputs"] == {"mode": "store", "documents": 10, "max_id": 10}


def test_retired_document_leaves_the_next_snapshot(
    tmp_path: Path, batches: list[dict[str, str]]
) -> None:
    settings = settings_for(tmp_path)
    ingest(settings, batches[0] | batches[1])
    first = run_job(settings)
    assert first["documents"] == 7 and first["removed"] == {"dedup.near": 1}
    store = Store(settings.state_db)
    assert store.documents.retire_locations("folder:/inbox", ["/inbox/a0.py"]) == 1
    store.close()
    second = run_job(settings)
    uris = {r["uri"] for r in datasets.load_from_disk(str(settings.corpus_dir / "dataset"))}
    assert "/inbox/a0.py" not in uris and "/inbox/near.py" in uris  # its duplicate is back
    assert second["documents"] == 7 and second["removed"] == {}


def test_full_rebuild_on_request(tmp_path: Path, batches: list[dict[str, str]]) -> None:
    settings = settings_for(tmp_path)
    ingest(settings, batches[0])
    run_job(settings)
    result = run_job(settings, full=True)
    assert result["build"]["mode"] == "full"  # type: ignore[index]
