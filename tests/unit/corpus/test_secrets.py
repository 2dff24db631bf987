"""Secret redaction: one sample per detector, all replaced; identifiers and code untouched.

Samples are assembled at run time so that no secret-shaped string sits in the repository
(push protection and scanners would rightly flag it)."""

from __future__ import annotations

import random
import string
from collections import Counter

import pytest

from aicoderd.corpus.secrets import DETECTORS, redact, redact_all

RNG = random.Random(4)


def rand(n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    while True:
        value = "".join(RNG.choice(alphabet) for _ in range(n))
        if sum(c.isdigit() for c in value) >= 3:
            return value


B64 = string.ascii_letters + string.digits + "+/"
KEY_BODY = "\n".join(rand(64, B64) for _ in range(6))

# detector → (text holding one secret, the secret itself)
SAMPLES: dict[str, tuple[str, str]] = {}


def sample(kind: str, text: str, secret: str) -> None:
    SAMPLES[kind] = (text, secret)


block = f"-----BEGIN RSA PRIVATE KEY-----\n{KEY_BODY}\n-----END RSA PRIVATE KEY-----"
sample("private_key", f'KEY = """\n{block}\n"""\n', block)
aws = "AKIA" + rand(16, string.ascii_uppercase + string.digits)
sample("aws_access_key", f'aws_access_key_id = "{aws}"\n', aws)
google = "AIza" + rand(35, string.ascii_letters + string.digits + "_-")
sample("google_api_key", f"const key = '{google}';\n", google)
azure = rand(86, string.ascii_letters + string.digits + "+/") + "=="
sample(
    "azure_storage_key", f"DefaultEndpointsProtocol=https;AccountName=x;AccountKey={azure}\n", azure
)
github = "ghp_" + rand(36)
sample("github_token", f"git clone https://github.com/o/r  # token {github}\n", github)
gitlab = "glpat-" + rand(20)
sample("gitlab_token", f"export CI_TOKEN_X={gitlab}\n", gitlab)
slack = "xoxb-" + rand(12, string.digits) + "-" + rand(24)
sample("slack_token", f"client = WebClient({slack!r})\n", slack)
stripe = "sk_" + "live_" + rand(24)
sample("stripe_key", f"stripe.api_key_value = {stripe!r}\n", stripe)
jwt = "eyJ" + rand(20, B64[:-2]) + ".eyJ" + rand(30, B64[:-2]) + "." + rand(43, B64[:-2])
sample("jwt", f"Authorization: Bearer {jwt}\n", jwt)
sample(
    "url_password",
    "DB = 'postgres://app:" + "S3cr3t-Pa55" + "@db.internal:5432/main'\n",
    "S3cr3t-Pa55",
)
pw = "hunter2" + rand(3)
sample("password_assignment", f'db_password = "{pw}"\n', pw)
api = rand(40)
sample("secret_assignment", f'OPENAI_API_KEY: "{api}"\n', api)


def test_every_detector_has_a_sample() -> None:
    assert set(SAMPLES) == set(DETECTORS)


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_each_secret_is_redacted(kind: str) -> None:
    text, secret = SAMPLES[kind]
    redacted, found = redact(text)
    assert secret not in redacted
    assert "<SECRET>" in redacted
    assert found == Counter({kind: 1}), found
    # only the secret goes: what surrounds it stays
    before, _, after = text.partition(secret)
    assert redacted == before + "<SECRET>" + after


def test_secrets_in_a_batch_land_in_their_own_documents() -> None:
    texts = [SAMPLES[k][0] for k in sorted(SAMPLES)] + ["x = 1\n"]
    out = redact_all(texts, "[REDACTED]")
    for kind, (redacted, found) in zip(sorted(SAMPLES), out, strict=False):
        assert found == Counter({kind: 1})
        assert "[REDACTED]" in redacted
    assert out[-1] == ("x = 1\n", Counter())


def test_non_ascii_text_around_a_secret_survives() -> None:
    text = f"# clé d'accès — ne pas publier\npassword = '{pw}'  # 秘密\n"
    redacted, found = redact(text)
    assert redacted == "# clé d'accès — ne pas publier\npassword = '<SECRET>'  # 秘密\n"
    assert found["password_assignment"] == 1


@pytest.mark.parametrize(
    "clean",
    [
        # what detect-secrets' ad-hoc scan reports as high-entropy strings
        "def compute(depth=2):\n    return RSA(depth)\n",
        "token = tokenizer.next_token()\nkey = keys[index]\n",
        'password = os.environ["DB_PASSWORD"]\n',
        'password = ""\npassword = "password"\npassword = "${DB_PASS}"\npwd = "<your password>"\n',
        'FORCE_CHANGE_PASSWORD = "FORCE_CHANGE_PASSWORD"\n',
        'cache_key = "user_profile_settings_v2"\n',
        'SECRET_KEY_SETTING = "django.conf.settings.SECRET"\n',
        'key_sha256 = "' + "ab" * 32 + '"\n',
        "url = 'https://user@example.com/path'\nurl2 = 'https://example.com:8080/x@y'\n",
        "-----BEGIN PRIVATE KEY-----\n_END = '-----END PRIVATE KEY-----'\n",
        "sk_test = settings.get('sk_test')  # not a key\n",
        'auth_header = "Authorization"\n',
    ],
)
def test_ordinary_code_is_untouched(clean: str) -> None:
    assert redact(clean) == (clean, Counter())
