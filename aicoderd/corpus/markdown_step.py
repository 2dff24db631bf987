"""Step ``extract``: each document kind's text becomes what training reads.

Ingestion already turned notebooks into their Markdown and code cells in order, PDFs into
text, and everything into UTF-8 (``aicoderd.sources.extract``); what is left is HTML, kept as
HTML in the document store, which becomes Markdown here with its code blocks exact, through
the same converter as fetched web pages (:mod:`aicoderd.sources.html2md`). A kind absent from
:data:`CONVERTERS` passes unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

from aicoderd.corpus.document import Doc
from aicoderd.corpus.steps import DocStep, StepStats, register
from aicoderd.sources import html2md


# document kind → converter of its text
def html_to_markdown(html: str) -> str:
    return html2md.convert(html).markdown


CONVERTERS: dict[str, Callable[[str], str]] = {
    "html": html_to_markdown,
}


@register
class Extract(DocStep):
    name = "extract"

    def one(self, doc: Doc, stats: StepStats) -> None:
        convert = CONVERTERS.get(doc.kind)
        if convert is None:
            return
        assert doc.text is not None
        doc.text = convert(doc.text)
        stats.counts[f"converted.{doc.kind}"] += 1
        if not doc.text.strip():
            doc.remove("extract.empty", f"no text left after converting {doc.kind}")
