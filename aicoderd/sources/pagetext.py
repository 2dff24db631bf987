"""What a fetched page says: its text (HTML becomes Markdown), title, canonical link and links.

Bytes are decoded by the charset the server declared, else the one the page declares in a
``<meta>``, else UTF-8, else the best guess of charset-normalizer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from charset_normalizer import from_bytes

from aicoderd.sources import html2md
from aicoderd.sources.download import Fetched

_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
_HTML = frozenset({"text/html", "application/xhtml+xml"})
_KINDS = {"text/markdown": "markdown", "text/x-markdown": "markdown", "text/x-rst": "rst"}


@dataclass
class Page:
    text: str
    kind: str  # "markdown" | "text" | "rst"
    title: str | None = None
    canonical: str | None = None
    base: str | None = None
    links: list[str] = field(default_factory=list)
    layout: str = ""


def page(fetched: Fetched) -> Page:
    text = decode(fetched.body, fetched.charset, fetched.content_type in _HTML)
    if fetched.content_type in _HTML:
        converted = html2md.convert(text)
        return Page(
            text=converted.markdown,
            kind="markdown",
            title=converted.title,
            canonical=converted.canonical,
            base=converted.base,
            links=converted.links,
            layout=converted.layout,
        )
    text = text.replace("\r\n", "\n")
    return Page(text=text, kind=_KINDS.get(fetched.content_type, "text"))


def decode(body: bytes, charset: str | None, html: bool) -> str:
    candidates = [charset] if charset else []
    if html and (m := _META_CHARSET.search(body[:4096])):
        candidates.append(m.group(1).decode("ascii"))
    candidates.append("utf-8")
    for name in candidates:
        try:
            return body.decode(name)
        except (LookupError, UnicodeDecodeError):
            continue
    guess = from_bytes(body).best()
    return str(guess) if guess is not None else body.decode("utf-8", errors="replace")
