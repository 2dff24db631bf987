"""HTML → Markdown on pages modelled on Sphinx (alabaster), MkDocs-Material (line numbers,
tabs, inline gutters) and a blog page with no documentation layout (trafilatura).

The pages in ``data/`` were written for these tests: Pygments markup around the snippets below,
in the page structure each generator emits. Two checks per page: every snippet comes back
exactly, as a fenced block with its language (independent of the golden file), and the whole
Markdown matches the golden file (navigation, gutters and boilerplate gone).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from aicoderd.sources.html2md import convert, fragment_to_markdown

DATA = Path(__file__).parent / "data"

SNIPPETS = {
    "console": "$ pip install widgets\n$ widgets --version\nwidgets 2.1\n",
    "sphinx_main": (
        "import asyncio\n"
        "\n"
        "\n"
        "async def main(urls: list[str]) -> None:\n"
        '    """Fetch every URL; keep going on errors."""\n'
        "    async with Client() as client:\n"
        "        for url in urls:\n"
        "\n"
        "            try:\n"
        "                await client.get(url)\n"
        '            except Error as exc:  # <- angle brackets & "quotes"\n'
        '                print(f"{url}: {exc!r}")\n'
    ),
    "sphinx_table": 'SETTINGS = {\n    "retries": 3,\n\n    "timeout": 2.5,\n}\n',
    "sphinx_inline": 'for i in range(3):\n    print(i)\n\nprint("done")\n',
    "makefile": "all:\n\tpython -m build\n\nclean:\n\trm -rf dist\n",
    "mk_pip": "python -m pip install widgets\n",
    "mk_conda": "conda install -c conda-forge widgets\n",
    "mk_table": ('from widgets import Widget\n\nw = Widget(\n    name="demo",\n)\n\n\nw.run()\n'),
    "mk_inline": "server:\n  port: 8080\n\n  hosts:\n    - a.example\n    - b.example\n",
    "mk_fence": "Use a fence:\n\n```python\nx = 1\n```\n",
    "blog_code": (
        "def fetch(url, attempts=5):\n"
        "    for attempt in range(attempts):\n"
        "        resp = client.get(url)\n"
        "        if resp.status_code not in RETRYABLE:\n"
        "            return resp\n"
        "\n"
        "        delay = retry_after(resp) or 2 ** attempt\n"
        "        time.sleep(delay * random.uniform(0.5, 1.5))\n"
        "    raise GaveUp(url)\n"
    ),
}

PAGES = {
    "sphinx": (
        ["console", "sphinx_main", "sphinx_table", "sphinx_inline", "makefile"],
        ["console", "python", "python", "python", "make"],
    ),
    "mkdocs": (
        ["mk_pip", "mk_conda", "mk_table", "mk_inline", "mk_fence"],
        ["bash", "bash", "python", "yaml", "markdown"],
    ),
    "blog": (["blog_code"], ["python"]),
}

_FENCE = re.compile(r"^(`{3,})([^\n`]*)\n(.*?)^\1$", re.MULTILINE | re.DOTALL)


def fenced_blocks(markdown: str) -> list[tuple[str, str]]:
    return [(m.group(2), m.group(3)) for m in _FENCE.finditer(markdown)]


@pytest.mark.parametrize("page", sorted(PAGES))
def test_every_code_block_comes_back_exactly(page: str) -> None:
    names, languages = PAGES[page]
    converted = convert((DATA / f"{page}_page.html").read_text(encoding="utf-8"))
    blocks = fenced_blocks(converted.markdown)
    assert blocks == [(lang, SNIPPETS[n]) for n, lang in zip(names, languages, strict=True)]


@pytest.mark.parametrize("page", sorted(PAGES))
def test_page_matches_its_golden_markdown(page: str) -> None:
    converted = convert((DATA / f"{page}_page.html").read_text(encoding="utf-8"))
    golden = (DATA / f"{page}_page.md").read_text(encoding="utf-8")
    assert converted.markdown == golden


def test_layouts_titles_and_links() -> None:
    sphinx = convert((DATA / "sphinx_page.html").read_text(encoding="utf-8"))
    assert sphinx.layout == "docs"
    assert sphinx.title == "Quickstart — Widgets 2.1 documentation"
    assert sphinx.canonical == "https://widgets.example.org/docs/quickstart.html"
    assert {"api.html", "changes.html", "genindex.html"} <= set(sphinx.links)  # from the nav
    mkdocs = convert((DATA / "mkdocs_page.html").read_text(encoding="utf-8"))
    assert mkdocs.layout == "docs"
    assert "../usage/" in mkdocs.links
    blog = convert((DATA / "blog_page.html").read_text(encoding="utf-8"))
    assert blog.layout == "generic"


@pytest.mark.parametrize(
    "boilerplate",
    [
        "Navigation",
        "Quick search",
        "Powered by",
        "¶",
        "Edit this page",
        "Skip to content",
        "Table of contents",
        "Last update",
        "Made with",
        "Previous",
        "Recent posts",
    ],
)
def test_navigation_and_boilerplate_are_dropped(boilerplate: str) -> None:
    for page in PAGES:
        markdown = convert((DATA / f"{page}_page.html").read_text(encoding="utf-8")).markdown
        assert boilerplate not in markdown, page


def test_gutters_of_other_generators_and_nested_fences() -> None:
    hugo = (
        '<html><head><meta name="generator" content="Docusaurus"></head><body><main>'
        '<p>Chroma with a line-number table:</p><div class="highlight"><div class="chroma">'
        '<table class="lntable"><tr><td class="lntd"><pre class="chroma"><code>'
        '<span class="lnt">1\n</span><span class="lnt">2\n</span><span class="lnt">3\n</span>'
        '</code></pre></td><td class="lntd"><pre class="chroma"><code class="language-go" '
        'data-lang="go">x := 1\n\n\ty := 2\n</code></pre></td></tr></table></div></div>'
        "</main></body></html>"
    )
    converted = convert(hugo)
    assert fenced_blocks(converted.markdown) == [("go", "x := 1\n\n\ty := 2\n")]
    assert converted.layout == "docs"


def test_a_page_without_text_converts_to_nothing() -> None:
    assert convert("<html><body><nav><a href='/x'>x</a></nav></body></html>").markdown == ""


def test_entry_fragments_and_br_inside_code() -> None:
    fragment = '<p>Run:</p><pre class="lang-sh">make<br>make install<br><br>  done</pre>'
    assert fragment_to_markdown(fragment) == "Run:\n\n```sh\nmake\nmake install\n\n  done\n```\n"
