"""The prompt format, defined once: how a review request and a fill-in-the-middle request are
laid out in tokens, and the stop tokens. Training builds its examples with these functions; the
export writes the GGUF ``tokenizer.chat_template`` and Ollama's template and ``stop`` parameter
from the same constants, so the deployed model sees exactly what it was trained on (a wrong
template or missing stop tokens is the most reported failure of finetune-then-export tools).
"""

from __future__ import annotations

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


def fim_prompt(prefix: str, suffix: str) -> str:
    """Prefix-suffix-middle layout: the model writes the middle."""
    return f"{FIM_PREFIX}{prefix}{FIM_SUFFIX}{suffix}{FIM_MIDDLE}"


def fim_example(prefix: str, middle: str, suffix: str) -> str:
    return f"{fim_prompt(prefix, suffix)}{middle}{EOT}"


def ollama_template() -> str:
    """Ollama's Go template: a request with a suffix is fill-in-the-middle, else a review."""
    return (
        "{{- if .Suffix }}"
        + FIM_PREFIX
        + "{{ .Prompt }}"
        + FIM_SUFFIX
        + "{{ .Suffix }}"
        + FIM_MIDDLE
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
