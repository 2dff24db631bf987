"""Completion metrics on the user's held-out code: what an editor asks of the model.

- ``infill_exact_match``: SantaCoder's single-line infilling. One non-blank line of an eval file
  is masked, the rest of the file (as much as the context holds) is the prefix and the suffix in
  the fill-in-the-middle layout, and the model decodes greedily to the end of the line; it
  matches when it wrote the line (surrounding whitespace aside, as SantaCoder compares).
- ``next_line_exact_match``: the same line from its prefix alone, left to right.
- ``bits_per_byte``: the model's code length of the eval text, beside what ``xz -9e``
  (``xz_bits_per_byte``) and ``zstd -19`` (``zstd_bits_per_byte``) make of the same bytes: a
  model that does not beat a compressor has learned little.

The cases (``completion_cases`` of them) are a sample of the eval split fixed by the corpus
snapshot, so two models gated on one corpus answer the same questions. A model is reached
through a :class:`Backend` — PyTorch here (a PEFT model too), a GGUF in llama.cpp in
:mod:`aicoderd.export.completion` — and asked in a :class:`Format`: its fill-in-the-middle
markers, stop tokens and document separator, so other model families are measured the same way.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import lzma
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from aicoderd.errors import TrainingError
from aicoderd.training import fim, prompt
from aicoderd.training import tokenizer as tokenization
from aicoderd.training.corpus import CorpusSplits

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

EVAL_BYTES = 2 * 2**20  # eval text scored, from the start of the eval split: bounds the time
LINE_SLACK = 8  # tokens a line may take beyond the true line's count before it is a miss
CHARS_PER_TOKEN = 16  # text cut before tokenizing a prefix or suffix: enough for the context

# The names every report uses (metrics.json, model_evals, status, `aicoder --json eval`).
KEYS = (
    "infill_exact_match",
    "next_line_exact_match",
    "bits_per_byte",
    "xz_bits_per_byte",
    "zstd_bits_per_byte",
    "completion_cases",
)


@dataclass(frozen=True)
class Format:
    """How a model family is asked to complete code."""

    fim: prompt.FimMarkers | None  # None: a model without FIM tokens (no infilling measured)
    stop: tuple[str, ...]  # special tokens that end a completion (absent ones are ignored)
    separator: str  # the special token between documents in its pretraining


OURS = Format(prompt.FIM, tuple(prompt.STOP_TOKENS), prompt.EOT)
QWEN25_CODER = Format(
    prompt.FimMarkers("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"),
    ("<|endoftext|>", "<|fim_prefix|>", "<|fim_pad|>", "<|file_sep|>", "<|repo_name|>"),
    "<|endoftext|>",
)
# DeepSeek-Coder's markers use FULLWIDTH VERTICAL LINE and LOWER ONE EIGHTH BLOCK.
_DS = "<\uff5c{}\uff5c>"
DEEPSEEK_CODER = Format(
    prompt.FimMarkers(
        _DS.format("fim\u2581begin"), _DS.format("fim\u2581hole"), _DS.format("fim\u2581end")
    ),
    (_DS.format("end\u2581of\u2581sentence"), "<|EOT|>", _DS.format("fim\u2581begin")),
    _DS.format("end\u2581of\u2581sentence"),
)


class Backend(Protocol):
    """A model to measure: token ids in, next-token predictions out."""

    @property
    def context(self) -> int:
        """Tokens the model attends over."""
        ...

    def begin(self) -> list[int]:
        """What the model's tokenizer puts before any prompt (a BOS token, or nothing)."""
        ...

    def encode(self, text: str) -> list[int]:
        """Plain text: a special token spelled out in it stays text."""
        ...

    def special(self, token: str) -> int | None:
        """The id of one special token; None when the model has no such single token."""
        ...

    def decode(self, ids: list[int]) -> str: ...

    def vocab(self) -> list[str]:
        """Each token id's text."""
        ...

    def greedy(
        self,
        ids: list[int],
        max_new: int,
        done: Callable[[int], bool],
        first: set[int] | None = None,
    ) -> list[int]:
        """Up to ``max_new`` argmax tokens after ``ids``, ending after the first ``done``; the
        first one among ``first`` when given."""
        ...

    def nll(self, ids: list[int]) -> float:
        """Summed negative log-likelihood (nats) of ``ids[1:]``, each given those before it;
        ``len(ids) <= context``."""
        ...


@dataclass(frozen=True)
class Case:
    """One masked line: ``prefix + target + suffix`` is the file."""

    prefix: str
    target: str
    suffix: str


def sample_cases(texts: list[str], snapshot: str, count: int) -> list[Case]:
    """``count`` non-blank lines drawn without replacement from ``texts``, the draw seeded by
    the snapshot id (the same corpus always gives the same cases), in file order."""
    spans = [list(_spans(t)) for t in texts]
    usable = [
        [i for i, (a, b) in enumerate(s) if t[a:b].strip()]
        for t, s in zip(texts, spans, strict=True)
    ]
    sizes = np.array([len(u) for u in usable], dtype=np.int64)
    total = int(sizes.sum())
    if total == 0:
        return []
    seed = int.from_bytes(hashlib.sha256(snapshot.encode()).digest()[:8], "little")
    picks = np.random.default_rng(seed).choice(total, size=min(count, total), replace=False)
    offsets = np.cumsum(sizes) - sizes
    cases = []
    for pick in sorted(picks.tolist()):
        doc = int(np.searchsorted(offsets, pick, side="right")) - 1
        text = texts[doc]
        a, b = spans[doc][usable[doc][pick - int(offsets[doc])]]
        cases.append(Case(text[:a], text[a:b], text[b:]))
    return cases


def _spans(text: str) -> Iterator[tuple[int, int]]:
    """(start, end) of each line's text, without its newline."""
    start = 0
    end = text.find("\n")
    while end != -1:
        yield start, end
        start, end = end + 1, text.find("\n", end + 1)
    yield start, len(text)


# -- exact match ---------------------------------------------------------------------------


def exact_match(
    backend: Backend,
    cases: list[Case],
    fmt: Format = OURS,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Infilling and next-line exact match over ``cases``, and the seconds they took."""
    started = time.perf_counter()
    stops = {i for i in (backend.special(s) for s in fmt.stop) if i is not None}
    vocab = backend.vocab()
    infill = next_line = 0
    for n, case in enumerate(cases, 1):
        room = min(len(backend.encode(case.target)) + LINE_SLACK, backend.context // 4)
        if fmt.fim is not None:
            got = _line(backend, infill_prompt(backend, case, fmt, room), stops, vocab, room)
            infill += got is not None and got.strip() == case.target.strip()
        ids = next_line_prompt(backend, case, fmt, room)
        got = _line(backend, ids, stops, vocab, room, heal=bool(case.prefix))
        next_line += got is not None and got.strip() == case.target.strip()
        if progress is not None:
            progress(n, len(cases))
    total = max(len(cases), 1)
    return {
        "infill_exact_match": infill / total if fmt.fim is not None else None,
        "next_line_exact_match": next_line / total,
        "completion_cases": len(cases),
        "completion_seconds": round(time.perf_counter() - started, 3),
    }


def infill_prompt(backend: Backend, case: Case, fmt: Format, room: int) -> list[int]:
    """The PSM prompt (Ollama's template renders it) with as much of the file as fits:
    half the room each, what one side leaves going to the other."""
    budget = backend.context - room - len(backend.begin())
    cut = budget * CHARS_PER_TOKEN
    assert fmt.fim is not None, "infilling needs FIM markers"
    pre, suf = backend.encode(case.prefix[-cut:]), backend.encode(case.suffix[:cut])
    marker = partial(_special, backend)
    return backend.begin() + fim.prompt_ids(fmt.fim, marker, pre, suf, budget)


def next_line_prompt(backend: Backend, case: Case, fmt: Format, room: int) -> list[int]:
    """The file up to the line, left to right: a whole prefix follows the document separator
    as in pretraining; a cut one keeps its end."""
    budget = backend.context - room - len(backend.begin()) - 1
    text = case.prefix[-budget * CHARS_PER_TOKEN :]
    pre = backend.encode(text)
    if len(text) == len(case.prefix) and len(pre) <= budget:
        return [*backend.begin(), _special(backend, fmt.separator), *pre]
    return backend.begin() + pre[max(0, len(pre) - budget - 1) :]


def _special(backend: Backend, token: str) -> int:
    found = backend.special(token)
    if found is None:
        raise TrainingError(f"the model has no single token {token!r}")
    return found


def _line(
    backend: Backend,
    ids: list[int],
    stops: set[int],
    vocab: list[str],
    room: int,
    *,
    heal: bool = False,
) -> str | None:
    """The line the model writes after ``ids``; None when it does not end it within ``room``
    tokens (a newline or a stop token ends it).

    ``heal``: token healing. A prefix cut at a line start ends in a token training rarely saw
    end there (GPT-2's regex reads ``"\n    return"`` as ``"\n   "`` + ``" return"``, never
    ``"\n"`` + ``"    "``), so the last token is taken back and the first one written must
    start with its text: the model chooses the token boundary, as in training."""
    lead, first = "", None
    if heal and vocab[ids[-1]] and "\ufffd" not in vocab[ids[-1]]:
        lead, ids = vocab[ids[-1]], ids[:-1]
        first = {i for i, text in enumerate(vocab) if text.startswith(lead)}
    written = ""

    def done(token: int) -> bool:
        nonlocal written
        written += "" if token in stops else vocab[token]
        return token in stops or "\n" in written[len(lead) :]

    out = backend.greedy(ids, room, done, first)
    ended = bool(out) and out[-1] in stops
    text = backend.decode(out[:-1] if ended else out)
    if not text.startswith(lead) or not (ended or "\n" in text[len(lead) :]):
        return None
    return text[len(lead) :].split("\n", 1)[0]


# -- bits per byte -------------------------------------------------------------------------


def eval_texts(texts: list[str], limit: int = EVAL_BYTES) -> tuple[list[str], int]:
    """The eval documents from the start, up to ``limit`` bytes, and their byte count."""
    chosen, size = [], 0
    for text in texts:
        if size >= limit:
            break
        chosen.append(text)
        size += len(text.encode("utf-8"))
    return chosen, size


def stream_nll(backend: Backend, texts: list[str], fmt: Format = OURS) -> tuple[float, int]:
    """Summed NLL of every token of the separator-joined texts, and the tokens predicted (each
    window overlaps the one before by a token, so every token but the first is predicted
    once)."""
    sep = _special(backend, fmt.separator)
    ids = [*backend.begin(), sep]
    for text in texts:
        ids += [*backend.encode(text), sep]
    step = backend.context - 1
    total, count = 0.0, 0
    for start in range(0, max(len(ids) - 1, 1), step):
        window = ids[start : start + backend.context]
        if len(window) >= 2:
            total += backend.nll(window)
            count += len(window) - 1
    return total, count


def compressed_bits_per_byte(texts: list[str]) -> dict[str, float]:
    """What xz -9e and zstd -19 make of the same bytes, in bits per byte."""
    import zstandard

    data = b"".join(t.encode("utf-8") for t in texts)
    size = max(len(data), 1)
    xz = lzma.compress(data, preset=9 | lzma.PRESET_EXTREME)
    zstd = zstandard.ZstdCompressor(level=19).compress(data)
    return {"xz_bits_per_byte": 8 * len(xz) / size, "zstd_bits_per_byte": 8 * len(zstd) / size}


def evaluate(
    backend: Backend,
    corpus: CorpusSplits,
    *,
    cases: int,
    fmt: Format = OURS,
    eval_bytes: int = EVAL_BYTES,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Eval loss (per token and per byte), bits per byte beside the compressors, and the two
    exact matches of one model on the corpus's eval split."""
    started = time.perf_counter()
    texts, size = eval_texts(corpus.eval, eval_bytes)
    nll, tokens = stream_nll(backend, texts, fmt)
    out: dict[str, Any] = {
        "corpus_snapshot": corpus.snapshot,
        "eval_loss": nll / max(tokens, 1),
        "perplexity": math.exp(min(nll / max(tokens, 1), 50.0)),
        "eval_loss_per_byte": nll / max(size, 1),
        "eval_tokens": tokens,
        "eval_bytes": size,
        "bits_per_byte": nll / max(size, 1) / math.log(2),
        **compressed_bits_per_byte(texts),
    }
    out |= exact_match(backend, sample_cases(corpus.eval, corpus.snapshot, cases), fmt, progress)
    out["eval_seconds"] = round(time.perf_counter() - started, 3)
    return out


# -- PyTorch -------------------------------------------------------------------------------


class TorchBackend:
    """A causal LM in PyTorch (``transformers``, or a PEFT model around one) and its tokenizer."""

    def __init__(
        self,
        model: Any,
        tok: PreTrainedTokenizerBase,
        device: torch.device,
        autocast: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
        context: int | None = None,
    ) -> None:
        self.model, self.tok, self.device, self.autocast = model, tok, device, autocast
        self._context = context or int(model.config.max_position_embeddings)
        self._begin = list(tok("", add_special_tokens=True)["input_ids"])
        self._vocab: list[str] | None = None
        # transformers 5.x renamed ``past_key_values`` to ``cache`` (the old name warns)
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        takes = inspect.signature(base.forward).parameters
        self._cache_kw = "cache" if "cache" in takes else "past_key_values"

    @property
    def context(self) -> int:
        return self._context

    def begin(self) -> list[int]:
        return list(self._begin)

    def encode(self, text: str) -> list[int]:
        return tokenization.encode_text(self.tok, [text])[0]

    def special(self, token: str) -> int | None:
        found = self.tok.convert_tokens_to_ids(token)
        if not isinstance(found, int) or self.tok.convert_ids_to_tokens(found) != token:
            return None
        return found

    def decode(self, ids: list[int]) -> str:
        text = self.tok.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        return str(text)

    def vocab(self) -> list[str]:
        if self._vocab is None:
            self._vocab = [self.decode([i]) for i in range(len(self.tok))]
        return self._vocab

    def greedy(
        self,
        ids: list[int],
        max_new: int,
        done: Callable[[int], bool],
        first: set[int] | None = None,
    ) -> list[int]:
        import torch

        out: list[int] = []
        self.model.eval()
        with torch.no_grad(), self.autocast(), _one_thread(self.device):
            step = self.model(input_ids=torch.tensor([ids], device=self.device), use_cache=True)
            while len(out) < max_new:
                out.append(_pick(step.logits[0, -1], first if not out else None))
                if done(out[-1]):
                    break
                cache = getattr(step, "cache", None) or step.past_key_values
                step = self.model(
                    input_ids=torch.tensor([[out[-1]]], device=self.device),
                    use_cache=True,
                    **{self._cache_kw: cache},
                )
        return out

    def nll(self, ids: list[int]) -> float:
        import torch

        self.model.eval()
        with torch.no_grad(), self.autocast(), _one_thread(self.device):
            x = torch.tensor([ids], device=self.device)
            return float(self.model(input_ids=x, labels=x).loss) * (len(ids) - 1)


def _pick(logits: torch.Tensor, among: set[int] | None) -> int:
    """The argmax, over ``among`` only when given."""
    import torch

    if among is None:
        return int(logits.argmax())
    allowed = torch.tensor(sorted(among), device=logits.device)
    return int(allowed[logits[allowed].argmax()])


@contextlib.contextmanager
def _one_thread(device: torch.device) -> Iterator[None]:
    """The evaluation runs on one thread on the CPU: it is a background job beside other
    work, and with two threads on 2 busy cores, spin-waiting made a tiny model's prompts 15x
    and its new tokens 50x slower, and the small model's eval loss 2.8-3.3x slower."""
    import torch

    if device.type != "cpu":
        yield
        return
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(saved)
