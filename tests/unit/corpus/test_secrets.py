"""Secret redaction: the labelled set (every secret replaced, every look-alike untouched), each
class of secret that once leaked, and a real build whose outputs hold none of them.

Secret values are made at run time (random, shaped like the real formats) so that no
secret-shaped string sits in the repository; tests/data/secrets/cases.yaml says what counts
as a secret."""

from __future__ import annotations

import json
import os
import random
import string
import zipfile
from collections import Counter
from pathlib import Path

import pytest

from aicoderd.config import CorpusConfig
from aicoderd.corpus.secrets import _SLICE, detect, kind_of, redact, redact_all, redact_strings
from tests.helpers.secret_cases import MARK, Case, load, replaced

from .conftest import build_files

CASES = load()
SECRETS = [c for c in CASES if c.is_secret]
BENIGN = [c for c in CASES if not c.is_secret]
RNG = random.Random(7)


def rand(n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(RNG.choice(alphabet) for _ in range(n))


def ids(cases: list[Case]) -> list[str]:
    seen: Counter[str] = Counter()
    out = []
    for c in cases:
        seen[c.kind] += 1
        out.append(f"{c.kind}-{seen[c.kind]}")
    return out


def test_the_labelled_set_is_large_and_varied() -> None:
    assert len(SECRETS) >= 150 and len({c.kind for c in SECRETS}) >= 30
    assert len(BENIGN) >= 300
    assert {c.where for c in CASES} == {"code", "config", "docs", "filename"}


@pytest.mark.parametrize("case", SECRETS, ids=ids(SECRETS))
def test_each_labelled_secret_is_replaced(case: Case) -> None:
    redacted, found = redact(case.text, MARK)
    assert replaced(case, redacted, MARK), redacted
    assert sum(found.values()) >= 1


@pytest.mark.parametrize("case", BENIGN, ids=ids(BENIGN))
def test_each_look_alike_is_untouched(case: Case) -> None:
    assert redact(case.text, MARK) == (case.text, Counter())


# -- the classes that leaked, one by one -------------------------------------------------------

PW = rand(6) + "!" + rand(5, string.digits) + "x"
KEY = rand(32)


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (f"DB_PASSWORD={PW}\nPORT=8080\n", PW),  # .env
        (f"[database]\npassword = {PW}\n", PW),  # INI
        (f"database:\n  password: {PW}\n", PW),  # YAML
        (f"client_secret: {KEY}\n", KEY),  # YAML, a key
        (f"```sh\nexport API_KEY={KEY}\n```\n", KEY),  # export in Markdown
        (f"    export DB_PASSWORD={PW}\n", PW),
    ],
)
def test_unquoted_assignments(text: str, secret: str) -> None:
    redacted, _ = redact(text)
    assert redacted == text.replace(secret, "<SECRET>")


def test_github_fine_grained_token() -> None:
    token = "github_pat_" + rand(22) + "_" + rand(59)
    redacted, found = redact(f'GITHUB_TOKEN = "{token}"\n')
    assert redacted == 'GITHUB_TOKEN = "<SECRET>"\n'
    assert sum(found.values()) == 1


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("REDIS_URL=redis://:{}@cache:6379/0\n", None),  # no user name
        ("url=jdbc:mysql://db:3306/app?user=app&password={}&useSSL=true\n", None),
        ("jdbc:sqlserver://db:1433;databaseName=app;user=sa;password={};encrypt=true\n", None),
        ('"Server=tcp:db,1433;Database=app;User ID=app;Password={};Encrypt=True;"\n', None),
        ("Data Source=db;User Id=sa;Pwd={};\n", None),  # ADO.NET
        ("curl -u admin:{} https://ci.internal/api\n", None),
        # Kingfisher's curl rule takes the user name with the password
        (
            'curl --user "deploy:{}" https://repo.internal\n',
            "curl --user <SECRET> https://repo.internal\n",
        ),
        ("mysql -u root -p{} app < dump.sql\n", None),
        ('pw = "{}"\n', None),  # short names
        ("$pass = '{}';\n", None),
        ('pwd := "{}"\n', None),
        ("machine api.internal login deploy password {}\n", None),
        ("<password>{}</password>\n", None),
        ('ds.setPassword("{}");\n', None),
        ("define('DB_PASSWORD', '{}');\n", None),
    ],
)
def test_passwords_without_a_user_or_a_long_name(template: str, expected: str | None) -> None:
    redacted, found = redact(template.format(PW))
    assert redacted == (expected or template.format("<SECRET>"))
    assert sum(found.values()) == 1


def test_sendgrid_key() -> None:
    key = "SG." + rand(22, string.ascii_letters + string.digits + "_-") + "." + rand(43)
    redacted, found = redact(f"sg = SendGridAPIClient('{key}')\n")
    assert redacted == "sg = SendGridAPIClient('<SECRET>')\n"
    assert sum(found.values()) == 1


def test_a_token_in_a_file_name() -> None:
    token = "ghp_" + rand(36)
    paths = [f"/home/dev/backups/{token}.txt", "/home/dev/src/app.py", f"a.zip!/keys/{token}"]
    assert redact_strings(paths, "<SECRET>") == [
        "/home/dev/backups/<SECRET>.txt",
        "/home/dev/src/app.py",
        "a.zip!/keys/<SECRET>",
    ]


# -- what surrounds a secret, batches, kinds ---------------------------------------------------


def test_only_the_secret_goes() -> None:
    text = f"# clé d'accès — ne pas publier\npassword = '{PW}'  # 秘密\n"
    redacted, found = redact(text)
    assert redacted == "# clé d'accès — ne pas publier\npassword = '<SECRET>'  # 秘密\n"
    assert found == Counter({"password_literal": 1})


def test_secrets_in_a_batch_land_in_their_own_documents() -> None:
    """More text than one scan slice, so documents span several scans."""
    filler = "x = 1\n" * (_SLICE // 6 // 50)
    texts = [f'{filler}db_password = "{PW}{i}"\n' if i % 7 == 0 else filler for i in range(120)]
    out = redact_all(texts, "[REDACTED]")
    for i, (redacted, found) in enumerate(out):
        if i % 7 == 0:
            assert redacted.endswith('db_password = "[REDACTED]"\n')
            assert found == Counter({"password_literal": 1})
        else:
            assert (redacted, found) == (filler, Counter())


def test_a_secret_found_by_two_rules_counts_once() -> None:
    token = "ghp_" + rand(36)
    hits = detect([f'GITHUB_TOKEN = "{token}"\n'.encode()])[0]
    assert sum(h.counted for h in hits) == 1
    assert redact(f'GITHUB_TOKEN = "{token}"\n')[0] == 'GITHUB_TOKEN = "<SECRET>"\n'


def test_kind_names() -> None:
    assert kind_of("aicoderd.password-bare") == "password_bare"
    assert kind_of("betterleaks.github-fine-grained-pat") == "github_fine_grained_pat"


def test_the_standard_library_holds_no_secret(stdlib_texts: dict[str, str]) -> None:
    names = list(stdlib_texts)
    out = redact_all(list(stdlib_texts.values()), MARK)
    for name, (redacted, found) in zip(names, out, strict=True):
        assert not found, (name, found)
        assert redacted == stdlib_texts[name]


# -- a real build: no planted secret in any output file ------------------------------------


def _padding(i: int) -> str:
    """Distinct text around each planted case, so quality and dedup keep every document."""
    words = [rand(RNG.randint(3, 9), string.ascii_lowercase) for _ in range(40)]
    return f"# case {i}: " + " ".join(words) + "\n"


def _plant(root: Path) -> list[str]:
    """Every labelled secret as a file (file-name cases as the file's or an archive member's
    name), plus a refused file whose name holds a token; the secrets planted."""
    planted = []
    for i, case in enumerate(SECRETS):
        planted += case.secrets
        if case.where == "filename":
            name = case.text.rsplit("/", 1)[-1]
            (root / f"f{i}").mkdir()
            (root / f"f{i}" / name).write_text(_padding(i) + "print('hello')\n" + _padding(-i))
        else:
            (root / f"case{i}.txt").write_text(_padding(i) + case.text + _padding(-i))
    member = "ghp_" + rand(36)
    with zipfile.ZipFile(root / "bundle.zip", "w") as zf:
        zf.writestr(f"keys/{member}.md", _padding(1000) + "# keys\n" + _padding(1001))
    refused = "glpat-" + rand(20)
    os.symlink(root / "case0.txt", root / f"link-{refused}.txt")  # refused: a symlink
    return [*planted, member, refused]


def test_a_build_writes_no_planted_secret_anywhere(tmp_path: Path) -> None:
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    planted = _plant(inputs)
    manifest = build_files(out, inputs)
    assert manifest is not None
    # every case became a document, and the refused link is listed
    assert manifest["documents"] == len(SECRETS) + 1
    removed = (out / "removed.jsonl").read_text()
    assert "ingest.symlink" in removed and "<SECRET>" in removed
    in_text = sum(len(c.secrets) for c in SECRETS if c.where != "filename")
    assert sum(manifest["redactions"].values()) >= in_text
    files = [p for p in out.rglob("*") if p.is_file()]
    assert any(p.name == "ledger.sqlite" for p in files)
    for path in files:
        data = path.read_bytes()
        leaked = [s for s in planted if s.encode() in data]
        assert not leaked, (path, leaked[:3])
    manifest_text = json.dumps(manifest)
    assert all(s not in manifest_text for s in planted)


def test_an_incremental_build_redacts_the_new_names_too(tmp_path: Path) -> None:
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    (inputs / "first.txt").write_text(_padding(1) + _padding(2))
    assert build_files(out, inputs) is not None
    token = "glpat-" + rand(20)
    (inputs / f"notes-{token}.md").write_text(_padding(3) + _padding(4))
    manifest = build_files(out, inputs)
    assert manifest is not None and manifest["build"]["mode"] == "incremental"
    assert manifest["documents"] == 2
    for path in (p for p in out.rglob("*") if p.is_file()):
        assert token.encode() not in path.read_bytes(), path
    arrow = b"".join(p.read_bytes() for p in (out / "dataset").rglob("*.arrow"))
    assert b"notes-<SECRET>.md" in arrow  # the uri column


def test_with_redaction_off_names_and_text_stay(tmp_path: Path) -> None:
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    token = "ghp_" + rand(36)
    (inputs / f"{token}.txt").write_text(_padding(5) + f'TOKEN = "{token}"\n' + _padding(6))
    manifest = build_files(out, inputs, config=CorpusConfig(redact_secrets=False))
    assert manifest is not None and manifest["redactions"] == {}
    text = (out / "preprocessed_corpus.txt").read_text()
    assert f'TOKEN = "{token}"' in text
    assert any(token.encode() in p.read_bytes() for p in (out / "dataset").rglob("*.arrow"))
