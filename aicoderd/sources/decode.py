"""A text file's bytes to text: a BOM, else strict UTF-8, else a legacy encoding, or a refusal.

Which legacy encoding: files from Western users are mostly windows-1252 / Latin-1, so their
windows-1252 reading is taken whenever it reads as one Western language (every non-ASCII
letter in one such alphabet, no stray symbol inside a word), which the windows-1252 reading of
Central European, Cyrillic, Greek or CJK text does not ("Příliš" is "Pøíliš", "Łódź" is
"£ódŸ"). Otherwise Firefox's detector, chardetng, which weighs the letters and letter pairs
each candidate would make in its languages, names the encoding, charset-normalizer judges
whether that decoding is text at all, and guesses by itself when it is not. Neither detector
alone would do: charset-normalizer read Latin-1 French as cp1250 (``très`` as ``trčs``), and
chardetng, on one accented word in a code comment, picks rare code pages (``naïve`` as
ISO-8859-4 ``naīve``, ``©`` as ISO-8859-2 ``Š``).
"""

from __future__ import annotations

import codecs
import re

import chardetng_py
import charset_normalizer

from aicoderd.errors import IngestRefused

# A NUL this early means binary, except in UTF-16/32 text, where it is every other byte.
_BINARY_WINDOW = 8 * 1024
_WIDE_ENCODINGS = ("utf-16", "utf-32")
# UTF-32 first: its little-endian BOM starts with UTF-16's.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# Guesses noisier than this are not text (charset_normalizer's own default cut-off).
_MAX_CHAOS = 0.2
# A guessed decoding with more control characters than this share is binary after all.
_MAX_CONTROL_SHARE = 0.02
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")

WESTERN = "cp1252"
_DETECT_BYTES = 1 << 20
# chardetng names encodings as the WHATWG Encoding Standard does; where Python's codec of that
# name decodes otherwise, the one that decodes as the standard says.
_WHATWG_CODECS = {
    "Shift_JIS": "cp932",
    "EUC-KR": "cp949",
    "Big5": "big5hkscs",
    "GBK": "gb18030",
    "ISO-8859-8-I": "iso8859_8",
    "x-mac-cyrillic": "mac_cyrillic",
}
# The letters beyond ASCII of the languages written in windows-1252 (lower case, loanword
# letters included where the language's dictionaries use them).
_WESTERN_ALPHABETS = tuple(
    frozenset(letters)
    for letters in (
        "àâæçéèêëîïôœùûüÿ",  # French (and English loanwords: café, naïve)
        "äöüßé",  # German
        "áéíñóúü",  # Spanish, Galician
        "áâãàçéêíóôõúü",  # Portuguese
        "àèéìíîòóùú",  # Italian
        "àçéèíïóòúü",  # Catalan
        "áéèëíïóöúü",  # Dutch
        "æøåé",  # Danish, Norwegian
        "åäöé",  # Swedish
        "äöåšž",  # Finnish
        "äöõüšž",  # Estonian
        "áðéíóúýþæö",  # Icelandic
        "áðíóúýæø",  # Faroese
        "áéíóú",  # Irish
        "çë",  # Albanian
    )
)
_NEUTRAL_LETTERS = frozenset("ªºµ")  # ordinals (1º, nª) and micro: any alphabet
# Punctuation that may stand between two letters of a word: quotes as apostrophes, the
# Catalan middle dot (l\u00b7l).
_INSIDE_WORD = "\u2019\u2018\u00b7"


def decode_text(data: bytes) -> str:
    """Text of a text file: BOM, else strict UTF-8, else the best legacy encoding."""
    encoding = next((enc for bom, enc in _BOMS if data.startswith(bom)), None)
    if encoding not in _WIDE_ENCODINGS and data.find(b"\0", 0, _BINARY_WINDOW) != -1:
        raise IngestRefused("binary", "binary file: NUL bytes in the first 8 KiB")
    try:
        return data.decode(encoding or "utf-8")
    except UnicodeDecodeError as exc:
        if encoding is not None:
            raise IngestRefused("undecodable", f"invalid {encoding} text: {exc.reason}") from exc
    return _legacy(data)


def _legacy(data: bytes) -> str:
    encoding, text = WESTERN, _western(data)
    if text is None:
        best = (
            charset_normalizer.from_bytes(
                data, threshold=_MAX_CHAOS, cp_isolation=[_detected(data)]
            ).best()
            or charset_normalizer.from_bytes(data, threshold=_MAX_CHAOS).best()
        )
        if best is None:
            raise IngestRefused("undecodable", "undecodable text: not UTF-8 and no encoding fits")
        encoding, text = best.encoding, str(best)
    if len(_CONTROL.findall(text)) > len(text) * _MAX_CONTROL_SHARE:
        raise IngestRefused(
            "undecodable", f"undecodable text: read as {encoding} it is mostly control codes"
        )
    return text


def _detected(data: bytes) -> str:
    """chardetng's guess, from the first MiB (it has settled long before), as a Python codec."""
    detector = chardetng_py.EncodingDetector()
    detector.feed(data[:_DETECT_BYTES], last=len(data) <= _DETECT_BYTES)
    name: str = detector.guess(tld=None, allow_utf8=False)
    return _WHATWG_CODECS.get(name, name)


def _western(data: bytes) -> str | None:
    """``data`` read as windows-1252, if it reads as one Western language."""
    try:
        text = data.decode(WESTERN)
    except UnicodeDecodeError:  # bytes windows-1252 leaves undefined
        return None
    beyond_ascii = {char for char in set(text) if char > "\x7f"}
    letters = {char.lower() for char in beyond_ascii if char.isalpha()} - _NEUTRAL_LETTERS
    if not any(letters <= alphabet for alphabet in _WESTERN_ALPHABETS):
        return None  # "Pøíliš": Czech read as windows-1252
    symbols = "".join(c for c in beyond_ascii if not c.isalpha() and c not in _INSIDE_WORD)
    if symbols and re.search(f"(?<=[^\\W\\d_])[{re.escape(symbols)}](?=[^\\W\\d_])", text):
        return None  # "Za¿ó³æ": Polish read as windows-1252
    return text
