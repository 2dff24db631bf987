"""Step ``secrets``: credentials in the text are replaced by a placeholder (``<SECRET>``), and
the same detector cleans the URIs and paths a build records (:func:`redact_strings`).

Detection is one Kingfisher scan per 256 KB slice of a batch: its maintained catalogue
(Betterleaks and Veles rules for several hundred providers) and this project's rules
(``secret_rules.yaml``: assignments, URLs, connection strings, command lines, a few token
shapes) compiled into one vectorscan database, so a slice costs one pass whatever the number
of rules. Each match then
goes through its rule's filter (:mod:`aicoderd.corpus.secret_filters`): placeholders,
references such as ``${DB_PASS}``, code expressions and documentation examples stay. Only the
secret itself is replaced — ``password=``, the quotes, the user name in a URL stay.

Kingfisher compiles the rules once and caches the database in the user's cache directory
(``~/.cache/kingfisher``; a few seconds the first time, ~0.3 s after).
"""

from __future__ import annotations

import bisect
import functools
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import kingfisher_sdk

from aicoderd.corpus.document import Doc
from aicoderd.corpus.secret_filters import CONTEXT, FILTERS, not_placeholder
from aicoderd.corpus.steps import Step, StepStats, register

RULES = Path(__file__).with_name("secret_rules.yaml")
_FIRST_STRUCTURAL = "aicoderd.url-password"  # rules from here on count after the catalogue
# Between the documents of a batch: a line break keeps line-bound rules inside a document.
_SEPARATOR = b"\n\x00\n"
# Bytes scanned per call: Kingfisher's time per byte grows with the input (a 9 MB input costs
# 4.6x per byte what 230 KB inputs do), so a batch is scanned in slices.
_SLICE = 256 * 1024


@functools.cache
def _scanner() -> kingfisher_sdk.Scanner:
    rules = kingfisher_sdk.Rules([RULES])
    return kingfisher_sdk.Scanner(rules, base64=False)


@functools.cache
def kind_of(rule_id: str) -> str:
    """The manifest's name for a rule: ``aicoderd.password-bare`` → ``password_bare``,
    ``betterleaks.github-pat`` → ``github_pat``, ``veles.secrets/sendgrid`` → ``sendgrid``."""
    name = rule_id.split(".", 1)[-1].rsplit("/", 1)[-1]
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


@functools.cache
def _rank(rule_id: str) -> float:
    """Which rule a secret counts under when several find it: this project's token shapes,
    then the catalogue's provider rules, then this project's structural rules (assignments,
    URLs, command lines), each in file order."""
    own = re.findall(r"(?m)^\s*id:\s*(\S+)", RULES.read_text(encoding="utf-8"))
    catalogue = own.index(_FIRST_STRUCTURAL) - 0.5
    return float(own.index(rule_id)) if rule_id in own else catalogue


@dataclass(frozen=True)
class Hit:
    start: int  # byte offsets in the document's UTF-8 text
    end: int
    kind: str
    counted: bool  # False when another rule already found this secret


def detect(blobs: list[bytes]) -> list[list[Hit]]:
    """The secrets in each UTF-8 text. Texts are scanned joined, in slices of about
    :data:`_SLICE` bytes: one scan per slice, where Kingfisher is fastest."""
    hits: list[list[Hit]] = []
    group: list[bytes] = []
    size = 0
    for blob in blobs:
        if group and size + len(blob) > _SLICE:
            hits += _detect_joined(group)
            group, size = [], 0
        group.append(blob)
        size += len(blob)
    return hits + (_detect_joined(group) if group else [])


def _detect_joined(blobs: list[bytes]) -> list[list[Hit]]:
    starts, at = [], 0
    for blob in blobs:
        starts.append(at)
        at += len(blob) + len(_SEPARATOR)
    joined = _SEPARATOR.join(blobs)
    hits: list[list[Hit]] = [[] for _ in blobs]
    findings = [f for f in _scanner().scan(joined) if f.visible]
    findings.sort(key=lambda f: (_rank(f.rule_id), f.location["start_offset"]))
    for f in findings:
        kind = kind_of(f.rule_id)
        for start, end in _located(joined, f):
            i = bisect.bisect_right(starts, start) - 1
            end = min(end, starts[i] + len(blobs[i]))
            if start >= end:
                continue  # in a separator
            before = joined[max(starts[i], start - 4 * CONTEXT) : start].decode("utf-8", "replace")
            if not FILTERS.get(kind, not_placeholder)(f.secret, before[-CONTEXT:]):
                continue
            span = (start - starts[i], end - starts[i])
            counted = not any(span[0] < h.end and h.start < span[1] for h in hits[i])
            hits[i].append(Hit(*span, kind, counted))
    return hits


def redact_blobs(blobs: list[bytes], placeholder: bytes) -> list[tuple[bytes | None, Counter[str]]]:
    """Each UTF-8 text with every detected secret replaced (None where nothing was found),
    and the secrets it had by kind."""
    out: list[tuple[bytes | None, Counter[str]]] = []
    for blob, hits in zip(blobs, detect(blobs), strict=True):
        counts = Counter(h.kind for h in hits if h.counted)
        spans = _disjoint(sorted((h.start, h.end) for h in hits))
        out.append((_splice(blob, spans, placeholder) if spans else None, counts))
    return out


def _located(joined: bytes, finding: kingfisher_sdk.Finding) -> list[tuple[int, int]]:
    """Where a finding's secret is in the buffer: at its reported offsets, or (should the
    scanner have reported offsets into a decoded form) every place its bytes occur."""
    start, end = finding.location["start_offset"], finding.location["end_offset"]
    secret = finding.secret.encode("utf-8")
    if joined[start:end] == secret:
        return [(start, end)]
    out, at = [], joined.find(secret)
    while secret and at >= 0:
        out.append((at, at + len(secret)))
        at = joined.find(secret, at + len(secret))
    return out


def redact_all(texts: list[str], placeholder: str) -> list[tuple[str, Counter[str]]]:
    """:func:`redact_blobs` on strings."""
    found = redact_blobs([t.encode("utf-8") for t in texts], placeholder.encode())
    return [
        (text if blob is None else blob.decode("utf-8"), counts)
        for text, (blob, counts) in zip(texts, found, strict=True)
    ]


def redact(text: str, placeholder: str = "<SECRET>") -> tuple[str, Counter[str]]:
    return redact_all([text], placeholder)[0]


def redact_strings(values: list[str], placeholder: str) -> list[str]:
    """URIs, paths and messages a build records, each with its secrets replaced (a token in a
    file name must not reach the dataset, the ledger or the manifest)."""
    unique = list(dict.fromkeys(values))  # a build's documents share a few sources
    clean = dict(zip(unique, (text for text, _ in redact_all(unique, placeholder)), strict=True))
    return [clean[v] for v in values]


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
