"""Step ``normalize``: Unicode NFC, one newline convention, no BOM, mojibake repaired.

Mojibake repair uses ftfy with every option that rewrites legitimate text turned off: ftfy's
defaults straighten curly quotes, unescape ``&amp;``, fold full-width letters and ligatures —
all of which change code and its string literals. Only the encoding fixes stay on.
"""

from __future__ import annotations

import re
import unicodedata

import ftfy

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
_MOJIBAKE_HINT = re.compile(r"[^\x00-\x7f](?:[^\x00-\x7f]| )|[\x80-\x9f]")


def fix_mojibake(text: str) -> str:
    """Repair mis-decoded text line by line (ftfy works per line anyway)."""
    lines = text.split("\n")
    changed = False
    for i, line in enumerate(lines):
        if not line.isascii() and _MOJIBAKE_HINT.search(line):
            fixed = ftfy.fix_text(line, _CODE_SAFE)
            if fixed != line:
                lines[i] = fixed
                changed = True
    return "\n".join(lines) if changed else text


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
