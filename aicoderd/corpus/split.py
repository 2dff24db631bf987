"""Step ``split``: train or eval by a stable hash of the document id, so a document keeps its
split from one build to the next and the eval set only grows with new documents."""

from __future__ import annotations

import hashlib

from aicoderd.corpus.document import Doc
from aicoderd.corpus.steps import DocStep, StepStats, register


def eval_share(doc_id: str) -> float:
    """A number in [0, 1) fixed by the document id."""
    digest = hashlib.sha256(b"split:" + doc_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@register
class Split(DocStep):
    name = "split"
    needs_text = False

    def one(self, doc: Doc, stats: StepStats) -> None:
        doc.split = "eval" if eval_share(doc.doc_id) < self.config.eval_fraction else "train"
        stats.counts[doc.split] += 1
