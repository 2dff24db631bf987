"""URL identity and crawl scope.

One page has one name: :func:`canonical` drops the fragment, sorts the query, normalises
percent-encoding, case and default ports, and strips tracking parameters, so ``a.html#x``,
``a.html?b=2&a=1`` and ``A.HTML``'s host-case variants meet in one document. :class:`Scope`
decides which links a crawl follows: by default the start URLs' hosts and path prefixes,
narrowed by ``exclude`` and widened (on the same hosts) by ``include`` regular expressions.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

from w3lib.url import canonicalize_url

_DEFAULT_PORTS = {"http": 80, "https": 443}
_TRACKING = re.compile(r"^(utm_[a-z]+|fbclid|gclid|dclid|msclkid|mc_cid|mc_eid|_ga|ref_src)$")
# Links to these are not pages; they are never requested (a start URL always is).
_NOT_PAGES = re.compile(
    r"\.(png|jpe?g|gif|svg|webp|ico|bmp|tiff?|pdf|zip|tar|gz|tgz|bz2|xz|7z|rar|whl|egg|exe|"
    r"dmg|iso|bin|deb|rpm|apk|jar|mp[34]|m4a|ogg|wav|webm|mov|avi|woff2?|ttf|otf|eot|css|js|"
    r"map|json|xml|rss|atom|epub|docx?|xlsx?|pptx?)$",
    re.IGNORECASE,
)


def canonical(url: str) -> str:
    """The one name of a page: see the module docstring."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    port = parts.port
    netloc = host if port in (None, _DEFAULT_PORTS.get(scheme)) else f"{host}:{port}"
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query, True) if not _TRACKING.match(k)])
    path = parts.path or "/"
    rebuilt = urlunsplit((scheme, netloc, path, query, ""))
    return str(canonicalize_url(rebuilt, keep_fragments=False))


def resolve(base: str, href: str) -> str | None:
    """The canonical absolute http(s) URL of a link on page ``base``; None for other schemes."""
    href = href.strip()
    if not href or href.startswith(("#", "javascript:", "mailto:", "tel:", "data:")):
        return None
    try:
        absolute = urljoin(base, href)
        if urlsplit(absolute).scheme not in ("http", "https"):
            return None
        return canonical(absolute)
    except ValueError:  # a malformed port or IPv6 literal in a link
        return None


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def host_key(url: str) -> str:
    """What politeness is counted per: scheme, host and port."""
    return origin(url)


def path_prefix(url: str) -> str:
    """The folder of a start URL: ``/docs/index.html`` → ``/docs/``; ``/docs`` → ``/docs/``."""
    path = urlsplit(url).path or "/"
    if path.endswith("/"):
        return path
    head, last = posixpath.split(path)
    if "." in last:
        return head.rstrip("/") + "/"
    return path + "/"


def looks_like_a_page(url: str) -> bool:
    return not _NOT_PAGES.search(urlsplit(url).path)


@dataclass
class Scope:
    """Which URLs a crawl may follow (start URLs are always fetched)."""

    prefixes: set[tuple[str, str]] = field(default_factory=set)  # (origin, path prefix)
    include: list[re.Pattern[str]] = field(default_factory=list)
    exclude: list[re.Pattern[str]] = field(default_factory=list)
    exact: set[str] = field(default_factory=set)  # feeds: only the entry links themselves

    @classmethod
    def of(
        cls, starts: Iterable[str], include: Iterable[str] = (), exclude: Iterable[str] = ()
    ) -> Scope:
        scope = cls(
            include=[re.compile(p) for p in include], exclude=[re.compile(p) for p in exclude]
        )
        for url in starts:
            scope.add_root(url)
        return scope

    def add_root(self, url: str) -> None:
        """A start URL (or where one redirected to) opens its folder on its host."""
        self.prefixes.add((origin(url), path_prefix(url)))

    def allows(self, url: str) -> bool:
        if any(p.search(url) for p in self.exclude):
            return False
        if url in self.exact:
            return True
        parts = urlsplit(url)
        here = f"{parts.scheme}://{parts.netloc}"
        path = parts.path or "/"
        same_host = [prefix for o, prefix in self.prefixes if o == here]
        if not same_host:
            return False
        if self.include:
            return any(p.search(url) for p in self.include)
        return any(path.startswith(prefix) or path + "/" == prefix for prefix in same_host)
