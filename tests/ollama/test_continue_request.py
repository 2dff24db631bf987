"""What Continue's autocomplete sends to Ollama reaches our model as the fill-in-the-middle
layout it was trained on: the exact request (``core/llm/llms/Ollama.ts``: ``/api/show`` to see
whether the template uses ``.Suffix``, then ``POST /api/generate`` with ``prompt`` = the prefix,
``suffix``, its options and ``keep_alive``; ``raw`` and ``stream`` left out, so Ollama's
defaults apply: templated, streamed) is rendered by the fake Ollama as Ollama's template engine
renders our stored template, and equals ``prompt.fim_prompt`` token for token in the model's own
tokenizer and in llama.cpp. Plus the rules the fake enforces around it."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from aicoderd.export import inference
from aicoderd.ollama import deploy as d
from aicoderd.ollama.blobs import file_digest
from aicoderd.ollama.client import Client
from aicoderd.ollama.testing import FakeOllama, gotemplate
from aicoderd.training import prompt

PREFIX = "import os\n\n\ndef read(path):\n    with open(path) as fh:\n        "
SUFFIX = "\n\n\nprint(read(os.devnull))\n"
# Continue's stop words for a model it has no FIM template for, plus its common stops.
STOPS = ["<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<|endoftext|>", "/src/", "```"]


@pytest.fixture
def deployed(client: Client, ggufs: dict[str, Path]) -> str:
    d.deploy_gguf(client, ggufs["f16"], d.DeployOptions(name="aicoder"))
    return "aicoder:latest"


def continue_generate(url: str, body: dict[str, object]) -> str:
    """POST as Continue does and read the NDJSON stream as it does: the ``response`` pieces."""
    text = ""
    with httpx.stream("POST", f"{url}/api/generate", json=body, timeout=30) as resp:
        assert resp.status_code == 200, resp.read()
        assert resp.headers["content-type"] == "application/x-ndjson"
        for line in resp.iter_lines():
            if line.strip():
                chunk = json.loads(line)
                assert "error" not in chunk, chunk
                text += chunk.get("response", "")
    return text


def test_continue_autocomplete_request_renders_our_fim_layout(
    fake: FakeOllama, deployed: str, tiny_model: Path, ggufs: dict[str, Path]
) -> None:
    shown = httpx.post(f"{fake.url}/api/show", json={"name": deployed}, timeout=10).json()
    assert ".Suffix" in shown["template"]  # Continue's test for FIM support
    body = {
        "model": deployed,
        "prompt": PREFIX,
        "suffix": SUFFIX,
        "options": {"temperature": 0.01, "stop": STOPS, "num_predict": 256},
        "keep_alive": 1800,
    }
    completion = continue_generate(fake.url, body)
    assert completion.startswith("t0t1")
    rendered = fake.rendered[-1]
    assert rendered == prompt.fim_prompt(PREFIX, SUFFIX)

    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_model), local_files_only=True)
    ids = tok(rendered, add_special_tokens=True)["input_ids"]
    assert ids == tok(prompt.fim_prompt(PREFIX, SUFFIX), add_special_tokens=True)["input_ids"]
    specials = [tok.convert_tokens_to_ids(t) for t in (prompt.FIM_PREFIX, prompt.FIM_SUFFIX)]
    middle = tok.convert_tokens_to_ids(prompt.FIM_MIDDLE)
    assert [i for i in ids if i in (*specials, middle)] == [*specials, middle]  # one each, in order
    assert ids[-1] == middle
    llm = inference.load(ggufs["f16"], n_ctx=256)
    assert llm.tokenize(rendered.encode(), add_bos=True, special=True) == ids


def test_the_fake_renders_as_ollama_does(fake: FakeOllama, deployed: str) -> None:
    def render(**req: object) -> str:
        body = {"model": deployed, "_debug_render_only": True, **req}
        got = httpx.post(f"{fake.url}/api/generate", json=body, timeout=10)
        assert got.status_code == 200, got.text
        info: dict[str, str] = got.json()["_debug_info"]
        return info["rendered_template"]

    assert render(prompt=PREFIX, suffix=SUFFIX) == prompt.fim_prompt(PREFIX, SUFFIX)
    # No suffix, or an empty one: one user message, the template's other branch.
    assert render(prompt="x = 1\n") == prompt.review_prompt("x = 1\n")
    assert render(prompt="x = 1\n", suffix="") == prompt.review_prompt("x = 1\n")
    assert render(prompt="<raw>", raw=True) == "<raw>"
    assert render(prompt="a", template="[{{ .Prompt }}|{{ .System }}]", system="S") == "[a|S]"
    # A suffix with an empty prompt only loads the model, as Ollama does.
    loaded = httpx.post(
        f"{fake.url}/api/generate", json={"model": deployed, "prompt": "", "suffix": "x"}
    ).json()
    assert loaded["done_reason"] == "load" and loaded["response"] == ""


def test_the_fake_enforces_insert_and_raw_rules(
    fake: FakeOllama, client: Client, deployed: str, ggufs: dict[str, Path]
) -> None:
    files = {"model.gguf": file_digest(ggufs["f16"])}  # uploaded by the deploy already
    client.create({"model": "plain", "files": files, "template": "{{ .Prompt }}"})

    def generate(**req: object) -> httpx.Response:
        return httpx.post(f"{fake.url}/api/generate", json={"stream": False, **req}, timeout=10)

    refused = generate(model="plain", prompt="a", suffix="b")
    assert refused.status_code == 400
    assert (
        refused.json()["error"] == "registry.ollama.ai/library/plain:latest does not support insert"
    )
    assert generate(model="plain", prompt="a").json()["response"].startswith("t0")
    assert fake.rendered[-1] == "a"
    raw = generate(model=deployed, prompt="a", raw=True, system="S")
    assert raw.status_code == 400
    assert raw.json()["error"] == "raw mode does not support template, system, or context"


BRANCHES = "{{- if .Suffix }}A{{ .Prompt }}B{{- else }}R{{ .Prompt }}{{- end }}"


@pytest.mark.parametrize(
    ("template", "values", "expected"),
    [
        (BRANCHES, {"Prompt": "p", "Suffix": "s"}, "ApB"),
        (BRANCHES, {"Prompt": "p", "Suffix": ""}, "Rp"),
        ("a  {{- .X -}}  b", {"X": "x"}, "axb"),
        ("a {{ .X }} b", {"X": "x"}, "a x b"),
        ("{{ if .A }}1{{ else if .B }}2{{ else }}3{{ end }}", {"A": "", "B": "y"}, "2"),
        ("{{ .Prompt }}{{ .Response }}tail", {"Prompt": "p", "Response": ""}, "ptail"),
    ],
)
def test_gotemplate_subset(template: str, values: dict[str, str], expected: str) -> None:
    assert gotemplate.render(template, values) == expected


def test_gotemplate_cuts_at_response_and_refuses_what_it_does_not_know() -> None:
    t = "<s>{{ .Prompt }}</s>{{ .Response }}<end>"
    assert gotemplate.render(t, {"Prompt": "p", "Response": ""}, cut_at_response=True) == "<s>p</s>"
    for bad in ("{{ range .Messages }}x{{ end }}", "{{ .Prompt | upper }}", "{{ if .A }}x"):
        with pytest.raises(gotemplate.TemplateError):
            gotemplate.render(bad, {"A": "1", "Prompt": "p", "Messages": []})
    assert gotemplate.fields(prompt.ollama_template()) == {"Prompt", "Suffix"}


def test_tabby_ollama_completion_request_reaches_the_same_layout(
    fake: FakeOllama, deployed: str
) -> None:
    """Tabby's ``ollama/completion`` model fills its ``prompt_template`` itself and sends it with
    ``template: "{{ .Prompt }}"`` (``crates/ollama-api-bindings/src/completion.rs``)."""
    tabby_template = "<|fim_prefix|>{prefix}<|fim_suffix|>{suffix}<|fim_middle|>"
    filled = tabby_template.replace("{prefix}", PREFIX).replace("{suffix}", SUFFIX)
    body = {
        "model": deployed,
        "prompt": filled,
        "template": "{{ .Prompt }}",
        "options": {"num_predict": 64, "seed": 0, "repeat_last_n": 0, "temperature": 0.1},
        "stream": True,
    }
    assert continue_generate(fake.url, body).startswith("t0")
    assert fake.rendered[-1] == prompt.fim_prompt(PREFIX, SUFFIX)
