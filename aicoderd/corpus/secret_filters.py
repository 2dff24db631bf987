"""Whether a rule's match really is a secret: placeholders, references to a secret held
elsewhere, code expressions, documentation examples and low-entropy words are not.

A filter sees the secret and up to :data:`CONTEXT` characters of the text before it, to read
the name it is assigned to. The rules match names loosely (fast, in one pass); the filters
read the whole name: ``DB_PASSWORD``, ``apiToken`` and ``PGPASSWORD`` hold secrets,
``PreferredBackupWindow``, ``passed``, ``NextToken`` and ``password_min_length`` do not.
:data:`FILTERS` maps a rule's kind to its filter; every other kind (Kingfisher's catalogue)
gets :func:`not_placeholder`.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections import Counter
from collections.abc import Callable

CONTEXT = 120  # characters before a secret that a filter may look at

_PLACEHOLDER = re.compile(
    r"""(?ix)
    ^(?: pass(?:word|wd)? | pwd | secret | token | key | api[_-]?key | changeme | change[_-]me
       | example | sample | dummy | fake | test(?:ing)? | none | nil | null | true | false
       | undefined | empty | required | optional | redacted | hidden | masked | string | str
       | value | todo | tbd | fixme | username | user | admin )s?$
    | ^(.)\1*$                              # xxxx, ****, 0000
    | ^\$[{(\w] | ^%\( | ^%\w+%$ | \{.*\} | <.*> | \[.*\] | \(.*\)   # ${VAR}, %(x)s, {x}, <x>, f(x)
    | ^[!*&@:][A-Za-z_-]+$                  # YAML tags, aliases, anchors; @annotations; :symbols
    | :$                                    # a Sphinx role (:class:), a label
    | x{5,} | \*{3,} | \.\.\. | \#\#\#      # sk_live_xxxxx, sk-...
    | your | (?:^|[_-])my[_-]? | placeholder | dummy | example | sample | insert | replace
    | change[_-]?me | _here$ | ^here_
    | (?-i:^[a-z]+(?:[_-][a-z]+)+$)         # words: no-password-required, not_supported
    """
)
# Published documentation values: AWS's examples end in EXAMPLE or EXAMPLEKEY.
_DOC_EXAMPLE = re.compile(r"EXAMPLE")
# jwt.io's sample token (the claims its page shows by default).
_JWT_IO_CLAIMS = {"sub": "1234567890", "name": "John Doe", "iat": 1516239022}

# Names: the words of an identifier (camelCase, snake_case, kebab-case, dotted), lower case.
_WORD = re.compile(r"[A-Z]+\d*(?![a-z])|[A-Z]?[a-z]+\d*|\d+")
_PASSWORD_WORDS = frozenset({"password", "passwd", "passphrase", "pwd", "pass", "pw", "pswd"})
_PASSWORD_ENDINGS = ("password", "passwd", "passphrase", "pwd")  # PGPASSWORD, MYSQLPWD
_SECRET_WORDS = frozenset({"secret", "token", "key", "apikey", "auth", "credential",
                           "credentials", "passkey"})  # fmt: skip
_SECRET_ENDINGS = ("secret", "token", "apikey", "accesskey", "secretkey", "privatekey")
_SECRET_FAMILY = _SECRET_WORDS | _PASSWORD_WORDS
# Words that may follow the secret's word in its name (DB_PASSWORD_PROD, password2).
_SUFFIXES = frozenset({"confirmation", "confirm", "again", "repeat", "plain", "plaintext",
                       "raw", "prod", "production", "dev", "development", "test",
                       "staging", "local", "new", "old", "current", "default", "str",
                       "string", "b64", "base64", "hex", "encoded", "text"})  # fmt: skip
# Words that name a credential only with the right word before them.
_QUALIFIED = frozenset({"key", "token", "auth"})
# Words before "key" or "token" that make it something other than a credential.
_NOT_CREDENTIAL = frozenset({
    "src", "dst", "source", "dest", "sort", "primary", "foreign", "partition", "row", "cache",
    "lookup", "hash", "map", "dict", "index", "public", "pub", "object", "bucket", "group",
    "field", "column", "attr", "attribute", "property", "prop", "config", "setting", "settings",
    "translation", "locale", "message", "msg", "label", "idempotency", "dedup", "unique",
    "composite", "next", "last", "first", "child", "parent", "node", "item", "entry", "record",
    "json", "hot", "short", "shortcut", "keyboard", "press", "up", "down", "sequence", "binding",
    "page", "continuation", "pagination", "cursor", "sync", "cancellation", "resume", "marker",
    "lexer", "parser", "csrf", "xsrf", "sentinel", "registry", "s3", "route", "store", "tag",
    "name", "type", "kind", "sub", "start", "end", "stop", "max", "min", "starting", "client",
    "request", "confirmation", "action", "import", "device", "session", "idempotent", "change",
})  # fmt: skip
# The last word of a name that describes a secret rather than holds it.
_NOT_SECRET_NAME = re.compile(
    r"""(?x)^(?: sha\d* | md5 | hash | hashed | digest | checksum | fingerprint | id | ids | url
    | uri | file | filename | path | dir | length | len | min | max | policy | hint | label
    | field | prompt | reset | var | type | regex | pattern | format | expiry | expires
    | expiration | count | attempts | timeout | required | enabled | public | name | header
    | version | cache | prefix | endpoint | scope | algorithm | alg | size | salt | verifier
    | encrypted | ref | arn | location | provider | source | store | manager | mode )$"""
)
# Read backwards from the secret: an optional quote and prefix, the operator, the name.
_NAME_REVERSED = re.compile(r"""["'`]?[@rbuRBU]{0,2}[ \t]*(?:=:|>=|==|=|:)[ \t]*["']?([\w.$-]+)""")
_IDENTIFIER = re.compile(r"^[A-Za-z_$][\w$]*$")
_DOTTED = re.compile(r"^[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)+$")  # settings.API_KEY
_CONSTANT = re.compile(r"^[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+$")  # DB_PASSWORD
_NUMBER = re.compile(r"^[+-]?\d+(?:[.,]\d+)*[a-z]{0,2}$", re.I)
_VERSION = re.compile(r"\d\.\d")
_WORD_PIECE = re.compile(r"(?:^|[-_./])[a-z]{3,}(?=[-_./]|$)")
_HEX = re.compile(r"^[0-9a-fA-F]+$")
_CAMEL_WORDS = re.compile(r"^(?:[A-Z]+\d*|[A-Z]?[a-z]{2,}\d*|\d+)+$")  # PKCS7PrivateKeyTypes
_CAPITALISED = re.compile(r"[A-Z][a-z]{2,}")
_NON_ALNUM = re.compile(r"[\W_]+")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_FILE_NAME = re.compile(r"\.[a-z]{2,4}$")  # app-2.0.zip
_ARN = re.compile(r"arn:[\w-]+:[^\s\"']*$")  # arn:aws:secretsmanager:...:secret:NAME
_URL_SYNTAX = re.compile(r"[\[\]{}<>|^\\]")
# A URL, a Windows path, or AWS CLI shorthand (Key=Value): where a value is, not the value.
_LOCATION = re.compile(r"^(?:[a-z][a-z0-9+.-]*://|[A-Za-z]:\\|[A-Za-z]\w*=[^=])")
_FLAG_BEFORE = re.compile(r"--?([\w-]+)[ \t]+[\"']?$")
_FLAG = re.compile(r"^-+[A-Za-z_][\w-]*$")  # -pw, --verbose


def shannon_entropy(value: str) -> float:
    n = len(value)
    return -sum(k / n * math.log2(k / n) for k in Counter(value).values()) if n else 0.0


def name_before(before: str) -> str | None:
    """The identifier a secret is assigned to (``DB_PASSWORD`` in ``DB_PASSWORD="..."``)."""
    m = _NAME_REVERSED.match(before[::-1])
    return None if m is None else m.group(1)[::-1]


def name_words(name: str) -> list[str]:
    """``DB_PASSWORD2`` → ``db``, ``password2``; ``S3Key`` → ``s3``, ``key``."""
    return [w.lower() for w in _WORD.findall(name)]


def is_documentation_example(secret: str) -> bool:
    return bool(_DOC_EXAMPLE.search(secret)) or _is_jwt_io_sample(secret)


def _is_jwt_io_sample(secret: str) -> bool:
    parts = secret.split(".")
    if len(parts) != 3 or not parts[1].startswith("eyJ"):
        return False
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return False
    return bool(claims == _JWT_IO_CLAIMS)


def not_placeholder(secret: str, before: str) -> bool:
    """Neither a placeholder nor a documentation example; in ``user:password`` form, the
    password part counts."""
    password = secret.rpartition(":")[2] or secret
    return not (
        _PLACEHOLDER.search(secret)
        or _PLACEHOLDER.search(password)
        or is_documentation_example(secret)
    )


def _names_a(words: list[str], exact: frozenset[str], endings: tuple[str, ...]) -> bool:
    """The name's last meaningful word is one of ``exact`` or ends with one of ``endings``
    (``DB_PASSWORD``, ``apiToken``, ``PGPASSWORD``), and the word before it does not say the
    value is something else (``NextToken``, ``cache_key``)."""
    stems = [w.rstrip("0123456789") or w for w in words]
    i = len(stems) - 1
    while i > 0 and (stems[i] in _SUFFIXES or stems[i].isdigit()):
        i -= 1
    if i < 0 or _NOT_SECRET_NAME.match(stems[i]):
        return False
    if stems[i] not in exact and not stems[i].endswith(endings):
        return False
    return i == 0 or stems[i] not in _QUALIFIED or words[i - 1] not in _NOT_CREDENTIAL


def _named(secret: str, before: str, exact: frozenset[str], endings: tuple[str, ...]) -> bool:
    """Not a placeholder, under a name of the family (when the name can be read), and not a
    constant named after its own value (``FORCE_CHANGE_PASSWORD = "FORCE_CHANGE_PASSWORD"``)."""
    if not not_placeholder(secret, before) or _ARN.search(before):
        return False
    name = name_before(before)
    if name is None:
        return True
    own_name = _NON_ALNUM.sub("", secret).lower() in _NON_ALNUM.sub("", name).lower()
    return _names_a(name_words(name), exact, endings) and not own_name


def _reference(secret: str) -> bool:
    """A variable or a dotted name without digits: code that holds the secret elsewhere."""
    return bool(_IDENTIFIER.match(secret) or _DOTTED.match(secret)) and not any(
        c.isdigit() for c in secret
    )


def _plain_value(secret: str) -> bool:
    """A value that could be a password rather than code or a reference: not a variable, a
    dotted name, a path, a number or a constant."""
    return not (
        _reference(secret)
        or _LOCATION.match(secret)
        or _UUID.fullmatch(secret)
        or _FLAG.match(secret)
        or _NUMBER.match(secret)
        or _CONSTANT.match(secret)
        or secret.startswith(("/", "~/", "./", "../", "\\"))
    )


def random_looking(secret: str) -> bool:
    """A key rather than a word, an identifier or a version: entropy near that of random
    text of its length, no version numbers, not made of words."""
    if _HEX.match(secret):
        return len(secret) >= 32 and shannon_entropy(secret) >= 3.0
    if _VERSION.search(secret) or len(_WORD_PIECE.findall(secret)) >= 2:
        return False
    if not any(c.isalpha() for c in secret) or _DOTTED.match(secret) or _FILE_NAME.search(secret):
        return False
    if _UUID.search(secret):
        return False  # an id (request and idempotency tokens are UUIDs)
    if secret.isalpha() and (len(secret) < 32 or _IDENTIFIER.match(secret) is None):
        return False  # letters only: a word or an identifier, unless long
    if _CAMEL_WORDS.match(secret) and len(_CAPITALISED.findall(secret)) >= 2:
        return False  # CamelCase words
    one_case = secret.lower() == secret or secret.upper() == secret
    if one_case and not any(c.isdigit() for c in secret):
        return False
    # The 0.1st percentile of random strings' entropy is about 0.78 log2(min(length, 64)) for
    # mixed case and 0.72 log2(min(length, 36)) for one case with digits; words fall short.
    symbols, share = (36, 0.72) if one_case else (64, 0.78)
    return shannon_entropy(secret) >= share * math.log2(min(len(secret), symbols))


def _basic_credentials(secret: str) -> bool:
    """Base64 of ``user:password`` (HTTP basic, Docker's ``auth``, npm's ``_auth``)."""
    try:
        decoded = base64.b64decode(secret + "=" * (-len(secret) % 4), validate=True).decode()
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return False
    _, colon, password = decoded.partition(":")
    return bool(colon) and decoded.isprintable() and not_placeholder(password, "")


def password_literal(secret: str, before: str) -> bool:
    named = _named(secret, before, _PASSWORD_WORDS, _PASSWORD_ENDINGS)
    short_number = len(secret) < 6 and secret.isdigit()
    return named and not _CONSTANT.match(secret) and not short_number


def password_bare(secret: str, before: str) -> bool:
    return _named(secret, before, _PASSWORD_WORDS, _PASSWORD_ENDINGS) and _plain_value(secret)


def secret_value(secret: str, before: str) -> bool:
    named = _named(secret, before, _SECRET_FAMILY, _SECRET_ENDINGS)
    return named and (random_looking(secret) or _basic_credentials(secret))


def literal(secret: str, before: str) -> bool:
    """A value whose rule matched a secret's name itself (define(), setters, XML, app
    settings): not a placeholder, a reference or a constant."""
    return not_placeholder(secret, before) and _plain_value(secret)


def basic_auth(secret: str, before: str) -> bool:
    return _basic_credentials(secret)


def bearer_token(secret: str, before: str) -> bool:
    return not_placeholder(secret, before) and random_looking(secret)


def password_value(secret: str, before: str) -> bool:
    """A password given on its own (command line, .netrc): not a placeholder or a shell
    reference."""
    return not_placeholder(secret, before) and not secret.startswith("$")


def url_password(secret: str, before: str) -> bool:
    """As :func:`password_value`; a URL percent-encodes brackets and braces, so a password
    holding them is a pattern in documentation (``git://repo[:ref@]path``)."""
    user = before.rpartition("://")[2]
    return password_value(secret, before) and not _URL_SYNTAX.search(user + secret)


def flag_value(secret: str, before: str) -> bool:
    """The value after a command-line flag named for a secret (``--api-key VALUE``)."""
    m = _FLAG_BEFORE.search(before)
    words = [] if m is None else name_words(m.group(1))
    if words in ([], ["key"]) or not _names_a(words, _SECRET_FAMILY, _SECRET_ENDINGS):
        return False  # a bare --key names a record, not a credential
    file_name = _FILE_NAME.search(secret) is not None
    return literal(secret, before) and not secret.startswith("-") and not file_name


def entropic(secret: str, before: str) -> bool:
    return not_placeholder(secret, before) and shannon_entropy(secret) >= 3.0


Filter = Callable[[str, str], bool]

FILTERS: dict[str, Filter] = {
    "password_literal": password_literal,
    "password_bare": password_bare,
    "secret_assignment": secret_value,
    "define_secret": literal,
    "setter_secret": literal,
    "xml_secret": literal,
    "setting_secret": literal,
    "url_password": url_password,
    "netrc_password": password_value,
    "curl_password": password_value,
    "mysql_password": password_value,
    "cli_password": password_value,
    "flag_secret": flag_value,
    "terraform_default": literal,
    "stdin_password": password_value,
    "pgpass_password": password_value,
    "env_entry_secret": literal,
    "basic_auth": basic_auth,
    "bearer_token": bearer_token,
    "discord_token": entropic,
    "azure_client_secret": entropic,
}
