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


def test_spm_layout_puts_the_suffix_first() -> None:
    assert pf.fim_prompt("a", "b", spm=True) == "<|fim_prefix|><|fim_suffix|>b<|fim_middle|>a"
    assert pf.fim_example("a", "m", "b") == "<|fim_prefix|>a<|fim_suffix|>b<|fim_middle|>m" + pf.EOT
    # The layout takes token ids as well as text: markers stay Marker, the rest is passed on.
    ids = pf.FIM.layout([1, 2], [3])
    assert ids == [pf.FIM_PREFIX, [1, 2], pf.FIM_SUFFIX, [3], pf.FIM_MIDDLE]
    assert [isinstance(p, pf.Marker) for p in ids] == [True, False, True, False, True]


def test_the_parity_checks_renderer_agrees_with_a_go_template_engine() -> None:
    """The export's own renderer of the template's two branches against the fake Ollama's
    Go-template engine (written separately), on requests with and without a suffix."""
    from aicoderd.export.verify import render_template
    from aicoderd.ollama.testing import gotemplate

    t = pf.ollama_template()
    for text, suffix in [("def f():\n    ", "\n\nf()\n"), ("  x = 1  \n", " \n"), ("y", "")]:
        mine = render_template(t, text, suffix)
        assert mine == gotemplate.render(t, {"Prompt": text, "Suffix": suffix})
        assert mine == (pf.fim_prompt(text, suffix) if suffix else pf.review_prompt(text))
