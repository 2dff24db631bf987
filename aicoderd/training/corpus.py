"""Reading a corpus directory: the one place that knows the corpus stage's on-disk shape.

``DIR/manifest.json`` (its ``snapshot`` id) and ``DIR/dataset/`` (an HF ``datasets`` dataset
with columns ``text, doc_id, source, uri, kind, language, split``, split ∈ train/eval). In the
daemon's corpus these are links into the current snapshot; they are resolved once here so the
manifest and the dataset always come from the same snapshot.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from aicoderd.errors import TrainingError

MANIFEST = "manifest.json"
DATASET = "dataset"


@dataclass(frozen=True)
class CorpusSplits:
    snapshot: str
    train: list[str]
    eval: list[str]


def load_corpus(directory: Path) -> CorpusSplits:
    """The snapshot id and the train and eval texts of the corpus in ``directory``."""
    import datasets

    current = directory / "current"
    root = current.resolve() if current.is_symlink() else directory
    try:
        manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
        snapshot = str(manifest["snapshot"])
    except FileNotFoundError:
        raise TrainingError(f"no corpus in {directory} (no {MANIFEST})") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TrainingError(f"cannot read {root / MANIFEST}: {exc}") from exc
    try:
        data = datasets.load_from_disk(str(root / DATASET))
    except (OSError, ValueError) as exc:
        raise TrainingError(f"cannot read the dataset in {root / DATASET}: {exc}") from exc
    if not isinstance(data, datasets.Dataset):
        raise TrainingError(f"{root / DATASET} is not a single dataset")
    texts, splits = data["text"], data["split"]
    train = [t for t, s in zip(texts, splits, strict=True) if s == "train" and t]
    held = [t for t, s in zip(texts, splits, strict=True) if s == "eval" and t]
    if not held and len(train) >= 2:
        # A small corpus may draw no eval documents: hold out its last twentieth instead.
        cut = len(train) - max(1, len(train) // 20)
        train, held = train[:cut], train[cut:]
    if not train or not held:
        raise TrainingError(f"the corpus in {directory} needs at least two documents")
    return CorpusSplits(snapshot, train, held)
