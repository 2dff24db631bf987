"""The fake's own model-name grammar, following Ollama's ``ParseName`` step by step
(``types/model``): cut the tag at the last ``:`` after the last ``/``, then the
model, the namespace and the host at the last ``/`` each, a ``scheme://`` only before the host;
a separator followed by nothing promises a part that is then ``!MISSING!`` (invalid). Written
apart from :mod:`aicoderd.ollama.names` on purpose: tests compare the two.
"""

from __future__ import annotations

from typing import NamedTuple

_MISSING = "!MISSING!"
_DEFAULTS = ("registry.ollama.ai", "library", "", "latest")  # host, namespace, model, tag
_LIMITS = {"host": 350, "namespace": 80, "model": 80, "tag": 80}
_EXTRA = {"host": "_-.:", "namespace": "_-", "model": "_-.", "tag": "_-."}  # after the first


class ModelName(NamedTuple):
    host: str
    namespace: str
    model: str
    tag: str

    def key(self) -> tuple[str, ...]:
        """Ollama finds a manifest whatever the case of each part."""
        return tuple(part.lower() for part in self)

    def display(self) -> str:
        """``DisplayShortest``: default host and namespace left out, the tag always there."""
        if self.host.lower() != _DEFAULTS[0]:
            return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"
        if self.namespace.lower() != _DEFAULTS[1]:
            return f"{self.namespace}/{self.model}:{self.tag}"
        return f"{self.model}:{self.tag}"

    def valid(self) -> bool:
        return all(_valid_part(kind, part) for kind, part in zip(_LIMITS, self, strict=True))


def _cut_last(text: str, sep: str) -> tuple[str, str, bool]:
    before, found, after = text.rpartition(sep)
    if not found:
        return text, "", False
    return before, after or _MISSING, True


def parse(text: str) -> ModelName:
    """The name with Ollama's defaults merged in (valid or not: see :meth:`ModelName.valid`)."""
    host = namespace = tag = ""
    rest = text
    if rest.rfind(":") > rest.rfind("/"):
        rest, tag, _ = _cut_last(rest, ":")
    rest, model, promised = _cut_last(rest, "/")
    if not promised:
        model = rest
    else:
        rest, namespace, promised = _cut_last(rest, "/")
        if not promised:
            namespace = rest
        else:
            host = rest.split("://", 1)[1] if "://" in rest else rest
    given = (host, namespace, model, tag)
    return ModelName(*(part or default for part, default in zip(given, _DEFAULTS, strict=True)))


def _valid_part(kind: str, part: str) -> bool:
    if not 0 < len(part.encode()) <= _LIMITS[kind]:
        return False
    first, rest = part[0], part[1:]
    if not (first.isascii() and (first.isalnum() or first == "_")):
        return False
    return all(c.isascii() and (c.isalnum() or c in _EXTRA[kind]) for c in rest)
