"""A small corpus directory in the corpus stage's documented shape (``manifest.json`` with a
snapshot id, ``dataset/`` saved with ``datasets``), and feedback files, for training tests."""

from __future__ import annotations

import json
import random
import uuid
from pathlib import Path
from typing import Any

NAMES = ["total", "count", "items", "value", "result", "index", "buffer", "offset", "name", "size"]
OPS = ["+", "-", "*", "//", "%"]
COMMENTS = ["# compute the sum", "# naïve loop — fine here", "# größe prüfen", "# 数据", "# TODO"]


def code_document(rng: random.Random) -> str:
    """A small, regular Python module: learnable structure a tiny model picks up fast."""
    lines = []
    for _ in range(rng.randint(2, 4)):
        fn, a, b = rng.choice(NAMES), rng.choice(NAMES), rng.choice(NAMES)
        op = rng.choice(OPS)
        lines.append(f"def {fn}_{a}({a}, {b}):")
        lines.append(f"    {rng.choice(COMMENTS)}")
        lines.append(f"    for i in range(len({a})):")
        lines.append(f"        {b} = {b} {op} {a}[i]")
        lines.append(f"    return {b}")
        lines.append("")
        lines.append("")
    return "\n".join(lines)


def make_corpus(
    root: Path, documents: int = 240, seed: int = 0, snapshot: str = "00001-test"
) -> Path:
    import datasets

    rng = random.Random(seed)
    texts = [code_document(rng) for _ in range(documents)]
    splits = ["eval" if i % 10 == 0 else "train" for i in range(documents)]
    rows: dict[str, list[Any]] = {
        "text": texts,
        "doc_id": [f"{i:064x}" for i in range(documents)],
        "source": ["folder"] * documents,
        "uri": [f"file:///src/m{i}.py" for i in range(documents)],
        "kind": ["code"] * documents,
        "language": ["python"] * documents,
        "split": splits,
    }
    root.mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_dict(rows).save_to_disk(str(root / "dataset"))
    (root / "preprocessed_corpus.txt").write_text("\n<|endoftext|>\n".join(texts))
    manifest = {"snapshot": snapshot, "documents": documents, "splits": {}}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def feedback_line(prompt: str, suggestion: str, verdict: str, correction: str | None = None) -> str:
    record = {
        "schema": 1,
        "id": str(uuid.uuid4()),
        "time": "2026-01-02T03:04:05Z",
        "model": "aicoder:test",
        "file": "m.py",
        "language": "python",
        "prompt": prompt,
        "suggestion": suggestion,
        "verdict": verdict,
    }
    if correction is not None:
        record["correction"] = correction
    return json.dumps(record)
