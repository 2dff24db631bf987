"""The one prompt format: training layout, Ollama template and chat template agree."""

from __future__ import annotations

from jinja2 import Environment

from aicoderd.training import prompt as pf


def test_review_layout_and_stop_tokens() -> None:
    head, tail = pf.review_example("def f(x):\n    return x\n", "def f(x: int) -> int:")
    assert head == "<|review|>def f(x):\n    return x\n<|suggestion|>"
    assert tail.endswith(pf.EOT)
    assert set(pf.STOP_TOKENS) <= set(pf.SPECIAL_TOKENS)


def test_chat_template_renders_the_training_layout() -> None:
    template = Environment().from_string(pf.chat_template())
    text = template.render(
        messages=[
            {"role": "user", "content": "x = 1"},
            {"role": "assistant", "content": "x: int = 1"},
        ]
    )
    head, tail = pf.review_example("x = 1", "x: int = 1")
    assert text == head + tail


def test_ollama_template_has_both_layouts() -> None:
    t = pf.ollama_template()
    assert "{{ .Suffix }}" in t and "{{ .Prompt }}" in t
    assert pf.FIM_MIDDLE in t and pf.SUGGESTION in t
    assert pf.fim_prompt("a", "b") == "<|fim_prefix|>a<|fim_suffix|>b<|fim_middle|>"
