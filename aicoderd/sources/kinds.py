"""The registry of file kinds: which extractor a file goes to, and its language.

A file's kind comes from its exact name (``Makefile``), else its extension (case-insensitive,
longest first so ``.tar.gz`` wins over ``.gz``), else its shebang line, else it is plain text.
Adding a language is one line in a table below; nothing else needs to change.
"""

from __future__ import annotations

import fnmatch
import functools
import re

# The kinds a document can have. "archive" is only a routing kind: its members become documents.
TEXT_KINDS = ("text", "markdown", "rst", "code", "html")
DOCUMENT_KINDS = (*TEXT_KINDS, "notebook", "pdf")
ARCHIVE = "archive"

# How much of a file's start kind_of() looks at; a shebang line is far shorter than this.
HEAD_BYTES = 512

# Non-code documents. For archives the second value is the container format, not a language.
_DOCUMENTS: dict[str, tuple[str, str | None]] = {
    ".txt": ("text", None),
    ".text": ("text", None),
    ".log": ("text", None),
    ".md": ("markdown", None),
    ".markdown": ("markdown", None),
    ".rst": ("rst", None),
    ".html": ("html", None),
    ".htm": ("html", None),
    ".xhtml": ("html", None),
    ".ipynb": ("notebook", None),
    ".pdf": ("pdf", None),
    ".zip": (ARCHIVE, "zip"),
    ".tar": (ARCHIVE, "tar"),
    ".tar.gz": (ARCHIVE, "tar"),
    ".tgz": (ARCHIVE, "tar"),
    ".tar.bz2": (ARCHIVE, "tar"),
    ".tbz2": (ARCHIVE, "tar"),
    ".tar.xz": (ARCHIVE, "tar"),
    ".txz": (ARCHIVE, "tar"),
}

# Source code: language -> its extensions.
_CODE: dict[str, tuple[str, ...]] = {
    "python": (".py", ".pyi"),
    "javascript": (".js", ".mjs", ".cjs", ".jsx"),
    "typescript": (".ts", ".tsx", ".mts", ".cts"),
    "java": (".java",),
    "c": (".c", ".h"),
    "cpp": (".cc", ".cpp", ".cxx", ".hpp", ".hh", ".hxx"),
    "csharp": (".cs",),
    "go": (".go",),
    "rust": (".rs",),
    "ruby": (".rb",),
    "php": (".php",),
    "swift": (".swift",),
    "kotlin": (".kt", ".kts"),
    "scala": (".scala",),
    "shell": (".sh", ".bash", ".zsh"),
    "fish": (".fish",),
    "powershell": (".ps1",),
    "lua": (".lua",),
    "perl": (".pl", ".pm"),
    "r": (".r",),
    "julia": (".jl",),
    "sql": (".sql",),
    "css": (".css",),
    "scss": (".scss",),
    "less": (".less",),
    "toml": (".toml",),
    "yaml": (".yaml", ".yml"),
    "json": (".json",),
    "ini": (".ini", ".cfg"),
    "xml": (".xml",),
    "haskell": (".hs",),
    "ocaml": (".ml", ".mli"),
    "elixir": (".ex", ".exs"),
    "erlang": (".erl",),
    "clojure": (".clj",),
    "dart": (".dart",),
    "zig": (".zig",),
    "nim": (".nim",),
    "vim": (".vim",),
    "elisp": (".el",),
    "cmake": (".cmake",),
    "makefile": (".mk",),
    "protobuf": (".proto",),
    "graphql": (".graphql",),
    "terraform": (".tf",),
}

EXTENSIONS: dict[str, tuple[str, str | None]] = {
    **_DOCUMENTS,
    **{ext: ("code", language) for language, exts in _CODE.items() for ext in exts},
}

# Files known by their whole name (lower-cased), whatever their extension says.
FILENAMES: dict[str, tuple[str, str | None]] = {
    "makefile": ("code", "makefile"),
    "gnumakefile": ("code", "makefile"),
    "dockerfile": ("code", "dockerfile"),
    "containerfile": ("code", "dockerfile"),
    "cmakelists.txt": ("code", "cmake"),
    "gemfile": ("code", "ruby"),
    "rakefile": ("code", "ruby"),
    "vagrantfile": ("code", "ruby"),
}

# Shebang interpreter (its base name, version digits removed) -> language.
SHEBANGS: dict[str, str] = {
    "python": "python",
    "pypy": "python",
    "sh": "shell",
    "bash": "shell",
    "dash": "shell",
    "ksh": "shell",
    "zsh": "shell",
    "fish": "fish",
    "node": "javascript",
    "nodejs": "javascript",
    "deno": "typescript",
    "bun": "javascript",
    "ts-node": "typescript",
    "ruby": "ruby",
    "perl": "perl",
    "php": "php",
    "lua": "lua",
    "rscript": "r",
    "julia": "julia",
    "pwsh": "powershell",
    "tclsh": "tcl",
    "awk": "awk",
    "gawk": "awk",
}

_VERSION_SUFFIX = re.compile(r"[\d.]+$")


def kind_of(name: str, head: bytes) -> tuple[str, str | None]:
    """(kind, language) of a file from its name and the first bytes of its content."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1].lower()
    known = FILENAMES.get(base) or _by_extension(base)
    if known is not None:
        return known
    language = shebang_language(head)
    if language is not None:
        return "code", language
    return "text", None


def _by_extension(base: str) -> tuple[str, str | None] | None:
    # Every suffix from the first dot on, longest first; a leading dot is part of the name.
    start = base.find(".", 1)
    while start != -1:
        known = EXTENSIONS.get(base[start:])
        if known is not None:
            return known
        start = base.find(".", start + 1)
    return None


def shebang_language(head: bytes) -> str | None:
    """Language named by a ``#!`` line (``/usr/bin/env -S python3 -u`` included), if known."""
    if not head.startswith(b"#!"):
        return None
    words = head[2:].split(b"\n", 1)[0].decode("utf-8", "replace").split()
    if words and words[0].rsplit("/", 1)[-1] == "env":
        # env's own options (-S, -i) and VAR=value assignments come before the program.
        words = [w for w in words[1:] if not w.startswith("-") and "=" not in w]
    if not words:
        return None
    program = words[0].rsplit("/", 1)[-1].lower()
    return SHEBANGS.get(program) or SHEBANGS.get(_VERSION_SUFFIX.sub("", program))


# Names that are still being written or are not the user's content (Syncthing, browsers,
# editors, NAS and desktop metadata). Dotfiles and dot-directories are skipped too, which also
# covers our own `.failed/` folder.
JUNK_PATTERNS = (
    "*.part",
    "*.tmp",
    "*.crdownload",
    "*.partial",
    "*.download",
    "*~",
    "*.swp",
    "*.swx",
    "~$*",
    ".#*",
    "~syncthing~*",
    "Thumbs.db",
    "desktop.ini",
    "__MACOSX",
    "@eaDir",
)


@functools.lru_cache(maxsize=32)
def _junk_regex(extra: tuple[str, ...]) -> re.Pattern[str]:
    # One compiled alternation: a burst of watcher events calls this per path part.
    return re.compile("|".join(fnmatch.translate(p) for p in JUNK_PATTERNS + extra))


def is_junk(name: str, extra: tuple[str, ...] = ()) -> bool:
    return name.startswith(".") or _junk_regex(extra).match(name) is not None
