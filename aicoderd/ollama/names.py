"""Ollama's model-name grammar (its ``types/model`` ParseName): ``[host/][namespace/]model[:tag]``
with the registry defaults, the per-part character rules, and the display form."""

from __future__ import annotations

import re
from dataclasses import dataclass

from aicoderd.errors import OllamaError

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"
MISSING = "!MISSING!"

# part → (max length, pattern); every part starts with [A-Za-z0-9_].
_PARTS = {
    "host": (350, re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]*$")),
    "namespace": (80, re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")),
    "model": (80, re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")),
    "tag": (80, re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")),
}
# What the daemon itself generates: lower case, and never a tag Ollama reads as a source.
_OWN_TAG = re.compile(r"^[a-z0-9][a-z0-9._-]{0,79}$")


@dataclass(frozen=True)
class Name:
    host: str
    namespace: str
    model: str
    tag: str

    @property
    def display(self) -> str:
        """The form ``/api/tags`` shows: default host and namespace left out, tag always."""
        prefix = ""
        if self.host.lower() != DEFAULT_HOST:
            prefix = f"{self.host}/{self.namespace}/"
        elif self.namespace.lower() != DEFAULT_NAMESPACE:
            prefix = f"{self.namespace}/"
        return f"{prefix}{self.model}:{self.tag}"

    @property
    def base(self) -> str:
        """The display form without the tag, e.g. ``team/coder``."""
        return self.display.rsplit(":", 1)[0]

    def with_tag(self, tag: str) -> Name:
        return Name(self.host, self.namespace, self.model, tag)

    def key(self) -> tuple[str, str, str, str]:
        """Ollama matches names case-insensitively."""
        return (self.host.lower(), self.namespace.lower(), self.model.lower(), self.tag.lower())


def split(text: str) -> tuple[str, str, str, str]:
    """The four parts as written: the tag after a last ``:`` that follows the last ``/``, then
    ``/``-separated host (its ``scheme://`` dropped), namespace and model. A part a separator
    promises but that is empty is ``!MISSING!``; one no separator promises may be left out."""
    tag = ""
    if text.rfind(":") > text.rfind("/"):
        text, _, tag = text.rpartition(":")
        tag = tag or MISSING
    parts = text.split("/")
    model = parts[-1] or (MISSING if len(parts) > 1 else "")
    namespace = parts[-2] if len(parts) > 1 else ""
    if len(parts) > 2 and not namespace:
        namespace = MISSING
    host = "/".join(parts[:-2])
    return host.split("://", 1)[-1], namespace, model, tag


def parse(text: str) -> Name:
    """A valid name with defaults filled in, or :class:`OllamaError` naming the bad part."""
    host, namespace, model, tag = split(text)
    name = Name(host or DEFAULT_HOST, namespace or DEFAULT_NAMESPACE, model, tag or DEFAULT_TAG)
    for part, value in zip(_PARTS, (name.host, name.namespace, name.model, name.tag), strict=True):
        limit, pattern = _PARTS[part]
        if not value.isascii() or len(value) > limit or not pattern.match(value):
            raise OllamaError(f"invalid model name {text!r}: bad {part} {value!r}")
    return name


def is_valid(text: str) -> bool:
    try:
        parse(text)
    except OllamaError:
        return False
    return True


def check_own_tag(tag: str) -> str:
    """A tag the daemon may generate: lower-case, and not one Ollama routes to the cloud."""
    if not _OWN_TAG.match(tag) or tag in ("cloud", "local") or tag.endswith("-cloud"):
        raise OllamaError(
            f"tag {tag!r} is not usable: use [a-z0-9][a-z0-9._-]*, not cloud/local/*-cloud"
        )
    return tag
