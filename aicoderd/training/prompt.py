"""The prompt format, defined once: how a review request and a fill-in-the-middle request are
laid out in tokens, and the stop tokens. Training builds its examples with these functions; the
export writes the GGUF ``tokenizer.chat_template`` and Ollama's template and ``stop`` parameter
from the same constants, so the deployed model sees exactly what it was trained on (a wrong
template or missing stop tokens is the most reported failure of finetune-then-export tools).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

EOT = "<|endoftext|>"
FIM_PREFIX = "<|fim_prefix|>"
FIM_SUFFIX = "<|fim_suffix|>"
FIM_MIDDLE = "<|fim_middle|>"
REVIEW = "<|review|>"
SUGGESTION = "<|suggestion|>"

# Every special token the tokenizer must know, in id order after the byte-level vocabulary.
SPECIAL_TOKENS = [EOT, FIM_PREFIX, FIM_SUFFIX, FIM_MIDDLE, REVIEW, SUGGESTION]

# Generation stops at the end of a completion, or where the model starts a new request.
STOP_TOKENS = [EOT, REVIEW, FIM_PREFIX]


def review_prompt(prompt: str) -> str:
    """The text the model sees before it writes a suggestion for ``prompt`` (code + context)."""
    return f"{REVIEW}{prompt}{SUGGESTION}"


def review_example(prompt: str, completion: str) -> tuple[str, str]:
    """(prompt part, completion part) of a training example; loss is on the second only."""
    return review_prompt(prompt), f"{completion}{EOT}"


class Marker(str):
    """A special token inside a layout: one token id, never text to encode. Everything else
    in a layout is encoded as plain text, so code that spells a marker out stays text."""


T = TypeVar("T")


@dataclass(frozen=True)
class FimMarkers:
    """A model's fill-in-the-middle markers: ours below; qwen2.5-coder and deepseek-coder
    have their own (see :mod:`aicoderd.training.completion`)."""

    prefix: str
    suffix: str
    middle: str

    def layout(self, prefix: T, suffix: T, *, spm: bool = False) -> list[Marker | T]:
        """The prompt before the middle, as markers and the two texts (strings, or their token
        ids). PSM: ``PRE prefix SUF suffix MID``; SPM (StarCoder's variant): ``PRE SUF suffix
        MID prefix``, the middle then continuing the prefix."""
        pre, suf, mid = Marker(self.prefix), Marker(self.suffix), Marker(self.middle)
        return [pre, suf, suffix, mid, prefix] if spm else [pre, prefix, suf, suffix, mid]

    def render(self, prefix: str, suffix: str, *, spm: bool = False) -> str:
        return "".join(self.layout(prefix, suffix, spm=spm))


FIM = FimMarkers(FIM_PREFIX, FIM_SUFFIX, FIM_MIDDLE)


def fim_prompt(prefix: str, suffix: str, *, spm: bool = False) -> str:
    """The fill-in-the-middle prompt: the model writes the middle. PSM is what Ollama's
    template renders; SPM is seen in pretraining only."""
    return FIM.render(prefix, suffix, spm=spm)


def fim_example(prefix: str, middle: str, suffix: str, *, spm: bool = False) -> str:
    return f"{fim_prompt(prefix, suffix, spm=spm)}{middle}{EOT}"


def ollama_template() -> str:
    """Ollama's Go template: a request with a suffix is fill-in-the-middle, else a review."""
    return (
        "{{- if .Suffix }}"
        + FIM.render("{{ .Prompt }}", "{{ .Suffix }}")
        + "{{- else }}"
        + REVIEW
        + "{{ .Prompt }}"
        + SUGGESTION
        + "{{- end }}"
    )


def chat_template() -> str:
    """The Jinja template for the GGUF ``tokenizer.chat_template`` (and the HF tokenizer):
    each user turn is a review request, each assistant turn a suggestion."""
    return (
        "{% for message in messages %}"
        "{% if message['role'] == 'user' %}"
        + REVIEW
        + "{{ message['content'] }}"
        + SUGGESTION
        + "{% elif message['role'] == 'assistant' %}{{ message['content'] }}"
        + EOT
        + "{% endif %}{% endfor %}"
    )
