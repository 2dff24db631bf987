"""The part of Go's ``text/template`` a model template for ``/api/generate`` uses, written for the
fake from Go's rules (never the product's template code): text, ``{{ .Field }}``,
``{{ if .Field }}`` … ``{{ else if .Field }}`` … ``{{ else }}`` … ``{{ end }}``, and the trim
markers ``{{- `` / `` -}}`` that remove the whitespace beside an action. A field is true when it
is a non-empty string (or a true, non-zero value), as Go's ``if`` decides. Anything else
(``range``, pipelines, functions) is refused, so a test never passes on a template the fake only
half understood.

Ollama renders a request without messages in its "legacy" way: the template runs with
``.System``, ``.Prompt`` and ``.Response`` empty, cut at the first ``.Response`` it reaches
(``deleteNode`` in Ollama's ``template.go``); :func:`render` with ``cut_at_response`` does that.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from typing import Any

# {{ ... }} with optional trim markers: Go requires a space after "{{-" and before "-}}".
_ACTION = re.compile(r"\{\{(-\s)?\s*(.*?)\s*(\s-)?\}\}", re.S)
_FIELD = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)")


class TemplateError(ValueError):
    pass


@dataclass
class _Node:
    kind: str  # "text" | "field" | "if"
    text: str = ""  # text, or the field's name
    branches: list[tuple[str | None, list[_Node]]] = field(default_factory=list)  # (cond, body)


@dataclass
class _Token:
    kind: str  # "text" | "action"
    value: str


def _tokens(source: str) -> list[_Token]:
    out: list[_Token] = []
    pos = 0
    for m in _ACTION.finditer(source):
        text = source[pos : m.start()]
        if m.group(1):  # "{{- " trims the whitespace before the action
            text = text.rstrip(" \t\r\n")
        if out and out[-1].kind == "trim":
            text = text.lstrip(" \t\r\n")
            out.pop()
        out.append(_Token("text", text))
        out.append(_Token("action", m.group(2)))
        if m.group(3):  # " -}}" trims the whitespace after it
            out.append(_Token("trim", ""))
        pos = m.end()
    tail = source[pos:]
    if out and out[-1].kind == "trim":
        tail = tail.lstrip(" \t\r\n")
        out.pop()
    out.append(_Token("text", tail))
    if "{{" in tail or any("{{" in t.value for t in out if t.kind == "text"):
        raise TemplateError("template: unclosed action")
    return out


def _field(expr: str) -> str:
    m = _FIELD.fullmatch(expr.strip())
    if m is None:
        raise TemplateError(f"template: the fake does not evaluate {expr!r}")
    return m.group(1)


def _parse(tokens: list[_Token], pos: int, stop: tuple[str, ...]) -> tuple[list[_Node], int]:
    """Nodes up to an action whose first word is in ``stop`` (returned position: at it)."""
    nodes: list[_Node] = []
    while pos < len(tokens):
        tok = tokens[pos]
        if tok.kind == "text":
            if tok.value:
                nodes.append(_Node("text", tok.value))
            pos += 1
            continue
        word = tok.value.split(None, 1)[0] if tok.value else ""
        if word in stop:
            return nodes, pos
        if word == "if":
            node, pos = _parse_if(tokens, pos)
            nodes.append(node)
        elif tok.value.startswith("."):
            nodes.append(_Node("field", _field(tok.value)))
            pos += 1
        else:
            raise TemplateError(f"template: the fake does not evaluate {{{{{tok.value}}}}}")
    if stop:
        raise TemplateError("template: unexpected EOF")
    return nodes, pos


def _parse_if(tokens: list[_Token], pos: int) -> tuple[_Node, int]:
    node = _Node("if")
    cond: str | None = _field(tokens[pos].value.split(None, 1)[1])
    pos += 1
    while True:
        body, pos = _parse(tokens, pos, ("else", "end"))
        node.branches.append((cond, body))
        action = tokens[pos].value
        pos += 1
        if action == "end":
            return node, pos
        rest = action.split(None, 1)[1] if " " in action else ""
        if rest.startswith("if "):
            cond = _field(rest[3:])
        elif not rest:
            cond = None
        else:
            raise TemplateError(f"template: the fake does not evaluate {{{{{action}}}}}")


class _Cut(Exception):
    pass


def _run(nodes: list[_Node], values: dict[str, Any], out: list[str], cut: bool) -> None:
    for node in nodes:
        if node.kind == "text":
            out.append(node.text)
        elif node.kind == "field":
            if cut and node.text == "Response":
                raise _Cut
            if node.text not in values:
                raise TemplateError(f"template: can't evaluate field {node.text}")
            out.append(str(values[node.text]))
        else:
            for cond, body in node.branches:
                if cond is None or values.get(cond):
                    _run(body, values, out, cut)
                    break


def fields(source: str) -> set[str]:
    """The fields a template names (Ollama's capabilities come from these: ``Suffix`` →
    insert)."""
    return {m.group(1) for action in _ACTION.finditer(source) for m in _FIELD.finditer(action[2])}


def render(source: str, values: dict[str, Any], *, cut_at_response: bool = False) -> str:
    nodes, _ = _parse(_tokens(source), 0, ())
    out: list[str] = []
    with contextlib.suppress(_Cut):  # cut at .Response: what came before is the prompt
        _run(nodes, values, out, cut_at_response)
    return "".join(out)
