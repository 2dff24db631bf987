"""The step registry and the contract every corpus step keeps.

A step is a class registered under a short name. It is built once per build with the typed
config and the build's :class:`StepContext`, then sees the documents in batches, in processing
order. Contract:

- it looks only at live documents (the pipeline hands it no removed ones) and, unless it says
  ``needs_text = False``, only at documents whose text is loaded;
- it may rewrite ``doc.text``, count what it did in ``stats``, and remove a document with
  ``doc.remove("<step>.<check>", detail)`` — never silently: the pipeline counts every removal
  under its reason;
- its result depends on the document, the config and (for de-duplication) the documents
  before it in order, never on how documents are grouped into batches, so a build in
  increments decides exactly as one build of everything.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, TypeVar

import numpy as np
import numpy.typing as npt

from aicoderd.config import CorpusConfig
from aicoderd.corpus.document import Doc


@dataclass
class StepStats:
    """Per-step counters: documents seen and removed by reason, plus what the step counts
    itself (texts changed, redactions by kind...), and the time it took."""

    counts: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return {**dict(sorted(self.counts.items())), "seconds": round(self.seconds, 3)}


class Step(ABC):
    name: ClassVar[str]
    needs_text: ClassVar[bool] = True

    def __init__(self, config: CorpusConfig, context: StepContext) -> None:
        self.config = config
        self.context = context

    @abstractmethod
    def run(self, docs: list[Doc], stats: StepStats) -> None:
        """Process one batch of live documents, in order."""


class DocStep(Step):
    """A step that treats each document on its own."""

    def run(self, docs: list[Doc], stats: StepStats) -> None:
        for doc in docs:
            self.one(doc, stats)

    @abstractmethod
    def one(self, doc: Doc, stats: StepStats) -> None: ...


def _no_lookup(order: int) -> tuple[str, npt.NDArray[np.uint32] | None]:
    raise KeyError(order)


@dataclass
class StepContext:
    """What a build shares with its steps beyond the config."""

    # A document kept by an earlier batch or build, by order: (doc_id, MinHash signature).
    lookup: Callable[[int], tuple[str, npt.NDArray[np.uint32] | None]] = _no_lookup


STEPS: dict[str, type[Step]] = {}

S = TypeVar("S", bound=type[Step])


def register(cls: S) -> S:
    STEPS[cls.name] = cls
    return cls


# The order documents go through; each name is a registered step.
PIPELINE = ("normalize", "extract", "quality", "secrets", "dedup", "split")


class Pipeline:
    """Runs the registered steps over batches and keeps each step's counters."""

    def __init__(self, steps: list[Step]) -> None:
        self.steps = steps
        self.stats = {step.name: StepStats() for step in steps}

    def run(self, batch: list[Doc]) -> None:
        for step in self.steps:
            docs = [d for d in batch if d.live and (d.text is not None or not step.needs_text)]
            if not docs:
                continue
            stats = self.stats[step.name]
            stats.counts["documents"] += len(docs)
            started = time.perf_counter()
            step.run(docs, stats)
            stats.seconds += time.perf_counter() - started
            for doc in docs:
                if doc.removal is not None:
                    stats.counts[f"removed.{doc.removal.reason}"] += 1

    def report(self) -> dict[str, dict[str, object]]:
        return {name: s.as_dict() for name, s in self.stats.items()}
