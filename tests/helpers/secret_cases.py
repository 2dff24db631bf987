"""The labelled secret-redaction set (``tests/data/secrets/cases.yaml``) made concrete: every
``[[gen]]`` replaced by a random value from a seeded RNG, every ``<<secret>>`` located.

The tests and ``benchmarks/secrets_recall.py`` share it; the file's header says what counts as
a secret and what the generators make."""

from __future__ import annotations

import base64
import random
import re
import string
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

CASES = Path(__file__).resolve().parents[1] / "data" / "secrets" / "cases.yaml"

_ALNUM = string.ascii_letters + string.digits
_B64 = _ALNUM + "+/"
_B64URL = _ALNUM + "_-"
_WORDS = ("app", "deploy", "admin", "report", "ci", "svc", "backup", "ops", "build", "web")
_PW_SYMBOLS = "!%*+-._~^"
MARK = "\u2588"  # a placeholder no case contains: what was replaced is unambiguous
_GEN = re.compile(r"\[\[(\w+)(?::(\d+))?\]\]")


@dataclass(frozen=True)
class Case:
    kind: str
    where: str  # code, config, docs or filename
    text: str
    secrets: tuple[str, ...]  # empty for a benign case
    spans: tuple[tuple[int, int], ...]  # where each secret sits in ``text`` (characters)

    @property
    def is_secret(self) -> bool:
        return bool(self.secrets)


def _password(rng: random.Random) -> str:
    """10-16 characters: letters of both cases, digits and a symbol, shuffled."""
    n = rng.randint(10, 16)
    chars = [rng.choice(string.ascii_lowercase), rng.choice(string.ascii_uppercase),
             rng.choice(string.digits), rng.choice(_PW_SYMBOLS)]  # fmt: skip
    chars += rng.choices(_ALNUM + _PW_SYMBOLS, k=n - len(chars))
    rng.shuffle(chars)
    return "".join(chars)


def _pem(rng: random.Random, newline: str) -> str:
    lines = ["".join(rng.choices(_B64, k=64)) for _ in range(rng.randint(6, 12))]
    lines.append("".join(rng.choices(_B64, k=rng.randint(8, 60))) + "=")
    return newline.join(lines)


def _picker(alphabet: str) -> Callable[[random.Random, int], str]:
    return lambda rng, n: "".join(rng.choices(alphabet, k=n))


_SIZED: dict[str, Callable[[random.Random, int], str]] = {
    "alnum": _picker(_ALNUM),
    "upper": _picker(string.ascii_uppercase + string.digits),
    "b32": _picker(string.ascii_uppercase + "234567"),
    "lower": _picker(string.ascii_lowercase + string.digits),
    "alpha": _picker(string.ascii_letters),
    "hex": _picker("0123456789abcdef"),
    "HEX": _picker("0123456789ABCDEF"),
    "b64": _picker(_B64),
    "b64url": _picker(_B64URL),
    "digits": _picker(string.digits),
    "bech": _picker("QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L"),
}
_FIXED: dict[str, Callable[[random.Random], str]] = {
    "pw": _password,
    "word": lambda rng: rng.choice(_WORDS),
    "uuid": lambda rng: str(uuid.UUID(int=rng.getrandbits(128), version=4)),
    "basic": lambda rng: base64.b64encode(
        f"{rng.choice(_WORDS)}:{_password(rng)}".encode()
    ).decode(),
    "b64pw": lambda rng: base64.b64encode(_password(rng).encode()).decode(),
    "pem": lambda rng: _pem(rng, "\n"),
    "pem_esc": lambda rng: _pem(rng, "\\n"),
}


def _expand(template: str, rng: random.Random) -> str:
    def one(m: re.Match[str]) -> str:
        name, size = m.group(1), m.group(2)
        if size is not None and name in _SIZED:
            return _SIZED[name](rng, int(size))
        if size is None and name in _FIXED:
            return _FIXED[name](rng)
        raise ValueError(f"unknown generator {m.group()!r} in {CASES}")

    return _GEN.sub(one, template)


def _make(kind: str, where: str, template: str, rng: random.Random) -> Case:
    text, secrets, spans = "", [], []
    for i, part in enumerate(re.split(r"<<|>>", template)):
        value = _expand(part, rng)
        if i % 2:  # inside << >>
            spans.append((len(text), len(text) + len(value)))
            secrets.append(value)
        text += value
    return Case(kind, where, text, tuple(secrets), tuple(spans))


def replaced(case: Case, redacted: str, mark: str) -> bool:
    """Every secret of the case lies inside a stretch of the text that became ``mark``."""
    pieces = redacted.split(mark)
    if not case.text.startswith(pieces[0]) or not case.text.endswith(pieces[-1]):
        return False
    gone, at = [], len(pieces[0])
    for piece in pieces[1:-1]:
        nxt = case.text.find(piece, at + 1)
        gone.append((at, nxt))
        at = nxt + len(piece)
    gone.append((at, len(case.text) - len(pieces[-1])))
    return all(any(a <= s and e <= b for a, b in gone) for s, e in case.spans)


def load(seed: int = 20261203, path: Path = CASES) -> list[Case]:
    """Every case, secrets first, made with fresh values for each repeat."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    rng = random.Random(seed)
    out: list[Case] = []
    for section in ("secrets", "benign"):
        for group in data[section]:
            for _ in range(group.get("repeat", 1)):
                for case in group["cases"]:
                    made = _make(group["kind"], case["where"], case["text"], rng)
                    if (section == "secrets") != made.is_secret:
                        raise ValueError(f"{group['kind']}: {case['text']!r} is misfiled")
                    out.append(made)
    return out
