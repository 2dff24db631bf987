"""How a path is named in a document's uri when its bytes may not be UTF-8.

File names (and git paths) are bytes; Python reads one that is not UTF-8 with
``surrogateescape``, keeping each odd byte as a lone surrogate, which the store (SQLite text)
refuses. So a uri writes such a byte as ``%XX``, and ``%`` itself as ``%25``: lossless
(``urllib.parse.unquote_to_bytes`` gives the bytes back), valid UTF-8, and no two paths share
a uri. Every other character is written as it is.
"""

from __future__ import annotations

import re

# A byte that is not UTF-8 (a lone surrogate from surrogateescape), and "%".
_NOT_AS_IS = re.compile("[%\udc80-\udcff]")


def uri_path(path: str) -> str:
    """``path`` as a document's uri (or ``meta.path``) names it."""
    return _NOT_AS_IS.sub(_escaped, path) if "%" in path or not path.isascii() else path


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    return "%25" if char == "%" else f"%{ord(char) - 0xDC00:02X}"
