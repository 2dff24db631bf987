"""Normalisation against golden files, and the promise that clean code passes unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest

from aicoderd.config import CorpusConfig
from aicoderd.corpus.document import Doc
from aicoderd.corpus.markdown_step import Extract, html_to_markdown
from aicoderd.corpus.normalize import Normalize, normalize
from aicoderd.corpus.quality import Quality
from aicoderd.corpus.secrets import Secrets
from aicoderd.corpus.steps import Pipeline, StepContext

GOLDEN = Path(__file__).parent / "golden"
CASES = sorted(p.stem for p in (GOLDEN / "normalize").glob("*.in"))


@pytest.mark.parametrize("case", CASES)
def test_normalize_matches_golden_file(case: str) -> None:
    given = (GOLDEN / "normalize" / f"{case}.in").read_bytes().decode("utf-8")
    expected = (GOLDEN / "normalize" / f"{case}.out").read_bytes().decode("utf-8")
    assert normalize(given) == expected


def test_golden_set_covers_each_change() -> None:
    # Every golden input that differs from its output exercises one repair.
    changed = {
        c
        for c in CASES
        if (GOLDEN / "normalize" / f"{c}.in").read_bytes()
        != (GOLDEN / "normalize" / f"{c}.out").read_bytes()
    }
    assert {"newlines", "bom", "nfc", "mojibake", "mojibake_in_code"} <= changed
    assert "code_safe" not in changed


def test_mojibake_repair_can_be_turned_off() -> None:
    assert normalize("cafÃ©\n", mojibake=False) == "cafÃ©\n"


def test_html_becomes_markdown_with_code_blocks_exact() -> None:
    html = (GOLDEN / "html" / "sphinx.html").read_text(encoding="utf-8")
    markdown = html_to_markdown(html)
    assert markdown == (GOLDEN / "html" / "sphinx.expected").read_text(encoding="utf-8")
    # the code block is the page's code, byte for byte (blank line, entities, tab)
    assert "    parser = argparse.ArgumentParser()\n\n    return" in markdown
    assert '# a < b && "c"' in markdown and "\tusage: demo [-h]" in markdown
    for chrome in ("Navigation", "Previous topic", "Sphinx", "¶", "var x", "color: black"):
        assert chrome not in markdown


def test_fence_outgrows_backticks_inside_code() -> None:
    markdown = html_to_markdown("<main><pre>```\ninner\n```</pre></main>")
    assert markdown.startswith("````\n```\ninner\n```\n````")


def test_clean_standard_library_modules_pass_byte_for_byte(stdlib_texts: dict[str, str]) -> None:
    config = CorpusConfig()
    context = StepContext()
    steps = [cls(config, context) for cls in (Normalize, Extract, Quality, Secrets)]
    pipeline = Pipeline(steps)
    docs = [
        Doc(name, i, "stdlib", name, "code", "python", text)
        for i, (name, text) in enumerate(stdlib_texts.items())
    ]
    pipeline.run(docs)
    assert len(docs) >= 40
    for doc in docs:
        assert doc.removal is None, (doc.uri, doc.removal)
        assert doc.redactions == {}, (doc.uri, doc.redactions)
        assert doc.text == stdlib_texts[doc.uri], doc.uri
    report = pipeline.report()
    assert report["normalize"].get("changed", 0) == 0
    assert report["secrets"].get("documents_redacted", 0) == 0
