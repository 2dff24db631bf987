"""A bare, partial clone of someone else's repository, read with git plumbing only.

The threat model is gitsecurityboundary(7): cloning an untrusted repository and reading it with
git commands is safe; its hooks, config and work tree are not. So the clone is bare (no work
tree: symlinks are never made, filters never run), hooks point at /dev/null, submodules are
never followed, only the configured protocols are allowed, nothing prompts, the user's and the
system's git config are ignored, and blobs over the size cap stay on the server
(``--filter=blob:limit``) and are never fetched lazily afterwards. Every command runs through
:mod:`aicoderd.execute` with a timeout.

Paths (and ref names) are bytes to git, not necessarily UTF-8: every output is read as bytes
(NUL-separated where it holds paths) and decoded with ``surrogateescape``, which keeps each
byte that is not UTF-8 as a lone surrogate, so the name is exact (``os.fsencode`` gives the
bytes back) and one odd name never fails the whole source.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from aicoderd import execute
from aicoderd.errors import SourceError
from aicoderd.execute import CommandError

# Changes to the daemon's environment for every git command: no prompts, no user or system
# config, no lazy fetch of filtered blobs, and nothing inherited that points git elsewhere.
_ENV: dict[str, str | None] = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_NO_LAZY_FETCH": "1",
    "GIT_ASKPASS": None,
    "SSH_ASKPASS": None,
    "LC_ALL": "C",
    **dict.fromkeys(
        (
            "GIT_DIR",
            "GIT_WORK_TREE",
            "GIT_INDEX_FILE",
            "GIT_OBJECT_DIRECTORY",
            "GIT_ALTERNATE_OBJECT_DIRECTORIES",
            "GIT_CONFIG",
            "GIT_CONFIG_PARAMETERS",
            "GIT_CONFIG_COUNT",
            "GIT_NAMESPACE",
            "GIT_TEMPLATE_DIR",
            "GIT_EXTERNAL_DIFF",
        )
    ),
}
# Given on every command line, so they win over anything in the clone's own config.
_SAFE_CONFIG = (
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "core.sshCommand=ssh -o BatchMode=yes",
    "credential.helper=",
    "transfer.fsckObjects=true",
    "fetch.recurseSubmodules=false",
    "submodule.recurse=false",
    "gc.autoDetach=false",  # an automatic gc stays inside our timeout, not behind our back
    "protocol.allow=never",
)

REGULAR_MODES = ("100644", "100755")
MODE_NAMES = {"120000": "symlink", "160000": "submodule", "040000": "directory"}
_BATCH_BYTES = 64 * 2**20  # blob bytes read per cat-file call
_SHA = re.compile(r"^[0-9a-f]{40}(?:[0-9a-f]{24})?$")


@dataclass(frozen=True)
class Entry:
    """One file of a tree, or one changed path of a diff (``status`` "D": deleted)."""

    path: str
    mode: str
    sha: str
    status: str = "A"


class GitRepo:
    def __init__(self, path: Path, protocols: Sequence[str], timeout: float) -> None:
        self.path = path
        self.protocols = list(protocols)
        self.timeout = timeout

    # -- setting up --------------------------------------------------------------------------

    @classmethod
    def clone(
        cls,
        url: str,
        path: Path,
        *,
        branch: str | None,
        max_blob_bytes: int,
        protocols: Sequence[str],
        timeout: float,
    ) -> GitRepo:
        """A fresh clone at ``path`` (whatever was there is removed), made beside it first."""
        repo = cls(path, protocols, timeout)
        tmp = path.with_name(path.name + ".new")
        shutil.rmtree(tmp, ignore_errors=True)
        args = ["clone", "--bare", "--template=", "--no-tags", "--single-branch"]
        args += [f"--filter=blob:limit={max_blob_bytes}"]
        if branch:
            args += ["--branch", branch]
        try:
            repo._run(*args, "--", url, str(tmp), git_dir=False)
        except SourceError:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        shutil.rmtree(path, ignore_errors=True)
        tmp.rename(path)
        return repo

    def fetch(self, branch: str) -> None:
        ref = f"refs/heads/{branch}"
        self._run("fetch", "--no-tags", "--no-recurse-submodules", "origin", f"+{ref}:{ref}")

    def current_branch(self) -> str:
        """The branch the clone was made from (the remote's default when none was named)."""
        return self._text("symbolic-ref", "HEAD").removeprefix("refs/heads/")

    def remote_url(self) -> str | None:
        try:
            return self._text("config", "--get", "remote.origin.url") or None
        except SourceError:
            return None

    # -- reading -----------------------------------------------------------------------------

    def commit_of(self, rev: str) -> str | None:
        try:
            sha = self._text("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
        except SourceError:  # no such commit (exit 1)
            return None
        return sha if _SHA.match(sha) else None

    def is_ancestor(self, old: str, new: str) -> bool:
        try:
            self._run("merge-base", "--is-ancestor", old, new)
        except SourceError as exc:
            if isinstance(exc.__cause__, CommandError) and exc.__cause__.returncode == 1:
                return False
            raise
        return True

    def tree(self, commit: str, *, recursive: bool = True) -> list[Entry]:
        """Every entry of ``commit``'s tree (only the top level unless ``recursive``)."""
        args = ["ls-tree", "-z", "--full-tree", *(["-r"] if recursive else []), commit]
        out = self._run(*args)
        entries = []
        for record in out.split(b"\0"):
            if record:
                info, _, path = record.partition(b"\t")
                mode, _type, sha = info.decode().split()
                entries.append(Entry(_path(path), mode, sha))
        return entries

    def changes(self, old: str, new: str) -> list[Entry]:
        """Paths whose content or mode differs between two commits (renames as delete + add)."""
        out = self._run("diff-tree", "-r", "-z", "--no-renames", old, new).split(b"\0")
        changed = []
        for header, path in zip(out[0::2], out[1::2], strict=False):
            _old_mode, mode, _old_sha, sha, status = header.decode().lstrip(":").split()
            changed.append(Entry(_path(path), mode, sha, status[0]))
        return changed

    def missing(self, commit: str) -> set[str]:
        """Objects of ``commit``'s tree left on the server by the clone's size filter."""
        out = self._run("rev-list", "--objects", "--missing=print", "--no-walk", commit)
        # "<sha> <path>" lines (the path in git's bytes), and "?<sha>" for each missing object
        return {line[1:].decode() for line in out.splitlines() if line.startswith(b"?")}

    def sizes(self, shas: Sequence[str]) -> dict[str, int]:
        """Size of each (present) object."""
        if not shas:
            return {}
        out = self._run("cat-file", "--batch-check", input="\n".join(shas) + "\n")
        sizes = {}
        for line in out.decode().splitlines():
            sha, _type, size = line.split()
            sizes[sha] = int(size)
        return sizes

    def read(self, blobs: Sequence[tuple[str, int]]) -> Iterator[tuple[str, bytes]]:
        """``(sha, content)`` of each (present) blob of ``(sha, size)``, a batch per call."""
        batch: list[str] = []
        total = 0
        for sha, size in blobs:
            if batch and total + size > _BATCH_BYTES:
                yield from self._read_batch(batch)
                batch, total = [], 0
            batch.append(sha)
            total += size
        if batch:
            yield from self._read_batch(batch)

    def _read_batch(self, shas: list[str]) -> Iterator[tuple[str, bytes]]:
        out = self._run("cat-file", "--batch", input="\n".join(shas) + "\n")
        pos = 0
        for _ in shas:
            end = out.index(b"\n", pos)
            sha, _type, size = out[pos:end].decode().split()
            start = end + 1
            yield sha, out[start : start + int(size)]
            pos = start + int(size) + 1  # the content is followed by a newline

    # -- running git -------------------------------------------------------------------------

    def _command(self, args: Sequence[str], git_dir: bool) -> list[str]:
        config = [*_SAFE_CONFIG, *(f"protocol.{p}.allow=always" for p in self.protocols)]
        cmd = ["git", *(arg for c in config for arg in ("-c", c))]
        if git_dir:
            cmd += ["--git-dir", str(self.path)]
        return [*cmd, *args]

    def _env(self) -> dict[str, str | None]:
        # GIT_ALLOW_PROTOCOL overrides protocol.*.allow, also for remote helpers' transports.
        return {**_ENV, "GIT_ALLOW_PROTOCOL": ":".join(self.protocols)}

    def _run(self, *args: str, git_dir: bool = True, input: str = "") -> bytes:
        """git's standard output, as bytes."""
        try:
            return execute.run_bytes(
                self._command(args, git_dir),
                input=input.encode(),
                timeout=self.timeout,
                env=self._env(),
            )
        except CommandError as exc:
            raise _error(args[0], exc) from exc

    def _text(self, *args: str) -> str:
        """A one-line answer (a ref, a sha, a URL), its bytes kept exactly (see above)."""
        return _path(self._run(*args).strip())


def _error(command: str, exc: CommandError) -> SourceError:
    """git's own complaint ("fatal: ..." lines), without its progress chatter."""
    lines = [line for line in exc.output.splitlines() if line.startswith(("fatal:", "error:"))]
    return SourceError(f"git {command}: {' '.join(lines) or exc.output or exc}")


def _path(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")
