"""HTML → Markdown with code blocks kept exactly.

A docs-aware pre-pass (selectolax): pick the page's main container, drop navigation, header
links and line-number gutters, unwrap Pygments' ``highlighttable``, then take every ``<pre>``
out verbatim behind a placeholder, convert the rest with markdownify, and put the code back as
fenced blocks with the language the page declared. Converters (trafilatura included) reflow or
drop whitespace inside code; freezing ``<pre>`` first is what keeps code byte for byte.
"""

from __future__ import annotations

import re

from markdownify import markdownify
from selectolax.lexbor import LexborHTMLParser, LexborNode

# Main-content containers of common documentation generators, most specific first.
_MAIN = (
    "article.md-content__inner",  # MkDocs Material
    "div[itemprop=articleBody]",  # Read the Docs theme
    "div[role=main]",  # Sphinx
    "div.body",
    "main",
    "article",
    "body",
)
# Never content: site chrome, scripts, the ¶ anchors of headings, line-number gutters.
_DROP = (
    "script, style, noscript, template, nav, header, footer, aside, form, "
    ".headerlink, .linenos, .linenodiv, .sphinxsidebar, .related, .md-sidebar, .toc"
)
_LANGUAGE = re.compile(r"(?:^|\s)(?:highlight|language|lang|sourceCode)-?([A-Za-z0-9_+#.-]+)")
_NOT_A_LANGUAGE = {"notranslate", "default", "none", "text", "plaintext", "nohighlight"}
_PLACEHOLDER = "AICODERPRE{}X"
_PLACEHOLDER_RE = re.compile(r"\n*[ \t]*AICODERPRE(\d+)X[ \t]*\n*")
_BLANK_RUNS = re.compile(r"\n{3,}")


def html_to_markdown(html: str) -> str:
    tree = LexborHTMLParser(html)
    main = next((n for sel in _MAIN if (n := tree.css_first(sel)) is not None), tree.root)
    if main is None:
        return ""
    for node in main.css(_DROP):
        node.decompose()
    for table in main.css("table.highlighttable"):
        code = table.css_first("td.code pre") or table.css_first("pre")
        if code is not None:
            table.insert_before(code)
        table.decompose()
    blocks: list[str] = []
    for pre in main.css("pre"):
        blocks.append(_fence(pre.text(deep=True), _language(pre)))
        pre.replace_with(f"\n\n{_PLACEHOLDER.format(len(blocks) - 1)}\n\n")
    text = markdownify(
        main.html or "",
        heading_style="ATX",
        bullets="-",
        escape_underscores=False,
        escape_asterisks=False,
        escape_misc=False,
    )
    text = _PLACEHOLDER_RE.sub(lambda m: f"\n\n{blocks[int(m.group(1))]}\n\n", text)
    return _BLANK_RUNS.sub("\n\n", text).strip() + "\n"


def _language(pre: LexborNode) -> str:
    """The language a page declared for a code block, on the block or up to two parents."""
    candidates: list[LexborNode | None] = [pre.css_first("code"), pre]
    node: LexborNode | None = pre
    for _ in range(2):
        node = node.parent if node is not None else None
        candidates.append(node)
    for candidate in candidates:
        classes = (candidate.attributes.get("class") or "") if candidate is not None else ""
        for match in _LANGUAGE.finditer(classes):
            language = match.group(1).lower()
            if language not in _NOT_A_LANGUAGE:
                return language
    return ""


def _fence(code: str, language: str) -> str:
    """A fenced block longer than any backtick run inside the code."""
    longest = max((len(m) for m in re.findall(r"`{3,}", code)), default=2)
    fence = "`" * (longest + 1)
    return f"{fence}{language}\n{code.rstrip(chr(10))}\n{fence}"
