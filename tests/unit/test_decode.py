# ruff: noqa: RUF001  (the samples are real text in each script, look-alike letters included)
"""Legacy encodings, as files from users of each language are written: short and long samples,
prose and code, decoded through the real extraction path (no detector is mocked)."""

from __future__ import annotations

import pytest

from aicoderd.errors import IngestRefused
from aicoderd.sources.extract import extract
from aicoderd.sources.extract_limits import ExtractLimits

LIMITS = ExtractLimits(1 << 20, 10, 1 << 20, 100.0)

FRENCH = (
    "Le café est très bon. Après le dîner, nous avons mangé une crème brûlée à la française, "
    "avec un thé glacé. Où est la bibliothèque ? Ça va être génial, n'est-ce pas ?"
)
GERMAN = (
    "Über den Wolken muss die Freiheit wohl grenzenlos sein. Die Straße ist schön, größer und "
    "grün. Fußgänger müssen aufpassen, wenn sie die Brücke überqueren."
)
SPANISH = (
    "El niño comió una manzana debajo del árbol. ¿Dónde está la estación? Mañana iré a la "
    "ciudad con mi compañero, aunque él no quiere ir en autobús."
)
PORTUGUESE = (
    "A informação é útil. Não sei se você está em São Paulo ou em Brasília. Ação e reação, "
    "coração e razão: é só o começo da lição."
)
CZECH = (
    "Příliš žluťoučký kůň úpěl ďábelské ódy. Většina lidí v České republice mluví česky a "
    "ráda čte knihy. Večer se procházíme po náměstí."
)
POLISH = (
    "Zażółć gęślą jaźń. Pchnąć w tę łódź jeża lub ośm skrzyń fig. Łódź jest dużym miastem w "
    "Polsce, a Kraków leży nad Wisłą."
)
RUSSIAN = (
    "Съешь же ещё этих мягких французских булок, да выпей чаю. Москва - столица России, "
    "большой и красивый город. Сегодня хорошая погода."
)
GREEK = (
    "Ξεσκεπάζω την ψυχοφθόρα βδελυγμία. Η Αθήνα είναι η πρωτεύουσα της Ελλάδας και μια "
    "μεγάλη πόλη με πολλά μουσεία."
)
JAPANESE = (
    "東京は日本の首都です。今日はいい天気ですね。私は毎朝コーヒーを飲んでから、"
    "電車で会社に行きます。"
)
CHINESE = "我能吞下玻璃而不伤身体。北京是中国的首都，这是一个很大的城市。今天天气很好。"
TRADITIONAL = "我能吞下玻璃而不傷身體。台北是台灣的首都，這是一個很大的城市。今天天氣很好。"

PROSE = [
    ("fr", FRENCH, ("cp1252", "latin-1")),
    ("de", GERMAN, ("cp1252", "latin-1")),
    ("es", SPANISH, ("cp1252", "latin-1")),
    ("pt", PORTUGUESE, ("cp1252", "latin-1")),
    ("cs", CZECH, ("cp1250", "iso-8859-2")),
    ("pl", POLISH, ("cp1250", "iso-8859-2")),
    ("ru", RUSSIAN, ("cp1251", "koi8-r")),
    ("el", GREEK, ("cp1253", "iso-8859-7")),
    ("ja", JAPANESE, ("shift_jis", "euc-jp")),
    ("zh", CHINESE, ("gb18030",)),
    ("zh-tw", TRADITIONAL, ("big5",)),
]
SHORT = [
    ("fr", "Le café est très bon ... crème brûlée", ("cp1252", "latin-1")),
    ("de", "Grüße aus München", ("cp1252",)),
    ("es", "¿Dónde está la estación?", ("cp1252",)),
    ("pt", "Não sei, coração.", ("cp1252", "latin-1")),
    ("cs", "Dobrý den, přeji hezký večer.", ("cp1250", "iso-8859-2")),
    ("pl", "Zażółć gęślą jaźń.", ("cp1250", "iso-8859-2")),
    ("ru", "Привет, как дела?", ("cp1251", "koi8-r")),
    ("el", "Καλημέρα σας", ("cp1253", "iso-8859-7")),
    ("ja", "こんにちは世界", ("shift_jis", "euc-jp")),
    ("zh", "你好，世界", ("gb18030",)),
    ("zh-tw", "你好，世界", ("big5",)),
]
CODE = [
    ("python", "x = 1  # café\n", "cp1252"),
    ("python", "def f():\n    # naïve approach, see Müller (2019)\n    pass\n", "cp1252"),
    ("python", "# ©2024 Jürgen Müller GmbH\nimport os\n", "cp1252"),
    ("python", "PRICE = 100  # £100, or 50€\n", "cp1252"),
    ("python", 'MSG = "« Bonjour », dit-il"\n', "latin-1"),
    ("python", 'print("He said “hello” — it’s fine…")\n', "cp1252"),
    ("c", "int main(void) {\n    /* Größe des Puffers prüfen */\n    return 0;\n}\n", "cp1252"),
    ("sql", "SELECT nombre FROM años -- el año pasado\n", "cp1252"),
    (
        "c",
        "int main(void) {\n    /* Zkontrolujeme velikost bufferu, přečteme soubor */\n}\n",
        "cp1250",
    ),
    ("python", "def main():\n    # Проверяем размер буфера\n    return 0\n", "cp1251"),
    ("python", "def main():\n    # バッファのサイズを確認する\n    return 0\n", "shift_jis"),
]


def decoded(data: bytes, name: str) -> str:
    (doc,) = extract(data, name, LIMITS)
    return doc.text


def cases(samples: list[tuple[str, str, tuple[str, ...]]]) -> list[object]:
    return [
        pytest.param(text, enc, id=f"{lang}-{enc}") for lang, text, encs in samples for enc in encs
    ]


@pytest.mark.parametrize(("text", "encoding"), cases(PROSE))
def test_long_prose_in_its_legacy_encoding(text: str, encoding: str) -> None:
    paragraph = "\n".join([text] * 20) + "\n"  # a page of it
    assert decoded(paragraph.encode(encoding), "notes.txt") == paragraph


@pytest.mark.parametrize(("text", "encoding"), cases(PROSE))
def test_one_paragraph_in_its_legacy_encoding(text: str, encoding: str) -> None:
    assert decoded(text.encode(encoding), "notes.txt") == text


@pytest.mark.parametrize(("text", "encoding"), cases(SHORT))
def test_one_line_in_its_legacy_encoding(text: str, encoding: str) -> None:
    assert decoded(text.encode(encoding), "line.txt") == text


@pytest.mark.parametrize(
    ("language", "source", "encoding"),
    [pytest.param(*c, id=f"{c[0]}-{c[2]}-{i}") for i, c in enumerate(CODE)],
)
def test_code_with_a_few_non_ascii_comments(language: str, source: str, encoding: str) -> None:
    ext = {"python": "py", "c": "c", "sql": "sql"}[language]
    (doc,) = extract(source.encode(encoding), f"mod.{ext}", LIMITS)
    assert (doc.text, doc.language) == (source, language)


def test_random_high_bytes_are_still_refused() -> None:
    noise = bytes(range(0x80, 0x100)) * 8 + b"\x01\x02\x03\x04\x05\x06\x07\x08" * 64
    with pytest.raises(IngestRefused) as info:
        extract(noise, "noise.txt", LIMITS)
    assert info.value.reason == "undecodable"
