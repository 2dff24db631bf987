"""Step ``normalize``: Unicode NFC, one newline convention, no BOM, mojibake repaired.

Mojibake repair uses ftfy with every option that rewrites legitimate text turned off: ftfy's
defaults straighten curly quotes, unescape ``&amp;``, fold full-width letters and ligatures —
all of which change code and its string literals. Only the encoding fixes stay on.
"""

from __future__ import annotations

import re
import unicodedata

import ftfy
from ftfy.badness import is_bad

from aicoderd.corpus.document import Doc
from aicoderd.corpus.steps import DocStep, StepStats, register

_CODE_SAFE = ftfy.TextFixerConfig(
    unescape_html=False,
    remove_terminal_escapes=False,
    fix_encoding=True,
    restore_byte_a0=True,
    replace_lossy_sequences=True,
    decode_inconsistent_utf8=True,
    fix_c1_controls=True,
    fix_latin_ligatures=False,
    fix_character_width=False,
    uncurl_quotes=False,
    fix_line_breaks=False,
    fix_surrogates=True,
    remove_control_chars=False,
    normalization=None,
    explain=False,
)

# UTF-8 read in a single-byte encoding turns every multi-byte character into two or more
# non-ASCII characters (or one followed by the space that a lost 0xA0 became), and C1
# controls only come from such mix-ups; a line with neither has nothing for ftfy to fix, which
# spares its slow checks on the ordinary accented or CJK text of most non-ASCII lines.
# Written to start with one character class (a C1 control is a non-ASCII character), which
# lets the regex engine skip ASCII text at C speed; as an alternation it tries every position.
_MOJIBAKE_HINT = re.compile(r"[^\x00-\x7f](?:(?<=[\x80-\x9f])|[^\x00-\x7f]| )")


# ftfy changes a line only if its badness heuristic fires, or it holds C1 controls or
# surrogates: a line with none of them comes back as it was, without ftfy's own overhead.
_FTFY_WORK = re.compile(r"[\x80-\x9f\ud800-\udfff]")


def fix_mojibake(text: str) -> str:
    """Repair mis-decoded text line by line (ftfy works per line anyway)."""
    parts: list[str] = []
    done = 0  # text before this offset is in parts
    at = 0
    while (hint := _MOJIBAKE_HINT.search(text, at)) is not None:
        start = text.rfind("\n", 0, hint.start()) + 1
        end = text.find("\n", hint.end())
        end = len(text) if end < 0 else end
        line = text[start:end]
        if is_bad(line) or _FTFY_WORK.search(line):
            fixed = ftfy.fix_text(line, _CODE_SAFE)
            if fixed != line:
                parts += [text[done:start], fixed]
                done = end
        at = end + 1
    if not parts:
        return text
    parts.append(text[done:])
    return "".join(parts)


def normalize(text: str, *, mojibake: bool = True) -> str:
    """The normalised form of a document's text."""
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if text.isascii():  # nothing below can change ASCII text
        return text
    if mojibake:
        text = fix_mojibake(text)
    if not unicodedata.is_normalized("NFC", text):
        text = unicodedata.normalize("NFC", text)
    return text


@register
class Normalize(DocStep):
    name = "normalize"

    def one(self, doc: Doc, stats: StepStats) -> None:
        assert doc.text is not None
        fixed = normalize(doc.text, mojibake=self.config.fix_mojibake)
        if fixed != doc.text:
            stats.counts["changed"] += 1
            doc.text = fixed
