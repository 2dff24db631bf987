"""The git source against real repositories made in tmp_path with the git CLI: first sync, new
commits read incrementally, deletions, a force-push, a submodule, hooks that must not run, an
oversized file left on the server by the clone filter, a symlink out of the repository,
vendored / generated / minified files, licences, bad URLs — and once through the real daemon.

Direct runs build the same ``SourceRun`` the ``source.fetch`` job builds, with a real store, and
count the documents handed to ``put``: that is how "only changed files are read" is proven."""

from __future__ import annotations

import os
import shutil
import subprocess
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aicoderd.config import Settings
from aicoderd.errors import SourceError
from aicoderd.sources import git as git_source
from aicoderd.sources.base import FetchedDocument, SourceRun
from aicoderd.sources.git import remote_of
from aicoderd.sources.gitrepo import GitRepo
from aicoderd.store import DocumentFiles, Store
from tests.conftest import DaemonProc, wait_for
from tests.integration import site
from tests.integration.site import run_dying, source_state

MIT = """MIT License

Copyright (c) 2024 Someone

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.
"""
APACHE = """
                                 Apache License
                           Version 2.0, January 2004
                        http://www.apache.org/licenses/
"""
MINIFIED = "x=[" + ",".join(str(i) for i in range(1500)) + "]\n"
CANARY = "CANARY-SECRET-OUTSIDE-THE-REPO"

_ENV = {
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.invalid",
}


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, **_ENV}
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
    return done.stdout.strip()


class Upstream:
    """A repository someone else owns: files written, committed, rewritten."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True)
        git(path, "init", "-q", "-b", "main")
        git(path, "config", "uploadpack.allowFilter", "true")  # as GitHub does

    def write(self, files: dict[str, str | bytes]) -> None:
        for rel, content in files.items():
            target = self.path / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content)

    def remove(self, *rels: str) -> None:
        for rel in rels:
            (self.path / rel).unlink()

    def commit(self, message: str = "change") -> str:
        git(self.path, "add", "-A")
        git(self.path, "commit", "-q", "--allow-empty", "-m", message)
        return git(self.path, "rev-parse", "HEAD")


class CountingRun(SourceRun):
    """The job's SourceRun, remembering which documents the fetcher handed over."""

    puts: list[str]

    def put(self, doc: FetchedDocument) -> str:
        self.puts.append(doc.uri)
        return super().put(doc)


def source(upstream: Upstream, **options: Any) -> dict[str, Any]:
    return {"name": "repo", "type": "git", "url": str(upstream.path), **options}


def sync(data_dir: Path, config: dict[str, Any]) -> CountingRun:
    """One run, exactly as the ``source.fetch`` job does it."""
    settings = Settings(data_dir=data_dir, socket=data_dir / "s.sock", folders=[], sources=[config])
    store = Store(settings.state_db)
    run = CountingRun(
        config=settings.sources[0],
        settings=settings,
        store=store,
        files=DocumentFiles(settings.documents_dir),
        state=store.sources.state(config["name"]),
    )
    run.puts = []
    try:
        git_source.fetch(run)
        run.finish()
        store.sources.save_state(config["name"], run.state)
    finally:
        store.close()
    return run


def stored(data_dir: Path) -> dict[str, tuple[str, dict[str, Any]]]:
    """Path → (text, meta) of the documents the source holds now."""
    return {uri.rsplit("@", 1)[1]: doc for uri, doc in site.stored(data_dir, "git:repo").items()}


def paths_of(run: CountingRun) -> set[str]:
    return {uri.rsplit("@", 1)[1] for uri in run.puts}


def counts(run: CountingRun) -> dict[str, int]:
    keys = ("added", "updated", "unchanged", "retired", "failed")
    return {k: run.counts[k] for k in keys}


@pytest.fixture
def upstream(tmp_path: Path) -> Upstream:
    return Upstream(tmp_path / "upstream")


def test_first_sync_then_only_changed_files_are_read(upstream: Upstream, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.py").write_text(f"KEY = '{CANARY}'\n")
    upstream.write(
        {
            "LICENSE": MIT,
            "README.md": "# Project\n",
            "pkg/__init__.py": "",  # empty: not a document
            "pkg/core.py": "def core():\n    return 1\n",
            "pkg/util.py": "def util():\n    return 2\n",
            "pkg/spdx.py": "# SPDX-License-Identifier: Apache-2.0\nX = 1\n",
            "scripts/tool.py": "#!/usr/bin/env python3\nprint('tool')\n",
            "node_modules/dep/index.py": "VENDORED = True\n",
            "third_party/lib.py": "VENDORED = True\n",
            "pkg/api_pb2.py": "DESCRIPTOR = None\n",
            "pkg/gen.py": "# Code generated by gen-tool. DO NOT EDIT.\nX = 1\n",
            "pkg/bundle.py": MINIFIED,
            "pkg/blob.py": b"\x00\x01\x02binary\x00",
            "pkg/data.zip": b"PK\x05\x06" + b"\x00" * 18,
        }
    )
    os.symlink("../../outside/secret.py", upstream.path / "pkg" / "link.py")
    first = upstream.commit("first")
    config = source(upstream, include=["**/*.py", "**/*.zip"])

    run = sync(tmp_path / "data", config)
    code = {"pkg/core.py", "pkg/util.py", "pkg/spdx.py", "scripts/tool.py"}
    assert paths_of(run) == code
    assert counts(run) == {"added": 4, "updated": 0, "unchanged": 0, "retired": 0, "failed": 0}
    assert run.state["skipped"] == {
        "empty": 1,
        "symlink": 1,
        "vendored": 2,
        "generated": 2,
        "minified": 1,
        "binary": 1,
        "archive": 1,
    }
    docs = stored(tmp_path / "data")
    assert set(docs) == code
    assert all(CANARY not in text for text, _ in docs.values())
    text, meta = docs["pkg/core.py"]
    assert text == "def core():\n    return 1\n"
    assert meta == {
        "repo": str(upstream.path),
        "branch": "main",
        "commit": first,
        "path": "pkg/core.py",
        "blob": git(upstream.path, "rev-parse", "HEAD:pkg/core.py"),
        "licence": "MIT",
        "licence_from": "repository",
    }
    assert docs["pkg/spdx.py"][1]["licence"] == "Apache-2.0"
    assert docs["pkg/spdx.py"][1]["licence_from"] == "header"

    # A commit that changes one file, adds one and deletes one: only those two are read.
    upstream.write({"pkg/util.py": "def util():\n    return 3\n", "pkg/new.py": "NEW = 1\n"})
    upstream.remove("pkg/core.py")
    second = upstream.commit("second")
    run = sync(tmp_path / "data", config)
    assert paths_of(run) == {"pkg/util.py", "pkg/new.py"}
    assert counts(run) == {"added": 1, "updated": 1, "unchanged": 2, "retired": 1, "failed": 0}
    assert run.state["listed"] == "changes" and run.state["commit"] == second
    docs = stored(tmp_path / "data")
    assert set(docs) == {"pkg/util.py", "pkg/new.py", "pkg/spdx.py", "scripts/tool.py"}
    assert docs["pkg/util.py"][0] == "def util():\n    return 3\n"
    assert docs["pkg/util.py"][1]["commit"] == second
    assert docs["scripts/tool.py"][1]["commit"] == first  # untouched: read at the first commit

    # Nothing new upstream: nothing is read, nothing changes.
    run = sync(tmp_path / "data", config)
    assert run.puts == []
    assert counts(run) == {"added": 0, "updated": 0, "unchanged": 4, "retired": 0, "failed": 0}
    assert stored(tmp_path / "data") == docs


def test_a_sync_that_dies_between_batches_loses_nothing_and_keeps_the_old_commit(
    upstream: Upstream, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    upstream.write({f"pkg/m{i}.py": f"M = {i}\n" for i in range(7)})
    first = upstream.commit("first")
    config = source(upstream)

    # Batches of 3; the job dies at the 6th file: the first batch is stored, nothing else, and
    # no commit is recorded as synced.
    run_dying(data, config, puts=5, batch_documents=3)
    assert len(stored(data)) == 3
    assert "commit" not in source_state(data, "repo")
    run = sync(data, config)  # lists the whole tree again: nothing lost, nothing twice
    assert counts(run) == {"added": 4, "updated": 0, "unchanged": 3, "retired": 0, "failed": 0}
    assert set(stored(data)) == {f"pkg/m{i}.py" for i in range(7)}
    assert source_state(data, "repo")["commit"] == first

    # An incremental sync that dies half-way leaves the last synced commit where it was, so the
    # next run reads the same changes again.
    upstream.write({f"pkg/m{i}.py": f"M = {i} + 1\n" for i in range(5)})
    upstream.remove("pkg/m6.py")
    second = upstream.commit("second")
    run_dying(data, config, puts=3, batch_documents=2)
    assert source_state(data, "repo")["commit"] == first
    assert sum(meta["commit"] == second for _, meta in stored(data).values()) == 2
    run = sync(data, config)
    assert paths_of(run) == {f"pkg/m{i}.py" for i in range(5)}
    assert counts(run) == {"added": 0, "updated": 3, "unchanged": 3, "retired": 0, "failed": 0}
    docs = stored(data)
    assert set(docs) == {f"pkg/m{i}.py" for i in range(6)}
    assert all(meta["commit"] == second for path, (_, meta) in docs.items() if path < "pkg/m5")
    assert source_state(data, "repo")["commit"] == second


def test_a_force_push_lists_the_whole_new_tree(upstream: Upstream, tmp_path: Path) -> None:
    upstream.write({"a.py": "A = 1\n", "b.py": "B = 1\n"})
    base = upstream.commit("base")
    config = source(upstream)
    sync(tmp_path / "data", config)
    upstream.write({"b.py": "B = 2\n", "only_b.py": "GONE = 1\n"})
    upstream.commit("to be rewritten")
    assert paths_of(sync(tmp_path / "data", config)) == {"b.py", "only_b.py"}

    git(upstream.path, "reset", "-q", "--hard", base)  # history rewritten, as by a force-push
    upstream.write({"c.py": "C = 1\n"})
    rewritten = upstream.commit("rewritten")
    run = sync(tmp_path / "data", config)
    assert run.state["listed"] == "full"
    assert paths_of(run) == {"a.py", "b.py", "c.py"}
    assert counts(run) == {"added": 1, "updated": 1, "unchanged": 1, "retired": 1, "failed": 0}
    docs = stored(tmp_path / "data")
    assert {p: t for p, (t, _) in docs.items()} == {
        "a.py": "A = 1\n",
        "b.py": "B = 1\n",
        "c.py": "C = 1\n",
    }
    # Every document now names a commit that is on the branch.
    assert {m["commit"] for _, m in docs.values()} == {rewritten}


def test_a_submodule_is_not_followed(upstream: Upstream, tmp_path: Path) -> None:
    inner = Upstream(tmp_path / "inner")
    inner.write({"inner_secret.py": f"SECRET = '{CANARY}'\n"})
    inner.commit()
    upstream.write({"main.py": "MAIN = 1\n"})
    git(
        upstream.path,
        "-c",
        "protocol.file.allow=always",
        "submodule",
        "add",
        "-q",
        str(inner.path),
        "sub",
    )
    upstream.commit("with a submodule")
    assert (upstream.path / "sub" / "inner_secret.py").exists()  # it really is there upstream

    run = sync(tmp_path / "data", source(upstream))
    assert paths_of(run) == {"main.py"}
    assert run.state["skipped"] == {"submodule": 1}
    clone = tmp_path / "data" / "sources" / "repo" / "repo.git"
    assert not (clone / "modules").exists()
    inner_head = git(inner.path, "rev-parse", "HEAD")
    assert (
        subprocess.run(
            ["git", "--git-dir", str(clone), "cat-file", "-e", inner_head],
            env={**os.environ, **_ENV},
            capture_output=True,
            check=False,
        ).returncode
        != 0
    )


def hook(path: Path, canary: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\necho \"$0\" >> '{canary}'\n")
    path.chmod(0o755)


def test_hooks_never_run(upstream: Upstream, tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    for name in ("post-checkout", "post-merge", "post-update", "pre-upload-pack"):
        hook(upstream.path / ".git" / "hooks" / name, canary)
    upstream.write({"a.py": "A = 1\n"})
    upstream.commit()
    config = source(upstream)
    sync(tmp_path / "data", config)

    # Hooks planted in our own clone, as an attacker with a foothold might: a fetch updates
    # refs (reference-transaction) and may gc (pre-auto-gc); a checkout would run post-checkout.
    clone = tmp_path / "data" / "sources" / "repo" / "repo.git"
    for name in ("reference-transaction", "post-checkout", "post-merge", "pre-auto-gc"):
        hook(clone / "hooks" / name, canary)
    upstream.write({"b.py": "B = 1\n"})
    upstream.commit()
    assert paths_of(sync(tmp_path / "data", config)) == {"b.py"}
    assert not canary.exists()

    # The control: plain git in that clone does run the planted hook.
    git(clone, "update-ref", "refs/heads/control", "HEAD")
    assert "reference-transaction" in canary.read_text()


def test_an_oversized_file_stays_on_the_server(upstream: Upstream, tmp_path: Path) -> None:
    upstream.write({"small.py": "S = 1\n", "big.py": ("# " + "x" * 60 + "\n") * 2000})
    upstream.commit()
    config = source(upstream, max_file_bytes=50_000)
    run = sync(tmp_path / "data", config)
    assert paths_of(run) == {"small.py"}
    assert run.state["skipped"] == {"too_large": 1}
    clone = tmp_path / "data" / "sources" / "repo" / "repo.git"
    big = git(upstream.path, "rev-parse", "HEAD:big.py")
    missing = subprocess.run(
        ["git", "--git-dir", str(clone), "cat-file", "-e", big],
        env={**os.environ, **_ENV, "GIT_NO_LAZY_FETCH": "1"},
        capture_output=True,
        check=False,
    )
    assert missing.returncode != 0  # the clone's blob filter left it upstream

    # A file that grows past the cap later loses its document.
    upstream.write({"small.py": "S = 1\n" + "# padding line\n" * 5000})
    upstream.commit()
    run = sync(tmp_path / "data", config)
    assert run.puts == [] and run.counts["retired"] == 1
    assert stored(tmp_path / "data") == {}


def test_a_lost_clone_is_made_again_and_a_lost_remote_retires_nothing(
    upstream: Upstream, tmp_path: Path
) -> None:
    upstream.write({"a.py": "A = 1\n", "b.py": "B = 1\n"})
    upstream.commit()
    config = source(upstream)
    sync(tmp_path / "data", config)
    clone = tmp_path / "data" / "sources" / "repo" / "repo.git"
    shutil.rmtree(clone)
    upstream.write({"b.py": "B = 2\n"})
    upstream.commit()
    run = sync(tmp_path / "data", config)  # cloned afresh; the old commit is still an ancestor
    assert run.state["listed"] == "changes" and paths_of(run) == {"b.py"}

    shutil.rmtree(upstream.path)
    with pytest.raises(SourceError, match=r"git fetch: fatal: .*does not appear to be a git"):
        sync(tmp_path / "data", config)
    assert set(stored(tmp_path / "data")) == {"a.py", "b.py"}


def test_a_new_url_for_the_same_repository_moves_every_document(
    upstream: Upstream, tmp_path: Path
) -> None:
    upstream.write({"a.py": "A = 1\n", "b.py": "B = 1\n"})
    upstream.commit()
    sync(tmp_path / "data", source(upstream))
    mirror = tmp_path / "mirror.git"
    git(tmp_path, "clone", "-q", "--bare", str(upstream.path), str(mirror))
    run = sync(tmp_path / "data", source(upstream, url=f"file://{mirror}"))
    assert run.state["listed"] == "full" and paths_of(run) == {"a.py", "b.py"}
    assert run.counts["retired"] == 2
    assert {m["repo"] for _, m in stored(tmp_path / "data").values()} == {f"file://{mirror}"}


def test_a_changed_licence_relists_every_file(upstream: Upstream, tmp_path: Path) -> None:
    upstream.write({"LICENSE": MIT, "a.py": "A = 1\n", "b.py": "B = 1\n"})
    upstream.commit()
    config = source(upstream)
    sync(tmp_path / "data", config)
    upstream.write({"LICENSE": APACHE})
    upstream.commit("relicensed")
    run = sync(tmp_path / "data", config)
    assert run.state["listed"] == "full" and paths_of(run) == {"a.py", "b.py"}
    assert counts(run)["unchanged"] == 2  # same text, new provenance
    assert {m["licence"] for _, m in stored(tmp_path / "data").values()} == {"Apache-2.0"}


def test_include_exclude_and_gitattributes(upstream: Upstream, tmp_path: Path) -> None:
    upstream.write(
        {
            ".gitattributes": "gen/** linguist-generated\nvendor/ours/** -linguist-vendored\n",
            "src/a.py": "A = 1\n",
            "src/a.md": "# notes\n",
            "gen/out.py": "OUT = 1\n",
            "vendor/ours/mine.py": "MINE = 1\n",
            "vendor/theirs/dep.py": "DEP = 1\n",
            "tests/test_a.py": "def test(): pass\n",
        }
    )
    upstream.commit()
    config = source(upstream, include=["**/*.py", "**/*.md"], exclude=["tests/"])
    run = sync(tmp_path / "data", config)
    assert paths_of(run) == {"src/a.py", "src/a.md", "vendor/ours/mine.py"}
    assert run.state["skipped"] == {"generated": 1, "vendored": 1, "excluded": 1}
    kinds = {p: m for p, (_, m) in stored(tmp_path / "data").items()}
    assert set(kinds) == {"src/a.py", "src/a.md", "vendor/ours/mine.py"}

    # A new rule lists everything again; the files it now leaves out are retired.
    run = sync(tmp_path / "data", {**config, "include": ["**/*.py"]})
    assert run.state["listed"] == "full" and run.counts["retired"] == 1
    assert set(stored(tmp_path / "data")) == {"src/a.py", "vendor/ours/mine.py"}


def test_another_branch(upstream: Upstream, tmp_path: Path) -> None:
    upstream.write({"main.py": "M = 1\n"})
    upstream.commit()
    git(upstream.path, "checkout", "-q", "-b", "dev")
    upstream.write({"dev.py": "D = 1\n"})
    upstream.commit()
    git(upstream.path, "checkout", "-q", "main")
    run = sync(tmp_path / "data", source(upstream, branch="dev"))
    assert paths_of(run) == {"main.py", "dev.py"}
    assert run.state["branch"] == "dev"


def test_paths_that_are_not_utf8_are_named_losslessly(upstream: Upstream, tmp_path: Path) -> None:
    """Git paths are bytes: one that is not UTF-8 must not fail the source, and its document's
    uri names it exactly (bytes that are not UTF-8 as %XX, "%" as %25)."""
    files = {
        b"caf\xe9.py": "CAFE = 1\n",  # Latin-1 é
        b"lib\xff/mod.py": "MOD = 2\n",  # a folder whose name is not UTF-8
        b"100%.py": "PERCENT = 3\n",
        "naïve.py".encode(): "NAIVE = 4\n",  # UTF-8: as it is
    }
    upstream.write({os.fsdecode(name): text for name, text in files.items()})
    upstream.commit("odd names")
    config = source(upstream)

    run = sync(tmp_path / "data", config)
    assert run.errors == [] and counts(run)["added"] == 4
    docs = stored(tmp_path / "data")
    assert set(docs) == {"caf%E9.py", "lib%FF/mod.py", "100%25.py", "naïve.py"}
    for named, (text, meta) in docs.items():
        assert meta["path"] == named
        assert text == files[urllib.parse.unquote_to_bytes(named)]

    upstream.write({os.fsdecode(b"caf\xe9.py"): "CAFE = 10\n"})
    upstream.remove(os.fsdecode(b"lib\xff/mod.py"))
    upstream.commit("change and delete")
    run = sync(tmp_path / "data", config)
    assert paths_of(run) == {"caf%E9.py"}  # only the changed file was read
    assert counts(run) == {"added": 0, "updated": 1, "unchanged": 2, "retired": 1, "failed": 0}
    assert {p: t for p, (t, _) in stored(tmp_path / "data").items()} == {
        "caf%E9.py": "CAFE = 10\n",
        "100%25.py": "PERCENT = 3\n",
        "naïve.py": "NAIVE = 4\n",
    }


def test_bad_urls_fail_with_gits_message(upstream: Upstream, tmp_path: Path) -> None:
    with pytest.raises(
        SourceError, match=r"git clone: fatal: .*nowhere' does not appear to be a git"
    ):
        sync(tmp_path / "data", source(upstream, url=str(tmp_path / "nowhere")))
    upstream.write({"a.py": "A = 1\n"})
    upstream.commit()
    with pytest.raises(SourceError, match="Remote branch nope not found"):
        sync(tmp_path / "data", source(upstream, branch="nope"))
    with pytest.raises(SourceError, match="protocol file not allowed"):
        sync(tmp_path / "data", source(upstream, protocols=["https"]))
    with pytest.raises(SourceError, match="transport helpers"):
        sync(tmp_path / "data", source(upstream, url="ext::sh -c touch% /tmp/pwned"))
    with pytest.raises(SourceError, match="unknown protocol"):
        sync(tmp_path / "data", source(upstream, url="gopher://example.invalid/x"))
    with pytest.raises(SourceError, match="protocol http not allowed"):
        sync(tmp_path / "data", source(upstream, url="http://127.0.0.1:9/x.git"))


def test_git_itself_refuses_protocols_not_allowed(upstream: Upstream, tmp_path: Path) -> None:
    """Behind our own check, git's protocol.allow settings refuse the transport too."""
    upstream.write({"a.py": "A = 1\n"})
    upstream.commit()
    with pytest.raises(SourceError, match="transport 'file' not allowed"):
        GitRepo.clone(
            f"file://{upstream.path}",
            tmp_path / "clone.git",
            branch=None,
            max_blob_bytes=2**20,
            protocols=["https"],
            timeout=30,
        )
    assert not (tmp_path / "clone.git").exists()


def test_git_urls_are_classified() -> None:
    token = remote_of("https://user:tok3n@example.invalid/org/repo.git")
    assert (token.protocol, token.display) == ("https", "https://example.invalid/org/repo.git")
    assert token.url == "https://user:tok3n@example.invalid/org/repo.git"
    assert remote_of("git@example.invalid:org/repo.git").protocol == "ssh"
    assert remote_of("ssh://git@example.invalid/org/repo").protocol == "ssh"
    assert remote_of("git://example.invalid/repo").protocol == "git"
    local = remote_of("/srv/repos/x")
    assert (local.protocol, local.url, local.display) == (
        "file",
        "file:///srv/repos/x",
        "/srv/repos/x",
    )
    assert remote_of("file:///srv/repos/x").protocol == "file"
    for bad in ("--upload-pack=touch /tmp/x", "ext::sh -c id", "fd::3"):
        with pytest.raises(SourceError):
            remote_of(bad)


def test_through_the_daemon(upstream: Upstream, make_daemon: Callable[..., DaemonProc]) -> None:
    upstream.write({"LICENSE": MIT, "a.py": "A = 1\n", "b.py": "B = 1\n"})
    upstream.commit()
    d = make_daemon(sources=[{**source(upstream), "enabled": False}]).start()

    def fetch_job() -> dict[str, Any]:
        body = {"kind": "source.fetch", "params": {"source": "repo", "force": True}}
        resp = d.client.post("/v1/jobs", json=body)
        assert resp.status_code == 201, resp.text
        job_id = resp.json()["id"]

        def finished() -> dict[str, Any] | None:
            job: dict[str, Any] = d.get(f"/v1/jobs/{job_id}").json()
            return job if job["state"] in ("succeeded", "failed") else None

        job = wait_for(finished, timeout=60)
        assert job["state"] == "succeeded", job
        return job

    first = fetch_job()["result"]
    assert (first["outcome"], first["added"]) == ("succeeded", 2)
    upstream.write({"b.py": "B = 2\n", "c.py": "C = 1\n"})
    upstream.remove("a.py")
    upstream.commit()
    second = fetch_job()["result"]
    assert {k: second.get(k, 0) for k in ("added", "updated", "unchanged", "retired")} == {
        "added": 1,
        "updated": 1,
        "unchanged": 0,
        "retired": 1,
    }
    status = d.status()
    assert status["documents"]["by_source"]["git:repo"] == 2
    repo = next(s for s in status["sources"] if s["name"] == "repo")
    assert (repo["outcome"], repo["added"], repo["updated"], repo["retired"]) == (
        "succeeded",
        1,
        1,
        1,
    )
