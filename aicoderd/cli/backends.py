"""The deployed model, asked for a review suggestion or a fill-in-the-middle completion: through
Ollama (``/api/generate`` with the model's own template) when it answers and has the model,
else through llama.cpp on the newest verified GGUF in ``data_dir/exports`` — so it works before
any Ollama exists. Imported only when ``aicoder review`` or ``aicoder complete`` runs (httpx,
gguf and llama.cpp load then).
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from aicoderd.config import Settings
from aicoderd.errors import NotFound, OllamaError, OllamaUnavailable
from aicoderd.training import prompt

BackendName = Literal["auto", "ollama", "llamacpp"]
OLLAMA, LLAMACPP = "ollama", "llama.cpp"


class Backend(Protocol):
    kind: str  # "ollama" | "llama.cpp"
    model: str  # what the feedback record names

    def review(self, code: str, max_tokens: int) -> str: ...

    def complete(self, prefix: str, suffix: str, max_tokens: int) -> str: ...

    def close(self) -> None: ...


# -- Ollama --------------------------------------------------------------------------------------


class OllamaBackend:
    kind = OLLAMA

    def __init__(self, settings: Settings, name: str) -> None:
        from aicoderd.ollama.client import Client

        self.client = Client.from_settings(settings)
        self.model = name
        self.fim_template = False

    def available(self) -> str | None:
        """None when the model is there; else why not."""
        try:
            shown = self.client.show(self.model)
        except OllamaUnavailable as exc:
            return str(exc)
        if shown is None:
            return f"Ollama at {self.client.base_url} has no model {self.model}"
        self.fim_template = ".Suffix" in str(shown.get("template") or "")
        return None

    def _generate(self, text: str, max_tokens: int, **how: Any) -> str:
        options = {"num_predict": max_tokens, "temperature": 0}
        return str(self.client.generate(self.model, text, options, **how).get("response") or "")

    def review(self, code: str, max_tokens: int) -> str:
        return self._generate(code, max_tokens)  # the template's review branch

    def complete(self, prefix: str, suffix: str, max_tokens: int) -> str:
        # Ollama takes a template's fill-in-the-middle branch only when both the prompt and the
        # suffix are non-empty (an empty prompt only loads the model); otherwise, and for a
        # template without .Suffix, the layout is sent raw.
        if prefix and suffix and self.fim_template:
            return self._generate(prefix, max_tokens, suffix=suffix)
        return self._generate(prompt.fim_prompt(prefix, suffix), max_tokens, raw=True)

    def close(self) -> None:
        self.client.close()


# -- llama.cpp -----------------------------------------------------------------------------------


def newest_verified_gguf(exports_dir: Path) -> Path | None:
    """The newest GGUF whose parity report says it passed."""
    # By name, as run_stage imports a stage: export.build reaches the parity check (torch).
    build = importlib.import_module("aicoderd.export.build")
    found = sorted(exports_dir.glob("*.gguf"), key=lambda p: p.stat().st_mtime, reverse=True)
    return next((p for p in found if build.verified(p) is True), None)


@dataclass
class _Header:
    context: int
    version: str | None


def _header(gguf: Path) -> _Header:
    from aicoderd.export import constants
    from aicoderd.ollama import ggufinfo

    kv = ggufinfo.read_file(str(gguf)).kv
    arch = str(kv.get("general.architecture") or "llama")
    context = kv.get(constants.KEY_CONTEXT) or kv.get(f"{arch}.context_length") or 2048
    version = kv.get(constants.KEY_VERSION)
    return _Header(int(context), None if version is None else str(version))


class LlamaCppBackend:
    kind = LLAMACPP

    def __init__(self, settings: Settings, gguf: Path) -> None:
        from aicoderd.export import inference
        from aicoderd.ollama.deploy import tag_for

        header = _header(gguf)
        self.gguf = gguf
        self.context = header.context
        self.model = f"{settings.ollama.model}:{tag_for(header.version or gguf.stem)}"
        self.llm = inference.load(gguf, n_ctx=self.context)
        self.stops = {self._single(t) for t in prompt.STOP_TOKENS} | {self.llm.token_eos()}

    def _single(self, text: str) -> int:
        ids = self.llm.tokenize(text.encode(), add_bos=False, special=True)
        return int(ids[0]) if len(ids) == 1 else -1

    def _ids(self, text: str) -> list[int]:
        return list(self.llm.tokenize(text.encode(), add_bos=True, special=True))

    def _generate(self, ids: list[int], max_tokens: int) -> str:
        """Greedy, to a stop token or ``max_tokens`` (or the end of the context)."""
        room = min(max_tokens, self.context - len(ids))
        out: list[int] = []
        if room > 0:
            for token in self.llm.generate(ids, temp=0.0, reset=True):
                if token in self.stops:
                    break
                out.append(int(token))
                if len(out) >= room:
                    break
        data: bytes = self.llm.detokenize(out)
        return data.decode("utf-8", "replace")

    def _fit(self, head: str, tail: str, layout: Any, max_tokens: int) -> list[int]:
        """The layout's ids, the text cut (``head`` from its start, ``tail`` from its end) until
        they leave room for ``max_tokens`` in the context."""
        limit = max(8, self.context - max_tokens)
        ids = self._ids(layout(head, tail))
        while len(ids) > limit and (head or tail):
            head = head[len(head) // 5 or len(head) :]
            tail = tail[: len(tail) - (len(tail) // 5 or len(tail))]
            ids = self._ids(layout(head, tail))
        return ids

    def review(self, code: str, max_tokens: int) -> str:
        ids = self._fit(code, "", lambda head, _tail: prompt.review_prompt(head), max_tokens)
        return self._generate(ids, max_tokens)

    def complete(self, prefix: str, suffix: str, max_tokens: int) -> str:
        return self._generate(self._fit(prefix, suffix, prompt.fim_prompt, max_tokens), max_tokens)

    def close(self) -> None:
        self.llm.close()


# -- choosing ------------------------------------------------------------------------------------


def open_backend(settings: Settings, which: BackendName, model: str | None) -> Backend:
    """Ollama when it answers with the model (``auto``, ``ollama``), else llama.cpp on the newest
    verified GGUF (``auto``, ``llamacpp``). Says on stderr why Ollama was passed over."""
    name = model or f"{settings.ollama.model}:latest"
    why = ""
    if which in ("auto", "ollama"):
        ollama = OllamaBackend(settings, name)
        problem = ollama.available()
        if problem is None:
            return ollama
        ollama.close()
        if which == "ollama":
            raise OllamaError(problem)
        why = problem + "; "
    gguf = newest_verified_gguf(settings.exports_dir)
    if gguf is None:
        raise NotFound(
            f"no model to ask: {why}no verified GGUF in {settings.exports_dir}"
            " (`aicoder export MODEL_DIR -o OUT.gguf --verify` writes one)"
        )
    if why:
        print(f"aicoder: {why}using {gguf.name} in llama.cpp", file=sys.stderr)
    return LlamaCppBackend(settings, gguf)
