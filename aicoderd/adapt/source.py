"""Where the weights to adapt come from: a model in the user's Ollama (by name), a GGUF file,
or an HF model directory.

An Ollama model is described by ``/api/show`` (its modelfile names the model blob, and it
gives the template, system prompt and parameters the adapted model keeps); its GGUF is read,
never written, from Ollama's models directory (``adapt.ollama_models``, resolved when the
configuration is loaded).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aicoderd.errors import GGUFError, TrainingError
from aicoderd.export import constants as EC
from aicoderd.ollama import ggufinfo, names
from aicoderd.ollama.client import Client

# gguf general.architecture → what the export registry and transformers call it
ARCHITECTURES = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM"}
_FROM = re.compile(r"^FROM\s+(\S.*?)\s*$", re.MULTILINE)
_BLOB = re.compile(r"sha256[-:]([0-9a-f]{64})$")


@dataclass(frozen=True)
class OllamaBase:
    """What the adapted model keeps of the Ollama model it came from."""

    name: str  # display form, e.g. qwen2.5-coder:0.5b
    digest: str  # sha256:<hex> of its model blob
    template: str
    system: str
    parameters: dict[str, Any]
    license: str
    quantization: str  # details.quantization_level


@dataclass(frozen=True)
class Source:
    label: str  # as the user gave it
    gguf: Path | None = None  # the weights as a GGUF (Ollama's blob, or a file)
    hf_dir: Path | None = None  # ...or as an HF model directory
    ollama: OllamaBase | None = None
    header: dict[str, Any] = field(default_factory=dict)  # the GGUF's key-values

    @property
    def architecture(self) -> str:
        if self.gguf is not None:
            return str(self.header.get("general.architecture", "unknown"))
        config = json.loads((self.hf_dir or Path()).joinpath(EC.CONFIG_JSON).read_text())
        return str(config.get("model_type", "unknown"))

    @property
    def file_type(self) -> str | None:
        """The GGUF's general.file_type as Ollama names it (F16, Q8_0, Q4_K_M…)."""
        if self.gguf is None:
            return None
        value = self.header.get("general.file_type")
        return ggufinfo.FILE_TYPES.get(int(value)) if isinstance(value, int) else None


def resolve(text: str, client: Client | None, models_dir: Path | None) -> Source:
    """``PATH.gguf``, an HF directory, or an Ollama model name, checked and described."""
    path = Path(text).expanduser()
    if path.is_file():
        return _gguf_source(text, path, None)
    if path.is_dir():
        if not (path / EC.CONFIG_JSON).is_file():
            raise TrainingError(f"{path} is neither a GGUF file nor an HF model directory")
        return Source(text, hf_dir=path)
    if text.endswith(".gguf") or text.startswith(("/", ".", "~")):
        raise TrainingError(f"no such file or directory: {text}")
    if client is None:
        raise TrainingError(f"{text!r} is no file or directory, and no Ollama to ask")
    return _from_ollama(text, client, models_dir)


def _gguf_source(label: str, path: Path, base: OllamaBase | None) -> Source:
    try:
        header = ggufinfo.read_file(str(path))
    except (OSError, GGUFError) as exc:
        raise TrainingError(f"{path} is not a readable GGUF: {exc}") from exc
    source = Source(label, gguf=path, ollama=base, header=header.kv)
    if source.architecture not in ARCHITECTURES:
        raise TrainingError(
            f"{label}: architecture {source.architecture!r} cannot be adapted yet (supported:"
            f" {', '.join(ARCHITECTURES)})"
        )
    return source


def _from_ollama(text: str, client: Client, models_dir: Path | None) -> Source:
    name = names.parse(text).display
    shown = client.show(name)
    if shown is None:
        raise TrainingError(f"Ollama has no model {name} (`ollama pull {name}` first)")
    found = _FROM.search(str(shown.get("modelfile") or ""))
    blob = _BLOB.search(found.group(1)) if found else None
    if blob is None:
        raise TrainingError(f"{name}: its modelfile names no model blob (FROM …/sha256-…)")
    if models_dir is None:
        raise TrainingError(
            "Ollama's models directory was not found (~/.ollama/models,"
            " /usr/share/ollama/.ollama/models): set adapt.ollama_models or OLLAMA_MODELS"
        )
    path = models_dir / "blobs" / f"sha256-{blob.group(1)}"
    if not path.is_file():
        raise TrainingError(
            f"{name}: its blob {path.name} is not in {models_dir / 'blobs'} (does this Ollama"
            " keep its models elsewhere? set adapt.ollama_models)"
        )
    details = shown.get("details") or {}
    base = OllamaBase(
        name=name,
        digest=f"sha256:{blob.group(1)}",
        template=str(shown.get("template") or ""),
        system=str(shown.get("system") or ""),
        parameters=parse_parameters(str(shown.get("parameters") or "")),
        license=str(shown.get("license") or ""),
        quantization=str(details.get("quantization_level") or ""),
    )
    return _gguf_source(text, path, base)


def parse_parameters(text: str) -> dict[str, Any]:
    """``/api/show``'s parameters (``key  value`` lines, values as Go prints them: strings
    quoted, a list one line per item) back into what ``/api/create`` takes."""
    out: dict[str, Any] = {}
    for line in text.splitlines():
        key, _, raw = line.strip().partition(" ")
        if not key or not raw.strip():
            continue
        try:
            value: Any = json.loads(raw.strip())
        except ValueError:
            value = raw.strip()
        if key == "stop":
            out.setdefault(key, []).append(str(value))
        else:
            out[key] = value
    return out
