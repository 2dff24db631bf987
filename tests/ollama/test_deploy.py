"""The deploy flow against the fake Ollama (a real HTTP server enforcing Ollama's rules)."""

from __future__ import annotations

import hashlib
import shutil
import threading
import time
from pathlib import Path

import httpx
import pytest

from aicoderd.errors import OllamaError, OllamaUnavailable
from aicoderd.ollama import deploy as d
from aicoderd.ollama.blobs import BlobUpload, UploadState, file_digest
from aicoderd.ollama.client import Client
from aicoderd.ollama.testing import FakeOllama
from aicoderd.ollama.versions import point_latest, versions
from aicoderd.training import prompt

VERSION = "20260101-train-00007"


def _opts(**kw: object) -> d.DeployOptions:
    return d.DeployOptions(name="coder", **kw)  # type: ignore[arg-type]


def test_happy_path_versions_latest_and_rollback(
    fake: FakeOllama, client: Client, ggufs: dict[str, Path]
) -> None:
    seen: list[str] = []
    r = d.deploy_gguf(
        client, ggufs["f16"], _opts(system="Review code."), lambda m: seen.append(m["status"])
    )
    assert r["name"] == f"coder:{VERSION}" and r["latest"] == "coder:latest"
    assert seen[0] == "parsing GGUF" and seen[-1] == "success"
    assert "validating GGUF model" in seen  # the >= 0.30 COPY validation branch
    shown = client.show("coder:latest")
    assert shown is not None
    assert shown["template"] == prompt.ollama_template()
    assert shown["system"] == "Review code."
    assert "stop" in shown["parameters"] and "num_ctx" in shown["parameters"]
    assert r["parameters"] == {"stop": prompt.STOP_TOKENS, "num_ctx": 256}
    assert shown["details"]["family"] == "llama" and shown["details"]["quantization_level"] == "F16"
    assert "general.name" not in shown["model_info"]
    assert r["sample"]  # the short generation ran
    # A second version moves latest; rollback moves it back.
    r2 = d.deploy_gguf(client, ggufs["q8_0"], _opts(version="20260102-ft-00008"))
    assert r2["uploaded_bytes"] > 0
    found = versions(client, "coder")
    assert [v["version"] for v in found] == [VERSION, "20260102-ft-00008"]
    assert [v["latest"] for v in found] == [False, True]
    assert found[0]["metrics"]["eval_loss"] == pytest.approx(2.25)
    assert point_latest(client, "coder")["now"] == f"coder:{VERSION}"
    assert [v["latest"] for v in versions(client, "coder")] == [True, False]
    with pytest.raises(OllamaError, match="oldest version"):
        point_latest(client, "coder")
    assert point_latest(client, "coder", "20260102-ft-00008")["now"].endswith("ft-00008")


def test_known_blob_is_not_uploaded_again(
    client: Client, fake: FakeOllama, ggufs: dict[str, Path]
) -> None:
    d.deploy_gguf(client, ggufs["f16"], _opts())
    posts = [p for m, p in fake.requests if m == "POST" and p.startswith("/api/blobs/")]
    r = d.deploy_gguf(client, ggufs["f16"], _opts(version="again"))
    assert r["uploaded_bytes"] == 0
    assert [p for m, p in fake.requests if m == "POST" and p.startswith("/api/blobs/")] == posts


def test_reset_during_upload_resumes(
    client: Client, fake: FakeOllama, ggufs: dict[str, Path]
) -> None:
    fake.faults.reset_upload_after = 2 * 2**20
    fake.faults.reset_uploads = 1
    up = BlobUpload(client, ggufs["f16"])
    up.hash()
    assert up.ensure() == file_digest(ggufs["f16"])
    assert up.state is UploadState.PRESENT
    assert fake.faults.reset_uploads == 0  # the reset did happen
    assert up.uploaded_bytes > ggufs["f16"].stat().st_size  # sent twice: resumed from the start
    assert client.has_blob(up.digest)


def test_upload_gives_up_after_repeated_resets(
    client: Client, fake: FakeOllama, ggufs: dict[str, Path]
) -> None:
    fake.faults.reset_upload_after = 1 << 20
    fake.faults.reset_uploads = 5
    up = BlobUpload(client, ggufs["f16"], attempts=2)
    up.hash()
    with pytest.raises(OllamaError, match="failed 2 times"):
        up.ensure()


def test_early_200_when_blob_appears_during_upload(
    client: Client, fake: FakeOllama, ggufs: dict[str, Path]
) -> None:
    path = ggufs["f16"]
    fake.faults.before_blob_post = lambda: fake.store_bytes(path.read_bytes())
    up = BlobUpload(client, path)
    up.hash()
    assert up.ensure() and up.state is UploadState.PRESENT


def test_upload_state_machine_refuses_illegal_moves(client: Client, ggufs: dict[str, Path]) -> None:
    up = BlobUpload(client, ggufs["f16"])
    with pytest.raises(OllamaError, match="is new, not hashed or present"):
        up.ensure()


def test_digest_rules(client: Client, fake: FakeOllama, tmp_path: Path) -> None:
    data = b"GGUF not really" * 1000
    hexd = hashlib.sha256(data).hexdigest()
    assert client.request("HEAD", "/api/blobs/sha256:xyz").status_code == 400
    r = client.request("POST", f"/api/blobs/sha256:{hexd.upper()}", content=data)
    assert r.status_code == 400 and "digest mismatch" in r.json()["error"]
    assert client.has_blob(f"sha256:{hexd}")  # stored under its actual digest anyway
    r = client.request("POST", f"/api/blobs/sha256-{hexd}", content=data)
    assert r.status_code == 200  # already there: answered without reading
    assert client.request("HEAD", f"/api/blobs/sha256-{hexd}").status_code == 200
    assert client.request("POST", "/api/import", json={}).status_code == 404
    assert client.request("GET", "/api/create").status_code == 405


def test_bad_and_truncated_gguf_fail_in_stream(
    client: Client, fake: FakeOllama, ggufs: dict[str, Path], tmp_path: Path
) -> None:
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"PK\x03\x04" + b"x" * 5000)
    trunc = tmp_path / "trunc.gguf"
    trunc.write_bytes(ggufs["f16"].read_bytes()[:200_000])
    for path, message in ((junk, "not in GGUF format"), (trunc, "exceeds file size")):
        digest = _upload(client, path)
        with pytest.raises(OllamaError, match=message) as exc:
            client.create({"model": "bad", "files": {"model.gguf": digest}})
        assert "parsing GGUF" in exc.value.statuses  # type: ignore[attr-defined]


def _upload(client: Client, path: Path) -> str:
    up = BlobUpload(client, path)
    up.hash()
    return up.ensure()


def test_quantize_eligibility(client: Client, fake: FakeOllama, ggufs: dict[str, Path]) -> None:
    with pytest.raises(OllamaError, match="this one is unknown"):  # all-F32: file_type 0
        d.deploy_gguf(client, ggufs["f32"], _opts(quantize="q4_K_M"))
    with pytest.raises(OllamaError, match="this one is Q8_0"):
        d.deploy_gguf(client, ggufs["q8_0"], _opts(quantize="q8_0"))
    # The server enforces it too, whatever the client checks.
    digest = _upload(client, ggufs["f32"])
    with pytest.raises(OllamaError, match="only supported for F16, BF16 and F32"):
        client.create({"model": "x", "files": {"model.gguf": digest}, "quantize": "q4_K_M"})
    digest = _upload(client, ggufs["f16"])
    with pytest.raises(OllamaError, match="unsupported quantization type Q5_K_M"):
        client.create({"model": "x", "files": {"model.gguf": digest}, "quantize": "q5_K_M"})
    r = d.deploy_gguf(client, ggufs["f16"], _opts(quantize="q4_K_M"))
    assert r["details"]["quantization_level"] == "Q4_K_M"
    assert any(s.startswith("quantizing F16 model to Q4_K_M") for s in r["statuses"])


def test_synchronous_create_errors(
    client: Client, fake: FakeOllama, ggufs: dict[str, Path]
) -> None:
    digest = _upload(client, ggufs["f16"])
    for body, message in (
        ({"model": "x", "files": {"./model.gguf": digest}}, "file path must be relative"),
        ({"model": "x", "files": {"model.gguf": ""}}, "invalid digest format"),
        ({"model": "bad name!", "files": {"model.gguf": digest}}, "invalid model name"),
        ({"model": "x"}, "neither 'from' or 'files'"),
    ):
        r = client.request("POST", "/api/create", json=body)
        assert r.status_code == 400 and message in r.json()["error"]
    missing = "sha256:" + "0" * 64
    with pytest.raises(OllamaError, match="no such file or directory"):
        client.create({"model": "x", "files": {"model.gguf": missing}})


def test_stream_without_success_is_retried_once(
    client: Client, fake: FakeOllama, ggufs: dict[str, Path]
) -> None:
    fake.faults.create_no_success = 1
    statuses: list[str] = []
    r = d.deploy_gguf(client, ggufs["f16"], _opts(), lambda m: statuses.append(m["status"]))
    assert "create ended without an outcome; creating again" in statuses
    assert r["statuses"][-1] == "success"
    fake.faults.create_no_success = 2
    with pytest.raises(OllamaError, match="ended without success"):
        d.deploy_gguf(client, ggufs["f16"], _opts(version="two"))


def test_error_after_manifest_is_confirmed_with_show(
    client: Client, fake: FakeOllama, ggufs: dict[str, Path]
) -> None:
    fake.faults.error_after_manifest = 1
    r = d.deploy_gguf(client, ggufs["f16"], _opts())
    assert client.show(r["name"]) is not None


def test_slow_create_is_waited_for(
    client: Client, fake: FakeOllama, ggufs: dict[str, Path]
) -> None:
    fake.faults.create_delay = 0.3  # x ~10 lines; no read timeout may cut it
    started = time.monotonic()
    r = d.deploy_gguf(client, ggufs["f16"], _opts())
    assert r["statuses"][-1] == "success" and time.monotonic() - started > 2


def test_replace_backs_up_and_unloads(
    client: Client, fake: FakeOllama, ggufs: dict[str, Path]
) -> None:
    d.deploy_gguf(client, ggufs["q8_0"], d.DeployOptions(name="old:7b", check_generate=True))
    client.generate("old:7b", "hi", {"num_predict": 1})  # loaded
    assert [m["name"] for m in client.ps()] == ["old:7b"]
    opts = d.DeployOptions(name="coder", replace="old:7b", check_generate=False)
    r = d.deploy_gguf(client, ggufs["f16"], opts)
    assert client.ps() == []  # the old runner was unloaded before the create
    assert r["name"] == "old:7b" and r["latest"] is None
    assert r["backup"].startswith("old-backup-") and r["backup"].endswith(":7b")
    backup = client.show(r["backup"])
    assert backup is not None and backup["details"]["quantization_level"] == "Q8_0"
    assert client.show("old:7b")["details"]["quantization_level"] == "F16"  # type: ignore[index]


def test_old_version_refused(ggufs: dict[str, Path]) -> None:
    too_old = pytest.raises(OllamaError, match=r"0\.5\.4 is too old")
    with FakeOllama(version="0.5.4") as old, Client(old.url) as c, too_old:
        d.deploy_gguf(c, ggufs["f16"], _opts())
    with FakeOllama(version="0.0.0") as dev, Client(dev.url) as c:
        assert d.check_version(c) == "0.0.0"  # a dev build counts as the newest
    with FakeOllama(version="0.12.3") as pre30, Client(pre30.url) as c:  # no COPY validation
        r = d.deploy_gguf(c, ggufs["f16"], _opts())
        assert "validating GGUF model" not in r["statuses"]


def test_unknown_architecture_rejected_by_validation(ggufs: dict[str, Path]) -> None:
    refused = pytest.raises(OllamaError, match="failed to validate GGUF with llama-quantize")
    with FakeOllama(architectures=("qwen2",)) as fake, Client(fake.url) as c, refused:
        d.deploy_gguf(c, ggufs["f16"], _opts())


def test_ollama_down_is_unavailable(ggufs: dict[str, Path]) -> None:
    with FakeOllama() as f:
        url = f.url
    with Client(url) as c, pytest.raises(OllamaUnavailable):
        d.deploy_gguf(c, ggufs["f16"], _opts())


def test_file_changed_during_upload_is_caught(
    client: Client, fake: FakeOllama, ggufs: dict[str, Path], tmp_path: Path
) -> None:
    path = tmp_path / "m.gguf"
    shutil.copy(ggufs["f16"], path)
    up = BlobUpload(client, path)
    up.hash()
    with open(path, "r+b") as fh:  # same size, same mtime afterwards? no: changed content
        fh.seek(100)
        fh.write(b"\x00" * 8)
    with pytest.raises((OllamaError, httpx.HTTPError)):
        up.ensure()
    assert not client.has_blob(up.digest)


def test_concurrent_deploys_of_same_blob(fake: FakeOllama, ggufs: dict[str, Path]) -> None:
    errors: list[BaseException] = []

    def one(tag: str) -> None:
        try:
            with Client(fake.url) as c:
                d.deploy_gguf(c, ggufs["f16"], _opts(version=tag, check_generate=False))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(f"t{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
