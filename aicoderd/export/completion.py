"""The completion metrics of a GGUF, measured in llama.cpp: the figures of the model as it is
deployed (its weights as exported, llama.cpp's tokenizer and arithmetic), computed by the same
code as the PyTorch figures (:mod:`aicoderd.training.completion`) through a llama.cpp backend.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from aicoderd.config import Settings
from aicoderd.errors import ExportError, TrainingError
from aicoderd.export import inference
from aicoderd.store import Store
from aicoderd.training import completion, gate, report
from aicoderd.training.corpus import load_corpus

MAX_CONTEXT = 4096  # a public model's long context is cut to this: the cases need far less


class LlamaCppBackend:
    """A ``llama_cpp.Llama`` loaded with ``logits_all`` (the scores of every position)."""

    def __init__(self, llm: Any, context: int) -> None:
        self.llm = llm
        self._context = context  # the n_ctx asked for (llama.cpp may round its own up)
        self._begin = list(llm.tokenize(b"", add_bos=True, special=True))
        self._vocab: list[str] | None = None

    @property
    def context(self) -> int:
        return self._context

    def begin(self) -> list[int]:
        return list(self._begin)

    def encode(self, text: str) -> list[int]:
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def special(self, token: str) -> int | None:
        ids = self.llm.tokenize(token.encode("utf-8"), add_bos=False, special=True)
        return int(ids[0]) if len(ids) == 1 else None

    def decode(self, ids: list[int]) -> str:
        data: bytes = self.llm.detokenize(ids, special=True)
        return data.decode("utf-8", errors="replace")

    def vocab(self) -> list[str]:
        if self._vocab is None:
            self._vocab = [self.decode([i]) for i in range(self.llm.n_vocab())]
        return self._vocab

    def greedy(
        self,
        ids: list[int],
        max_new: int,
        done: Callable[[int], bool],
        first: set[int] | None = None,
    ) -> list[int]:
        llm = self.llm
        llm.reset()
        llm.eval(ids)
        out: list[int] = []
        while len(out) < max_new:
            logits = llm.scores[llm.n_tokens - 1]
            if first is not None and not out:
                allowed = np.fromiter(sorted(first), dtype=np.int64)
                token = int(allowed[np.argmax(logits[allowed])])
            else:
                token = int(np.argmax(logits))
            out.append(token)
            if done(token):
                break
            llm.eval([token])
        return out

    def nll(self, ids: list[int]) -> float:
        self.llm.reset()
        self.llm.eval(ids)
        logits = np.asarray(self.llm.scores[: len(ids) - 1], dtype=np.float64)
        logits -= logits.max(axis=-1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
        return float(-logp[np.arange(len(ids) - 1), ids[1:]].sum())


def trained_context(gguf_path: Path) -> int:
    """The context the GGUF's model was trained with (``<arch>.context_length``)."""
    import gguf

    try:
        reader = gguf.GGUFReader(gguf_path)
        arch = reader.get_field("general.architecture")
        found = reader.get_field(f"{arch.contents() if arch else 'llama'}.context_length")
    except (OSError, ValueError) as exc:
        raise ExportError(f"cannot read {gguf_path}: {exc}") from exc
    return int(found.contents()) if found is not None else MAX_CONTEXT


def evaluate(
    gguf_path: Path,
    corpus_dir: Path,
    *,
    cases: int,
    fmt: completion.Format = completion.OURS,
    n_ctx: int | None = None,
) -> dict[str, Any]:
    """The completion metrics and eval loss of ``gguf_path`` on the corpus's eval split."""
    started = time.perf_counter()
    context = n_ctx or min(trained_context(gguf_path), MAX_CONTEXT)
    llm = inference.load(gguf_path, n_ctx=context, logits_all=True)
    try:
        out: dict[str, Any] = {"model": str(gguf_path.absolute()), "backend": "llama.cpp"}
        out |= completion.evaluate(
            LlamaCppBackend(llm, context), load_corpus(corpus_dir), cases=cases, fmt=fmt
        )
    finally:
        llm.close()
    out["eval_seconds"] = round(time.perf_counter() - started, 3)
    return out


def measure_export(gguf_path: Path, model_dir: Path, settings: Settings) -> dict[str, Any]:
    """The daemon's export: the verified GGUF measured on the model's corpus, recorded in
    ``model_evals``; a measurement that cannot run says why and keeps the export."""
    recorded = report.read_metrics(model_dir).get("corpus_dir")
    corpus = Path(recorded) if recorded else settings.corpus_dir
    try:
        result = evaluate(gguf_path, corpus, cases=settings.training.completion_cases)
    except (ExportError, TrainingError) as exc:
        return {"error": str(exc)}
    store = Store(settings.state_db)
    try:
        store.evals.record(result)
    finally:
        store.close()
    return gate.summary(result) | {"backend": result["backend"]}
