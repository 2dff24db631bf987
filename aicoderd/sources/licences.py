"""Licence of a repository file, as an SPDX expression: the file's own
``SPDX-License-Identifier`` header, else the repository's licence files.

A licence file is recognised by the phrases that set its licence apart from the others (a small
table, in the spirit of GitHub's licensee; scancode is accurate but far too heavy for a fetch).
Identifiers are checked and normalised with ``license-expression``; an unknown one is dropped
rather than recorded wrong.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from license_expression import ExpressionError, Licensing, get_spdx_licensing

# Root files that hold a repository's licence: LICENSE, LICENCE.md, COPYING, LICENSE-MIT...
LICENCE_FILE = re.compile(r"^(?:un)?(?:licen[cs]e|copying)(?:[-._][\w.-]*)?$", re.IGNORECASE)
# Only the start of a file is searched for an SPDX header, as the REUSE spec expects.
HEADER_CHARS = 4096
# Licence texts longer than this are not licence texts (nor worth reading).
MAX_LICENCE_CHARS = 200_000

_SPDX_HEADER = re.compile(r"SPDX-License-Identifier:\s*(.+?)\s*(?:\*/|-->|#\}|\"\"\"|$)", re.M)


@dataclass(frozen=True)
class _Rule:
    spdx: str
    all_of: tuple[str, ...]  # lower-case phrases, whitespace collapsed


# Most specific first: the first rule whose phrases all occur wins.
_RULES = (
    _Rule("AGPL-3.0-only", ("gnu affero general public license", "version 3, 19 november 2007")),
    _Rule("LGPL-3.0-only", ("gnu lesser general public license", "version 3, 29 june 2007")),
    _Rule("LGPL-2.1-only", ("gnu lesser general public license", "version 2.1, february 1999")),
    _Rule("GPL-3.0-only", ("gnu general public license", "version 3, 29 june 2007")),
    _Rule("GPL-2.0-only", ("gnu general public license", "version 2, june 1991")),
    _Rule("Apache-2.0", ("apache license", "version 2.0")),
    _Rule("MPL-2.0", ("mozilla public license", "2.0")),
    _Rule("EPL-2.0", ("eclipse public license - v 2.0",)),
    _Rule("BSL-1.0", ("boost software license - version 1.0",)),
    _Rule("PSF-2.0", ("python software foundation license version 2",)),
    _Rule("Unlicense", ("this is free and unencumbered software released into the public domain",)),
    _Rule("CC0-1.0", ("cc0 1.0 universal",)),
    _Rule(
        "MIT",
        (
            "permission is hereby granted, free of charge, to any person obtaining a copy",
            "the above copyright notice and this permission notice shall be included",
        ),
    ),
    _Rule(
        "BSD-4-Clause",
        ("redistribution and use in source and binary forms", "all advertising materials"),
    ),
    _Rule(
        "BSD-3-Clause",
        ("redistribution and use in source and binary forms", "may be used to endorse or promote"),
    ),
    _Rule("BSD-2-Clause", ("redistribution and use in source and binary forms",)),
    _Rule(
        "ISC",
        (
            "permission to use, copy, modify, and/or distribute this software for any purpose",
            "provided that the above copyright notice and this permission notice appear",
        ),
    ),
    _Rule(
        "0BSD",
        ("permission to use, copy, modify, and/or distribute this software for any purpose",),
    ),
    _Rule(
        "Zlib",
        (
            "this software is provided 'as-is', without any express or implied warranty",
            "permission is granted to anyone to use this software for any purpose",
        ),
    ),
)

_SPACE = re.compile(r"\s+")


@functools.cache
def _licensing() -> Licensing:
    return get_spdx_licensing()


def normalise(expression: str) -> str | None:
    """``"mit OR apache-2.0"`` → ``"MIT OR Apache-2.0"``; None when not a valid SPDX expression."""
    try:
        parsed = _licensing().parse(expression, validate=True, strict=True)
    except ExpressionError:
        return None
    return None if parsed is None else str(parsed.render())


def from_header(text: str) -> str | None:
    """The SPDX expression of a ``SPDX-License-Identifier:`` line near the top of ``text``."""
    found = _SPDX_HEADER.search(text[:HEADER_CHARS])
    return None if found is None else normalise(found.group(1))


def from_licence_text(text: str) -> str | None:
    """The SPDX id of a licence file, from its distinctive phrases; None if not recognised."""
    folded = _SPACE.sub(" ", text[:MAX_LICENCE_CHARS].lower())
    for rule in _RULES:
        if all(p in folded for p in rule.all_of):
            return rule.spdx
    # A licence file that is just an SPDX expression ("MIT", "Apache-2.0 OR MIT").
    stripped = text.strip()
    if stripped and "\n" not in stripped and len(stripped) < 100:
        return normalise(stripped)
    return from_header(text)


def combine(ids: list[str]) -> str | None:
    """One expression for several licence files. Without reading the README, two files cannot
    be told apart as a choice (OR) or a combination (AND); AND is the safe reading."""
    unique = sorted(set(ids))
    if not unique:
        return None
    return normalise(" AND ".join(f"({i})" if " " in i else i for i in unique))
