"""Deploying the adapted model beside its base, never over it: ``<name>-<suffix>:<version>``
with ``:latest`` moved to it, the *base's* template, system prompt, stop tokens and parameters.

- merged: the verified GGUF through the ordinary deploy (upload, create, confirm);
- adapter: the GGUF LoRA uploaded and created with ``from`` (the base, whose layers Ollama
  shares) and ``adapters``. Recent Ollama versions are reported to refuse adapters: any refusal
  of that create is caught and the caller falls back to merged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aicoderd.adapt.source import OllamaBase
from aicoderd.errors import OllamaError
from aicoderd.ollama import deploy, ggufinfo, names
from aicoderd.ollama.blobs import BlobUpload
from aicoderd.ollama.client import Client

if TYPE_CHECKING:
    from aicoderd.config import Settings

ADAPTER_FILE_KEY = "adapter.gguf"
Status = Callable[[dict[str, Any]], None]


def target(base_name: str, suffix: str) -> names.Name:
    """``qwen2.5-coder:0.5b`` → ``qwen2.5-coder-mine`` (tag left to the version)."""
    n = names.parse(base_name)
    return names.parse(names.Name(n.host, n.namespace, f"{n.model}-{suffix}", "x").base)


def options(base: OllamaBase, name: names.Name, version: str, settings: Settings) -> Any:
    """Deploy options that keep the base's prompt format and parameters."""
    return replace(
        deploy.DeployOptions.from_settings(settings),
        name=name.base,
        version=version,
        # a Jinja template (Ollama >= 0.30 shows the GGUF's own) is no Go template: the GGUF
        # carries it, so none is sent
        template=base.template if "{%" not in base.template else "",
        system=base.system,
        license=base.license or None,
        extra_parameters=dict(base.parameters),
        quantize=None,  # the GGUF is written at the base's own type (or says what Ollama makes)
        replace=None,
    )


def merged(
    client: Client, gguf: Path, base: OllamaBase, name: names.Name, version: str, s: Settings
) -> dict[str, Any]:
    return deploy.deploy_gguf(client, gguf, options(base, name, version, s)) | {"mode": "merged"}


def adapter(
    client: Client,
    gguf: Path,
    base: OllamaBase,
    name: names.Name,
    version: str,
    status: Status | None = None,
) -> dict[str, Any]:
    """Create ``name:<version>`` from the base plus the adapter; :class:`OllamaError` when
    Ollama refuses."""
    say = status or (lambda _msg: None)
    deploy.check_version(client)
    tagged = name.with_tag(deploy.tag_for(version))
    upload = BlobUpload(client, gguf)
    upload.hash()
    digest = upload.ensure()
    if client.loaded(tagged.display):
        client.unload(tagged.display)
    upload.ensure()  # re-HEAD just before create: a restart may have pruned the blob
    request = {"model": tagged.display, "from": base.name, "adapters": {ADAPTER_FILE_KEY: digest}}
    statuses = client.create(request, say)
    latest = tagged.with_tag(names.DEFAULT_TAG)
    if client.loaded(latest.display):
        client.unload(latest.display)
    client.copy(tagged.display, latest.display)
    header = ggufinfo.read_file(str(gguf))
    shown = deploy.confirm(client, tagged.display, header, generate=True)
    return {
        "mode": "adapter",
        "name": tagged.display,
        "latest": latest.display,
        "digest": digest,
        "statuses": statuses,
        **shown,
    }


def refused(exc: OllamaError) -> str:
    return f"Ollama refused the adapter ({exc}); deploying the merged model instead"
