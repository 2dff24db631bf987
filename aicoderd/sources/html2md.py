"""HTML page → Markdown, with every code block kept exactly.

Documentation layouts (Sphinx, MkDocs-Material, Read the Docs, furo, and pages whose generator
is a documentation tool) get a docs-aware pre-pass on selectolax: take the main container, drop
navigation, header links, buttons and line-number gutters, unwrap Pygments' line-number tables,
then lift every ``<pre>`` out verbatim (``text(deep=True)``) behind a placeholder, convert the
rest with markdownify, and put the code back as fenced blocks tagged with the language the page
declared. Other pages go to trafilatura (the best general boilerplate remover) after the same
``<pre>`` lifting: no converter keeps blank lines, indentation and gutters right by itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from markdownify import markdownify
from selectolax.lexbor import LexborHTMLParser, LexborNode

# The main content of documentation generators, most specific first.
_DOCS_MAIN = (
    "article.md-content__inner",  # MkDocs-Material
    "div[itemprop=articleBody]",  # Read the Docs theme
    "article[role=main]",  # furo
    "div.body[role=main]",  # Sphinx basic / alabaster / classic
    "div[role=main]",  # Sphinx themes, MkDocs' own themes
    "div.body",
    "article.bd-article",  # pydata-sphinx-theme
    "div.theme-doc-markdown",  # Docusaurus
    "div.vp-doc",  # VitePress
)
# With a documentation generator's <meta name="generator">, these are main content too.
_GENERIC_MAIN = ("main article", "article", "main", "div#content")
_DOCS_GENERATORS = re.compile(r"sphinx|mkdocs|docusaurus|vitepress|mdbook|docfx|pdoc|typedoc|jsdoc")
# Never content, wherever it sits.
_DROP = ", ".join(
    (
        "script, style, noscript, template, svg, button, form, input, select, textarea",
        "iframe, nav, footer, [role=navigation], [role=search], [aria-hidden=true]",
        ".headerlink, .md-content__button, .md-source-file, .md-feedback, .md-clipboard",
        ".md-code__nav, .copybutton, .sphinxsidebar, .related, .md-sidebar, .wy-breadcrumbs",
        ".rst-footer-buttons, .prev-next-area, .sphx-glr-download-link-note, .viewcode-link",
        ".visually-hidden, .sr-only, .skip-link, .md-skip",
    )
)
# Line-number gutters inside or beside code.
_GUTTERS = "td.linenos, .linenodiv, span.linenos, span.lnt, span.ln, .gutter, td.gutter"
_LINENO_TABLES = "table.highlighttable, table.lntable"
_LANGUAGE = re.compile(r"(?:^|\s)(?:highlight-(?:source-)?|language-|lang-)([A-Za-z0-9_+#.-]+)")
_NOT_LANGUAGES = {"default", "none", "text", "plaintext", "nohighlight", "notranslate", "plain"}
_HOLE = "AICODERCODEBLOCK{}X"
_HOLE_RE = re.compile(r"\n*[ \t]*(?:`{3,}\s*)?AICODERCODEBLOCK(\d+)X(?:\s*`{3,})?[ \t]*\n*")
_BLANK_RUNS = re.compile(r"\n{3,}")
_TRAILING_SPACE = re.compile(r"[ \t]+$", re.MULTILINE)


@dataclass
class Converted:
    markdown: str
    title: str | None = None
    canonical: str | None = None  # <link rel=canonical href>, as written
    base: str | None = None  # <base href>, as written
    links: list[str] = field(default_factory=list)  # every <a href>, as written
    layout: str = "docs"  # "docs" (pre-pass + markdownify) or "generic" (trafilatura)


def convert(html: str) -> Converted:
    """The page's Markdown, title, canonical link and outgoing links."""
    tree = LexborHTMLParser(html)
    out = Converted(markdown="", title=_title(tree))
    out.canonical = _attr(tree.css_first("link[rel~=canonical][href]"), "href")
    out.base = _attr(tree.css_first("base[href]"), "href")
    out.links = [h for a in tree.css("a[href], area[href]") if (h := _attr(a, "href"))]
    main = _docs_main(tree)
    if main is not None:
        out.markdown = _docs_markdown(main)
        return out
    out.layout = "generic"
    out.markdown = _generic_markdown(tree)
    return out


def fragment_to_markdown(html: str) -> str:
    """A piece of content with no page around it (a feed entry's body): all of it is kept."""
    body = LexborHTMLParser(f"<html><body>{html}</body></html>").body
    return _docs_markdown(body) if body is not None else ""


def _attr(node: LexborNode | None, name: str) -> str | None:
    value = node.attributes.get(name) if node is not None else None
    return value.strip() if value else None


def _title(tree: LexborHTMLParser) -> str | None:
    for selector in ("title", "h1"):
        node = tree.css_first(selector)
        if node is not None:
            text = " ".join(node.text(deep=True).replace("¶", "").split())
            if text:
                return text
    return None


def _docs_main(tree: LexborHTMLParser) -> LexborNode | None:
    for selector in _DOCS_MAIN:
        node = tree.css_first(selector)
        if node is not None:
            return node
    generator = _attr(tree.css_first("meta[name=generator][content]"), "content") or ""
    if _DOCS_GENERATORS.search(generator.lower()):
        for selector in _GENERIC_MAIN:
            node = tree.css_first(selector)
            if node is not None:
                return node
    return None


def _docs_markdown(main: LexborNode) -> str:
    _clean(main)
    _label_tabs(main)
    blocks = _lift_code(main)
    text = markdownify(
        main.html or "",
        heading_style="ATX",
        bullets="-",
        strip=["a", "img"],
        escape_underscores=False,
        escape_asterisks=False,
        escape_misc=False,
    )
    return _put_code_back(text, blocks)


def _generic_markdown(tree: LexborHTMLParser) -> str:
    import trafilatura  # heavy (lxml, justext); only pages that are not docs need it

    body = tree.body
    if body is None:
        return ""
    _clean(body)
    blocks = _lift_code(body, as_pre=True)
    text = trafilatura.extract(
        tree.html or "",
        output_format="markdown",
        include_formatting=True,
        include_tables=True,
        include_comments=False,
        include_links=False,
        include_images=False,
        favor_recall=True,
    )
    return _put_code_back(text or "", blocks)


def _clean(root: LexborNode) -> None:
    for node in root.css(_DROP):
        node.decompose()
    for table in root.css(_LINENO_TABLES):
        code = _code_cell(table)
        if code is not None:
            table.insert_before(code)
        table.decompose()
    for node in root.css(_GUTTERS):
        node.decompose()


def _code_cell(table: LexborNode) -> LexborNode | None:
    """The ``<pre>`` of a line-number table's code column (not the gutter's)."""
    for selector in ("td.code pre", "td.lntd:last-child pre", "td:last-child pre"):
        pre = table.css_first(selector)
        if pre is not None:
            # Keep the wrapper's language class: the <pre> moves out of it.
            language = _language(pre) or _language(table)
            if language and not _language(pre):
                pre.attrs["data-aicoder-lang"] = language
            return pre
    return None


def _label_tabs(root: LexborNode) -> None:
    """MkDocs-Material content tabs: each tab's label goes before its block."""
    for tabs in root.css("div.tabbed-set"):
        labels = [" ".join(label.text(deep=True).split()) for label in tabs.css("label")]
        for label, block in zip(labels, tabs.css("div.tabbed-block"), strict=False):
            block.insert_before(_node(f"<p><strong>{label}</strong></p>"))
        for node in tabs.css("div.tabbed-labels, label"):
            node.decompose()


def _lift_code(root: LexborNode, *, as_pre: bool = False) -> list[str]:
    """Replace every outermost ``<pre>`` by a placeholder; return the fenced blocks."""
    blocks: list[str] = []
    for pre in root.css("pre"):
        if pre.parent is None or _inside_pre(pre):
            continue
        for br in pre.css("br"):  # a few sites break code lines with <br>
            br.replace_with("\n")
        blocks.append(_fence(pre.text(deep=True), _language(pre)))
        hole = _HOLE.format(len(blocks) - 1)
        # trafilatura keeps <pre> as code; markdownify gets a plain paragraph
        wrapped = f"<pre>{hole}</pre>" if as_pre else f"<p>{hole}</p>"
        pre.replace_with(_node(wrapped))
    return blocks


def _node(html: str) -> LexborNode:
    body = LexborHTMLParser(html).body
    child = body.child if body is not None else None
    assert child is not None
    return child


def _inside_pre(node: LexborNode) -> bool:
    parent = node.parent
    while parent is not None:
        if parent.tag == "pre":
            return True
        parent = parent.parent
    return False


def _language(pre: LexborNode) -> str:
    """The language a page declared for a code block: on <code>, <pre> or two wrappers up."""
    if pre.attributes.get("data-aicoder-lang"):
        return str(pre.attributes["data-aicoder-lang"])
    nodes: list[LexborNode | None] = [pre.css_first("code"), pre, pre.parent]
    nodes.append(pre.parent.parent if pre.parent is not None else None)
    for node in nodes:
        if node is None:
            continue
        declared = node.attributes.get("data-lang") or ""
        for match in [declared, *_LANGUAGE.findall(node.attributes.get("class") or "")]:
            language = str(match).lower()
            if language and language not in _NOT_LANGUAGES:
                return language
    return ""


def _fence(code: str, language: str) -> str:
    if code and not code.endswith("\n"):
        code += "\n"
    longest = max((len(m) for m in re.findall(r"`{3,}", code)), default=2)
    ticks = "`" * (longest + 1)
    return f"{ticks}{language}\n{code}{ticks}"


def _put_code_back(text: str, blocks: list[str]) -> str:
    text = _TRAILING_SPACE.sub("", text)
    text = _BLANK_RUNS.sub("\n\n", text).strip()
    # Blank-line tidying is done: now the code goes back, untouched.
    text = _HOLE_RE.sub(lambda m: f"\n\n{blocks[int(m.group(1))]}\n\n", text)
    return text.strip("\n") + "\n" if text.strip() else ""
