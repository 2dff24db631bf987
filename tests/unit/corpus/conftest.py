"""Fixtures of the corpus tests: real files on disk, real Python standard library modules."""

from __future__ import annotations

import os
import sysconfig
from pathlib import Path

import pytest

from aicoderd.config import CorpusConfig, IngestConfig
from aicoderd.corpus.build import Builder
from aicoderd.corpus.inputs import FileInputs
from aicoderd.sources.extract_limits import ExtractLimits

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

STDLIB = Path(sysconfig.get_paths()["stdlib"])
# Clean, real code: well-known standard library modules (none holds a credential).
STDLIB_MODULES = [
    "abc.py", "argparse.py", "ast.py", "base64.py", "bisect.py", "calendar.py", "cmd.py",
    "codecs.py", "collections/__init__.py", "colorsys.py", "contextlib.py", "copy.py",
    "csv.py", "dataclasses.py", "datetime.py", "difflib.py", "enum.py", "fnmatch.py",
    "fractions.py", "functools.py", "getopt.py", "gettext.py", "glob.py", "gzip.py",
    "heapq.py", "hmac.py", "html/parser.py", "inspect.py", "json/decoder.py",
    "json/encoder.py", "locale.py", "logging/__init__.py", "mimetypes.py", "netrc.py",
    "ntpath.py", "operator.py", "optparse.py", "os.py", "pathlib.py", "pprint.py",
    "queue.py", "random.py", "secrets.py", "shlex.py", "shutil.py", "smtplib.py",
    "ssl.py", "statistics.py", "string.py", "tempfile.py", "textwrap.py", "tokenize.py",
    "typing.py", "urllib/parse.py", "uuid.py", "zipfile.py",
]  # fmt: skip


@pytest.fixture(scope="session")
def stdlib_texts() -> dict[str, str]:
    return {name: (STDLIB / name).read_text(encoding="utf-8") for name in STDLIB_MODULES}


def build_files(out: Path, *inputs: Path, config: CorpusConfig | None = None, **kw: object):  # type: ignore[no-untyped-def]
    """One standalone build of ``inputs`` into ``out``; the manifest (None: up to date)."""
    files = FileInputs(list(inputs), ExtractLimits.from_config(IngestConfig()))
    return Builder(files, out, config or CorpusConfig(), **kw).run()  # type: ignore[arg-type]
