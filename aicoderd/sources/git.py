"""Source type ``git``: the files of one branch of a repository, kept in step commit by commit.

The first run clones (bare, partial: see :mod:`aicoderd.sources.gitrepo`) into the source's
cache folder and reads every file the rules select. Later runs fetch, then read only the paths
that ``git diff-tree`` says changed since the commit of the last complete run; deleted paths
retire their documents and every other stored path is kept as it is. A force-push (the old
commit is no longer an ancestor, or is gone), a change of the rules, of ``.gitattributes`` or
of the repository's licence lists the whole new tree instead, so every document's provenance
names a commit on the branch.

A file is decoded and classified exactly as a dropped file is (:mod:`aicoderd.sources.extract`);
which files count is :mod:`aicoderd.sources.repofiles`; the licence is
:mod:`aicoderd.sources.licences`. Documents are ``<repo url>@<path>``, stable across commits,
the path written by :func:`aicoderd.sources.pathnames.uri_path`.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aicoderd.config import GitSource
from aicoderd.errors import IngestRefused, SourceError
from aicoderd.sources import licences
from aicoderd.sources.base import FetchedDocument, SourceRun
from aicoderd.sources.extract import extract
from aicoderd.sources.extract_limits import ExtractLimits
from aicoderd.sources.gitrepo import MODE_NAMES, REGULAR_MODES, Entry, GitRepo
from aicoderd.sources.kinds import ARCHIVE, HEAD_BYTES, kind_of
from aicoderd.sources.pathnames import uri_path
from aicoderd.sources.repofiles import Rules, text_skip

# Bump when the built-in file rules (or how a path is named in a uri) change: the next run then
# lists the whole tree again. 2: paths in uris escape "%" and bytes that are not UTF-8.
RULES_VERSION = 2
CLONE_DIR = "repo.git"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_SCP_LIKE = re.compile(r"^(?:[^@/:]+@)?[^/:]+:(?!//)")  # user@host:path, as git reads it
_PROTOCOLS = {"https": "https", "ssh": "ssh", "git+ssh": "ssh", "ssh+git": "ssh", "git": "git"}
_PROTOCOLS |= {"file": "file", "http": "http", "ftp": "ftp", "ftps": "ftps"}


@dataclass(frozen=True)
class Remote:
    url: str  # what git is given
    display: str  # the URL without credentials: provenance and the documents' uri prefix
    protocol: str


def remote_of(url: str) -> Remote:
    """Classify a git URL; refuses what git would run a program for (``ext::``, options)."""
    url = url.strip()
    if url.startswith("-") or "::" in url.split("/", 1)[0]:
        raise SourceError(f"git URL {url!r}: transport helpers and options are not allowed")
    scheme = _SCHEME.match(url)
    if scheme:
        protocol = _PROTOCOLS.get(scheme.group(1).lower())
        if protocol is None:
            raise SourceError(f"git URL {url!r}: unknown protocol {scheme.group(1)!r}")
        display = re.sub(r"^(https?://)[^/@]*@", r"\1", url) if protocol.startswith("http") else url
        return Remote(url, display, protocol)
    if _SCP_LIKE.match(url):
        return Remote(url, url, "ssh")
    path = Path(url).expanduser().absolute()
    return Remote(f"file://{path}", str(path), "file")


def fetch(run: SourceRun) -> None:
    config = run.config
    if not isinstance(config, GitSource):
        raise SourceError(f"source {run.name} is not a git source")
    remote = remote_of(config.url)
    if remote.protocol not in config.protocols:
        allowed = ", ".join(config.protocols)
        raise SourceError(
            f"git URL {remote.display}: protocol {remote.protocol} not allowed ({allowed})"
        )
    repo, branch = _clone_or_fetch(run, config, remote)
    commit = repo.commit_of(f"refs/heads/{branch}")
    if commit is None:
        raise SourceError(f"git: branch {branch} has no commit in {remote.display}")
    context = _context(repo, commit, config)
    sync = _Sync(run, repo, remote, context, commit, branch, _limits(run, config))
    old = run.state.get("commit")
    why_full = _why_full(repo, run.state, remote, old, commit, context)
    if why_full is None:
        assert isinstance(old, str)
        sync.changes(old)
    else:
        run.progress(message=f"listing the whole tree: {why_full}", force=True)
        sync.everything()
    run.state["skipped"] = dict(sync.skipped)
    if run.complete and not run.cancelled:
        run.state.update(
            url=remote.display,  # never the credentials an https URL may carry
            branch=branch,
            commit=commit,
            signature=context.signature,
            licence=context.licence,
            listed="full" if why_full else "changes",
        )


def _clone_or_fetch(run: SourceRun, config: GitSource, remote: Remote) -> tuple[GitRepo, str]:
    path = run.cache_dir / CLONE_DIR
    repo = GitRepo(path, config.protocols, config.timeout_seconds)
    branch = run.state.get("branch")
    reuse = (
        path.is_dir()
        and run.state.get("url") == remote.display
        and isinstance(branch, str)
        and config.branch in (None, branch)
        and repo.remote_url() == remote.url
    )
    if reuse:
        assert isinstance(branch, str)
        run.progress(message=f"fetching {remote.display} {branch}", force=True)
        repo.fetch(branch)
        return repo, branch
    run.progress(message=f"cloning {remote.display}", force=True)
    repo = GitRepo.clone(
        remote.url,
        path,
        branch=config.branch,
        max_blob_bytes=int(config.max_file_bytes),
        protocols=config.protocols,
        timeout=config.timeout_seconds,
    )
    return repo, config.branch or repo.current_branch()


def _why_full(
    repo: GitRepo, state: dict[str, Any], remote: Remote, old: Any, new: str, context: _Context
) -> str | None:
    """Why this run must list the whole tree; None when the changes since ``old`` suffice."""
    if not isinstance(old, str):
        return "first run"
    if state.get("url") != remote.display:
        return "the URL changed"  # every document's uri changes with it
    if state.get("signature") != context.signature:
        return "the rules, .gitattributes or the licence changed"
    if repo.commit_of(old) != old:
        return f"the last commit read, {old[:12]}, is gone"
    if old != new and not repo.is_ancestor(old, new):
        return f"force-push: {old[:12]} is no longer an ancestor of {new[:12]}"
    return None


# -- what applies to the whole repository -------------------------------------------------------


@dataclass(frozen=True)
class _Context:
    rules: Rules
    licence: str | None
    signature: str  # changes whenever a stored document's text or meta could


def _context(repo: GitRepo, commit: str, config: GitSource) -> _Context:
    top = {e.path: e for e in repo.tree(commit, recursive=False) if e.mode in REGULAR_MODES}
    names = [p for p in top if licences.LICENCE_FILE.match(p)]
    names += [p for p in (".gitattributes", "pyproject.toml") if p in top]
    texts = _small_texts(repo, commit, [top[n] for n in names])
    found = [texts[n] for n in names if licences.LICENCE_FILE.match(n) and n in texts]
    ids = [i for text in found if (i := licences.from_licence_text(text))]
    licence = licences.combine(ids) or _pyproject_licence(texts.get("pyproject.toml"))
    attributes = texts.get(".gitattributes", "")
    rules = Rules.build(config.include, config.exclude, attributes)
    key = [RULES_VERSION, config.include, config.exclude, int(config.max_file_bytes)]
    key += [hashlib.sha256(attributes.encode()).hexdigest(), licence]
    signature = hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]
    return _Context(rules, licence, signature)


def _small_texts(repo: GitRepo, commit: str, entries: list[Entry]) -> dict[str, str]:
    missing = repo.missing(commit) if entries else set()
    present = [e for e in entries if e.sha not in missing]
    sizes = repo.sizes([e.sha for e in present])
    blobs = [(e.sha, sizes[e.sha]) for e in present if sizes[e.sha] <= licences.MAX_LICENCE_CHARS]
    data = dict(repo.read(blobs))
    return {e.path: data[e.sha].decode("utf-8", "replace") for e in present if e.sha in data}


def _pyproject_licence(text: str | None) -> str | None:
    """``[project] license = "MIT"`` (PEP 639) or ``license = {text = "MIT"}``."""
    if not text:
        return None
    try:
        value = tomllib.loads(text).get("project", {}).get("license")
    except (tomllib.TOMLDecodeError, AttributeError):
        return None
    if isinstance(value, dict):
        value = value.get("text")
    return licences.normalise(value) if isinstance(value, str) and len(value) < 200 else None


def _limits(run: SourceRun, config: GitSource) -> ExtractLimits:
    return ExtractLimits.from_config(run.settings.ingest, int(config.max_file_bytes))


# -- reading files ------------------------------------------------------------------------------


class _Sync:
    """Reads the selected files of one commit into the run."""

    def __init__(
        self,
        run: SourceRun,
        repo: GitRepo,
        remote: Remote,
        context: _Context,
        commit: str,
        branch: str,
        limits: ExtractLimits,
    ) -> None:
        self.run = run
        self.repo = repo
        self.remote = remote
        self.context = context
        self.commit = commit
        self.branch = branch
        self.limits = limits
        self.skipped: Counter[str] = Counter()

    def uri(self, path: str) -> str:
        return f"{self.remote.display}@{uri_path(path)}"

    def everything(self) -> None:
        """Every file of the tree; what is not read again is retired by ``run.finish``."""
        self.read(self.repo.tree(self.commit))

    def changes(self, old: str) -> None:
        """Only what changed since ``old``; every other stored file is kept as it is."""
        changed = self.repo.changes(old, self.commit) if old != self.commit else []
        touched = {self.uri(c.path) for c in changed}
        for uri in self.run.store.documents.file_locations(self.run.key):
            if uri not in touched:
                self.run.keep(uri)
        self.run.retire(self.uri(c.path) for c in changed if c.status == "D")
        self.read([c for c in changed if c.status != "D"])

    def read(self, entries: list[Entry]) -> None:
        wanted = self._select(entries)
        sizes = self.repo.sizes(sorted({e.sha for e in wanted}))
        by_sha: dict[str, list[Entry]] = defaultdict(list)
        for entry in wanted:
            if sizes[entry.sha] > self.limits.max_file_bytes:
                self._skip("too_large")
            else:
                by_sha[entry.sha].append(entry)
        total = sum(len(v) for v in by_sha.values())
        done = 0
        for sha, data in self.repo.read([(sha, sizes[sha]) for sha in by_sha]):
            if self.run.cancelled:
                self.run.complete = False
                return
            for entry in by_sha[sha]:  # the same content at several paths is read once
                self._ingest(entry, data)
                done += 1
            self.run.progress(step="read", done=done, total=total)

    def _select(self, entries: list[Entry]) -> list[Entry]:
        missing = self.repo.missing(self.commit) if entries else set()
        wanted = []
        for entry in entries:
            reason = (
                MODE_NAMES.get(entry.mode, "special") if entry.mode not in REGULAR_MODES else None
            )
            reason = reason or self.context.rules.path_skip(entry.path)
            if reason is None and entry.sha in missing:
                reason = "too_large"  # the clone's size filter left it on the server
            if reason is None:
                wanted.append(entry)
            elif reason != "not_included":
                self._skip(reason)
        return wanted

    def _ingest(self, entry: Entry, data: bytes) -> None:
        if kind_of(entry.path, data[:HEAD_BYTES])[0] == ARCHIVE:
            self._skip("archive")
            return
        try:
            (doc,) = extract(data, entry.path, self.limits)
        except IngestRefused as exc:
            self._skip(exc.reason)
            return
        reason = text_skip(doc.text)
        if reason is not None:
            self._skip(reason)
            return
        own = licences.from_header(doc.text)
        meta = {
            "repo": self.remote.display,
            "branch": self.branch,
            "commit": self.commit,
            "path": uri_path(entry.path),
            "blob": entry.sha,
            "licence": own or self.context.licence,
            "licence_from": "header" if own else "repository" if self.context.licence else None,
        }
        uri = self.uri(entry.path)
        self.run.put(FetchedDocument(uri, doc.text, doc.kind, doc.language, meta))

    def _skip(self, reason: str) -> None:
        self.skipped[reason] += 1
        self.run.counts["skipped"] += 1
