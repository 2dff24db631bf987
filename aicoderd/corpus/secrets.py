"""Step ``secrets``: credentials in the text are replaced by a placeholder (``<SECRET>``).

Each detector in :data:`DETECTORS` is a list of rules, a rule being a regular expression and
the literal hints one of which its match must contain: a rule runs only on a text holding a
hint, which keeps the step fast on the great majority of documents that hold no secret. Only
the secret itself is replaced — the ``password=`` before it, the quotes around it, the user
name in a URL stay — and a value that is plainly a placeholder (``"password"``, ``${DB_PASS}``,
``<token>``, ``xxxx``) or a constant's own name is left alone. Entropy counts only for string
literals assigned to secret-looking names: run over arbitrary code it flags ordinary
identifiers (detect-secrets' ad-hoc scan reports ``compute`` and ``depth=2``).
"""

from __future__ import annotations

import bisect
import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from aicoderd.corpus.document import Doc
from aicoderd.corpus.steps import Step, StepStats, register

_PLACEHOLDER = re.compile(
    r"""(?ix)
    ^(?: password | passwd | pass | pwd | secret | token | changeme | example | dummy | test
       | none | null | true | false | undefined | redacted | hidden | string | value )s?$
    | ^(.)\1*$                          # xxxx, ****, 0000
    | ^[$%{<\[(:] | [}>\])]$            # ${VAR}, %(name)s, {name}, <token>, [redacted]
    | (?:your|example|placeholder|dummy)[\w-]*$
    | ^[a-z]+(?:[_-][a-z]+)+$           # words: not_supported, no-password-required
    | ^[a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)+$   # dotted.names, fs.s3.enableEncryption
    """
)
# A name that holds a digest or a pointer to a secret, not the secret itself.
_NOT_SECRET_NAME = re.compile(r"(?i)sha\d*|md5|hash|digest|checksum|fingerprint|_id\b|_url\b")
_HEX = re.compile(r"^[0-9a-fA-F]+$")
_NON_ALNUM = re.compile(r"[\W_]+")


def shannon_entropy(value: str) -> float:
    n = len(value)
    return -sum(k / n * math.log2(k / n) for k in Counter(value).values())


def _not_placeholder(match: str, secret: str) -> bool:
    """Not a placeholder, and not a constant named after its own value (``X = "X"``)."""
    if _PLACEHOLDER.search(secret):
        return False
    name = _NON_ALNUM.sub("", match[: match.find(secret)]).lower()
    return _NON_ALNUM.sub("", secret).lower() not in name


def _random_looking(match: str, secret: str) -> bool:
    """A key, not a word or a hash: letters and digits mixed, many distinct symbols."""
    if not _not_placeholder(match, secret) or _NOT_SECRET_NAME.search(match[: -len(secret)]):
        return False
    digits = sum(c.isdigit() for c in secret)
    if digits < 2 or digits == len(secret) or not any(c.isalpha() for c in secret):
        return False
    if _HEX.match(secret):  # hex keys are 32 digits or more; shorter ones are mostly ids
        return len(secret) >= 32 and shannon_entropy(secret) >= 3.0
    return shannon_entropy(secret) >= 3.7


def _always(match: str, secret: str) -> bool:
    return True


@dataclass(frozen=True)
class Detector:
    """Patterns finding one kind of secret: a match's group ``secret`` (else the whole match)
    is what gets replaced. Patterns are bytes patterns over UTF-8; with ``caseless`` they are
    lower case and run on the lower-cased text (ASCII lower-casing keeps every byte in place,
    and is several times faster than a case-insensitive pattern)."""

    patterns: tuple[tuple[bytes, re.Pattern[bytes]], ...]  # (literal prefix, pattern)
    caseless: bool = False
    accept: Callable[[str, str], bool] = _always  # (match, secret) → really a secret?


def _compile(*patterns: str) -> tuple[tuple[bytes, re.Pattern[bytes]], ...]:
    # A pattern runs only where its literal prefix occurs: `in` finds a literal ~3x faster
    # than the regex engine's own prefix scan, and most prefixes occur in no document.
    out = []
    for p in patterns:
        prefix = re.match(r"[A-Za-z0-9_:/=-]+", p)
        assert prefix is not None, p
        out.append((prefix.group().encode(), re.compile(p.encode())))
    return tuple(out)


_GAP = r"""(?:\s|\\n|["'])*"""  # between the lines of a key: newlines, escaped or quoted
_ASSIGN = r"""["']?\s*(?:=|:|:=|=>)\s*"""  # after a name in code, JSON, YAML, Ruby or Go
_LITERAL = r"""(?P<q>["'`])(?P<secret>{})(?P=q)"""


def _assignments(names: tuple[str, ...], value: str) -> tuple[tuple[bytes, re.Pattern[bytes]], ...]:
    # One pattern per name, each starting with its literal: the regex engine then scans for
    # that literal at memchr speed, where one alternation of all names is ~3x slower.
    return _compile(*(name + r"[\w-]*" + _ASSIGN + _LITERAL.format(value) for name in names))


# Documents are searched together, joined by NUL bytes, which no pattern matches.
DETECTORS: dict[str, Detector] = {
    "private_key": Detector(
        _compile(
            r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----"
            # header lines (Proc-Type: ...) and base64 lines, in a file or a literal
            rf"(?:{_GAP}(?:[A-Za-z-]+: [^\x00\n\\]*|[A-Za-z0-9+/=]{{16,}}))+"
            rf"(?:{_GAP}[A-Za-z0-9+/=]{{1,15}})?"
            rf"(?:{_GAP}-----END[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----)?"
        )
    ),
    "aws_access_key": Detector(
        _compile(*(rf"{p}(?<![A-Z0-9]{p})[0-9A-Z]{{16}}(?![0-9A-Z])" for p in ("AKIA", "ASIA")))
    ),
    "google_api_key": Detector(_compile(r"AIza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])")),
    "azure_storage_key": Detector(_compile(r"AccountKey=(?P<secret>[A-Za-z0-9+/]{86}==)")),
    "github_token": Detector(
        _compile(r"gh(?:[pousr]_[A-Za-z0-9]{36,255}|ithub_pat_[A-Za-z0-9_]{22,255})")
    ),
    "gitlab_token": Detector(_compile(r"gl(?:pat|dt|rt)-[A-Za-z0-9_-]{20,}")),
    "slack_token": Detector(
        _compile(
            r"xox[abposre]-[A-Za-z0-9-]{10,}",
            r"hooks\.slack\.com/(?:services|workflows)/[A-Za-z0-9/_-]{16,}",
        )
    ),
    "stripe_key": Detector(
        _compile(r"sk_(?:live|test)_[0-9a-zA-Z]{20,}", r"rk_live_[0-9a-zA-Z]{20,}")
    ),
    "jwt": Detector(_compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")),
    "url_password": Detector(
        _compile(r"://[^\x00\s:/@'\"<>]+:(?P<secret>[^\x00\s:/@'\"<>]+)@"),
        accept=_not_placeholder,
    ),
    "password_assignment": Detector(
        _assignments(("pass(?:word|wd|phrase)", "pwd"), r"[^\x00\"'`\s]{4,}"),
        caseless=True,
        accept=_not_placeholder,
    ),
    "secret_assignment": Detector(
        # api_key, access_key, signing_key... all hold "key"
        _assignments(("secret", "token", "key", "auth", "credential"), r"[A-Za-z0-9+/=_.~-]{16,}"),
        caseless=True,
        accept=_random_looking,
    ),
}

_SEPARATOR = b"\x00"


def redact_all(texts: list[str], placeholder: str) -> list[tuple[str, Counter[str]]]:
    """Each text with every detected secret replaced, and the secrets it had by detector.
    The texts are searched as one joined buffer: one regex pass per pattern for the batch,
    instead of one per pattern and document."""
    found = redact_blobs([t.encode("utf-8") for t in texts], placeholder.encode())
    return [
        (text if blob is None else blob.decode("utf-8"), counts)
        for text, (blob, counts) in zip(texts, found, strict=True)
    ]


def redact_blobs(blobs: list[bytes], placeholder: bytes) -> list[tuple[bytes | None, Counter[str]]]:
    """:func:`redact_all` on UTF-8 texts: each redacted text (None where nothing was found)
    and the secrets it had by detector."""
    starts, at = [], 0
    for blob in blobs:
        starts.append(at)
        at += len(blob) + len(_SEPARATOR)
    spans: list[list[tuple[int, int]]] = [[] for _ in blobs]
    found: list[Counter[str]] = [Counter() for _ in blobs]
    joined = _SEPARATOR.join(blobs)
    lower = b""
    for name, detector in DETECTORS.items():
        if detector.caseless and not lower:
            lower = joined.lower()
        haystack = lower if detector.caseless else joined
        for prefix, pattern in detector.patterns:
            if prefix not in haystack:
                continue
            group = "secret" if "secret" in pattern.groupindex else 0
            for m in pattern.finditer(haystack):
                start, end = m.span(group)
                i = bisect.bisect_right(starts, start) - 1
                match = joined[m.start() : m.end()].decode("utf-8", "replace")
                secret = joined[start:end].decode("utf-8", "replace")
                span = (start - starts[i], end - starts[i])
                # detectors run most specific first: a secret already claimed counts once
                if not _overlaps(span, spans[i]) and detector.accept(match, secret):
                    spans[i].append(span)
                    found[i][name] += 1
    return [
        (_splice(blob, _disjoint(sorted(where)), placeholder) if where else None, counts)
        for blob, where, counts in zip(blobs, spans, found, strict=True)
    ]


def redact(text: str, placeholder: str = "<SECRET>") -> tuple[str, Counter[str]]:
    return redact_all([text], placeholder)[0]


def _overlaps(span: tuple[int, int], taken: list[tuple[int, int]]) -> bool:
    return any(span[0] < end and start < span[1] for start, end in taken)


def _disjoint(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for start, end in spans:
        if out and start < out[-1][1]:
            out[-1] = (out[-1][0], max(end, out[-1][1]))
        else:
            out.append((start, end))
    return out


def _splice(blob: bytes, spans: list[tuple[int, int]], placeholder: bytes) -> bytes:
    parts, at = [], 0
    for start, end in spans:
        parts += [blob[at:start], placeholder]
        at = end
    parts.append(blob[at:])
    return b"".join(parts)


@register
class Secrets(Step):
    name = "secrets"

    def run(self, docs: list[Doc], stats: StepStats) -> None:
        if not self.config.redact_secrets:
            return
        placeholder = self.config.secret_placeholder.encode()
        for doc, (blob, found) in zip(
            docs, redact_blobs([d.data for d in docs], placeholder), strict=True
        ):
            if found:
                if blob is not None:
                    doc.set_text(blob.decode("utf-8"), blob)
                doc.redactions.update(found)
                stats.counts["documents_redacted"] += 1
                for kind, n in found.items():
                    stats.counts[f"redacted.{kind}"] += n
