"""Repositories of the local Hub, stored as real bare git repositories.

Commit ids are real commit shas and blob oids real git blob sha1s, so the
clients' caching and unchanged-file detection behave exactly as on the Hub.
LFS files are stored in git as LFS pointer files; their content lives in the
content-addressed store of `lfs.py`.

Writes to one repository are serialized by an `flock` on a file in it (so two
server processes on one root are safe too), and a branch moves only by git's
atomic ref update after every object of the commit is written: a process
killed at any point leaves each branch at a commit it had acknowledged.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pygit2
from pygit2.enums import AttrCheck, FileMode, ObjectType, SortMode

from hubtools.hub.errors import (
    HubHTTPError,
    bad_request,
    conflict,
    entry_not_found,
    revision_not_found,
)

log = logging.getLogger("hubtools.hub")

REPO_TYPES = ("model", "dataset", "space")
URL_PREFIXES = {"model": "", "dataset": "datasets/", "space": "spaces/"}
LFS_POINTER_PREFIX = b"version https://git-lfs.github.com/spec/v1\n"
_NAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?$")
_RESERVED_NAMESPACES = {"api", "datasets", "spaces", "models", "lfs", "settings", "docs", "new"}
_SHA_RE = re.compile(r"^[0-9a-f]{40}$")

# The .gitattributes every new repo starts with, as on the Hub.
_LFS_EXTENSIONS = (
    "7z arrow bin bz2 ckpt ftz gz h5 joblib lfs.* lz4 mds mlmodel model msgpack npy npz onnx "
    "ot parquet pb pickle pkl pt pth rar safetensors tar.* tar tflite tgz wasm xz zip zst"
).split()
_DATASET_MEDIA = "mp3 ogg flac wav jpg jpeg png webp gif bmp tiff mp4 avi mov mkv".split()


def default_gitattributes(repo_type: str) -> bytes:
    exts = _LFS_EXTENSIONS + (_DATASET_MEDIA if repo_type == "dataset" else [])
    lines = [f"*.{ext} filter=lfs diff=lfs merge=lfs -text" for ext in exts]
    lines += [
        "saved_model/**/* filter=lfs diff=lfs merge=lfs -text",
        "*tfevents* filter=lfs diff=lfs merge=lfs -text",
    ]
    return ("\n".join(lines) + "\n").encode()


def iso(ts: float) -> str:
    """Hub-style timestamps: milliseconds and a `Z` (the client rejects `+00:00`)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def valid_name(value: str) -> bool:
    """A namespace or repo name the Hub accepts; never a path that leaves its directory."""
    if not isinstance(value, str) or not _NAME_RE.match(value):
        return False
    return "--" not in value and ".." not in value and not value.endswith(".git")


def check_name(value: str, what: str) -> str:
    if not valid_name(value):
        raise bad_request(
            f"Invalid {what} '{value}': use letters, digits, '-', '_' or '.', start and end "
            "with a letter or digit, no '--' or '..', at most 96 characters"
        )
    return value


def check_path(path: str) -> str:
    """A repo-relative file path the Hub would accept; refuses traversal and .git."""
    if not isinstance(path, str) or not path or path.startswith("/") or "\x00" in path:
        raise bad_request(f"Invalid path {path!r}: paths are relative, non-empty, without NUL")
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts) or "\\" in path:
        raise bad_request(f"Invalid path {path!r}: no '.', '..', empty or backslash components")
    if parts[0] == ".git" or any(p == ".git" for p in parts):
        raise bad_request(f"Invalid path {path!r}: '.git' is reserved")
    return path


@dataclass(frozen=True, slots=True)
class RepoRef:
    type: str
    namespace: str
    name: str

    @property
    def repo_id(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def key(self) -> str:
        """`type/namespace/name`: how upload links name their repo."""
        return f"{self.type}/{self.repo_id}"

    @classmethod
    def from_key(cls, key: str) -> RepoRef | None:
        parts = key.split("/")
        return cls(*parts) if len(parts) == 3 and parts[0] in REPO_TYPES else None

    @property
    def url_prefix(self) -> str:
        return URL_PREFIXES[self.type]


@dataclass(frozen=True, slots=True)
class LfsPointer:
    oid: str
    size: int
    pointer_size: int


@dataclass(frozen=True, slots=True)
class Entry:
    type: str  # "file" | "directory"
    path: str
    oid: str
    size: int
    lfs: LfsPointer | None = None


@dataclass(frozen=True, slots=True)
class CommitSummary:
    id: str
    title: str
    message: str
    date: str
    author: str


@dataclass(frozen=True, slots=True)
class AddFile:
    path: str
    data: bytes


@dataclass(frozen=True, slots=True)
class AddLfs:
    path: str
    oid: str
    size: int


@dataclass(frozen=True, slots=True)
class Delete:
    path: str
    folder: bool


Operation = AddFile | AddLfs | Delete


def lfs_pointer_bytes(oid: str, size: int) -> bytes:
    return LFS_POINTER_PREFIX + f"oid sha256:{oid}\nsize {size}\n".encode()


def parse_lfs_pointer(data: bytes) -> LfsPointer | None:
    if len(data) > 512 or not data.startswith(LFS_POINTER_PREFIX):
        return None
    fields = dict(
        line.split(" ", 1) for line in data.decode(errors="replace").splitlines() if " " in line
    )
    oid = fields.get("oid", "").removeprefix("sha256:")
    if len(oid) != 64 or not fields.get("size", "").isdigit():
        return None
    return LfsPointer(oid=oid, size=int(fields["size"]), pointer_size=len(data))


def _signature(user: str, when: float | None = None) -> pygit2.Signature:
    return pygit2.Signature(user, f"{user}@users.noreply.hubtools", int(when or time.time()), 0)


class GitStore:
    """All repositories under `root/repos/{type}s/{namespace}/{name}.git`."""

    def __init__(self, root: Path, *, fsync: bool = True):
        self.root = Path(root)
        self.repos_dir = self.root / "repos"
        self.tmp_dir = self.root / "tmp"
        for d in (self.repos_dir, self.tmp_dir):
            d.mkdir(parents=True, exist_ok=True)
        # Objects and refs reach the disk before a commit is acknowledged.
        pygit2.option(pygit2.enums.Option.ENABLE_FSYNC_GITDIR, 1 if fsync else 0)

    def path(self, ref: RepoRef) -> Path:
        return self.repos_dir / f"{ref.type}s" / ref.namespace / f"{ref.name}.git"

    def exists(self, ref: RepoRef) -> bool:
        """Refs from URLs are unchecked: `alice/..%2Fbob%2Fx` must not find `bob/x`."""
        if not (valid_name(ref.namespace) and valid_name(ref.name)):
            return False
        return (self.path(ref) / "HEAD").exists()

    def open(self, ref: RepoRef) -> GitRepo:
        return GitRepo(ref, pygit2.Repository(str(self.path(ref))))

    def create(self, ref: RepoRef, *, private: bool, owner: str, sdk: str | None = None) -> bool:
        """Create the repo with its `.gitattributes` initial commit; False if it exists.

        Built in a temp dir and renamed into place, so a crash never leaves half a repo.
        """
        final = self.path(ref)
        if self.exists(ref):
            return False
        staging = self.tmp_dir / f"new-{uuid.uuid4().hex}.git"
        repo = pygit2.init_repository(str(staging), bare=True, initial_head="main")
        repo.config["hubtools.private"] = "true" if private else "false"
        repo.config["hubtools.createdAt"] = str(time.time())
        if sdk:
            repo.config["hubtools.sdk"] = sdk
        blob = repo.create_blob(default_gitattributes(ref.type))
        builder = repo.TreeBuilder()
        builder.insert(".gitattributes", blob, FileMode.BLOB)
        sig = _signature(owner)
        repo.create_commit("refs/heads/main", sig, sig, "initial commit", builder.write(), [])
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(staging, final)  # atomic; fails if another creator won the race
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
            return False
        return True

    def delete(self, ref: RepoRef) -> None:
        trash = self.tmp_dir / f"deleted-{uuid.uuid4().hex}"
        os.rename(self.path(ref), trash)  # atomic: the repo is gone in one step
        shutil.rmtree(trash, ignore_errors=True)

    def list(self, repo_type: str) -> Iterator[RepoRef]:
        base = self.repos_dir / f"{repo_type}s"
        for ns_dir in sorted(base.glob("*")) if base.exists() else []:
            for repo_dir in sorted(ns_dir.glob("*.git")):
                yield RepoRef(repo_type, ns_dir.name, repo_dir.name.removesuffix(".git"))

    @contextmanager
    def write_lock(self, ref: RepoRef) -> Iterator[None]:
        path = self.path(ref)
        with open(path / "hubtools.lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                _remove_stale_git_locks(path)
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)


class GitRepo:
    """One opened repository: revisions, trees, blobs, refs and commits."""

    def __init__(self, ref: RepoRef, repo: pygit2.Repository):
        self.ref, self.git = ref, repo

    # -- metadata ---------------------------------------------------------------
    def _config(self, key: str) -> str | None:
        return self.git.config[key] if key in self.git.config else None

    @property
    def private(self) -> bool:
        return self._config("hubtools.private") == "true"

    def set_private(self, private: bool) -> None:
        self.git.config["hubtools.private"] = "true" if private else "false"

    @property
    def sdk(self) -> str | None:
        return self._config("hubtools.sdk")

    @property
    def created_at(self) -> str:
        return iso(float(self._config("hubtools.createdAt") or 0))

    # -- revisions --------------------------------------------------------------
    def resolve(self, revision: str) -> str:
        """Commit sha of a branch, tag, `refs/...` name or full commit id."""
        if _SHA_RE.match(revision):
            obj = self.git.get(revision)
            if obj is None or obj.type != ObjectType.COMMIT:
                raise revision_not_found(revision)
            return revision
        if revision.startswith("refs/"):
            candidates = [revision]
        else:
            candidates = [f"refs/heads/{revision}", f"refs/tags/{revision}"]
        for name in candidates:
            ref = self.git.references.get(name)
            if ref is not None:
                return str(ref.peel(pygit2.Commit).id)
        raise revision_not_found(revision)

    def branch_ref(self, revision: str) -> str:
        """The ref name a commit to `revision` moves; only branches and PR refs qualify."""
        name = revision if revision.startswith("refs/") else f"refs/heads/{revision}"
        if not (name.startswith("refs/heads/") or name.startswith("refs/pr/")):
            raise revision_not_found(revision)
        if self.git.references.get(name) is None:
            raise revision_not_found(revision)
        return name

    def commit_time(self, sha: str) -> str:
        return iso(self.git[sha].commit_time)

    # -- trees and blobs --------------------------------------------------------
    def _entry(self, path: str, obj: pygit2.Object) -> Entry:
        if obj.type == ObjectType.TREE:
            return Entry("directory", path, str(obj.id), 0)
        pointer = parse_lfs_pointer(obj.data) if obj.size <= 512 else None
        size = pointer.size if pointer else obj.size
        return Entry("file", path, str(obj.id), size, pointer)

    def _tree_at(self, sha: str, path: str) -> pygit2.Tree:
        tree = self.git[sha].tree
        if not path:
            return tree
        try:
            obj = tree[path]
        except KeyError:
            raise entry_not_found(path, sha) from None
        if obj.type != ObjectType.TREE:
            raise entry_not_found(path, sha)
        return obj

    def list_tree(self, sha: str, path: str = "", recursive: bool = False) -> Iterator[Entry]:
        """Entries under `path`, paths from the repo root; directories included."""
        prefix = f"{path}/" if path else ""
        for obj in self._tree_at(sha, path):
            full = prefix + obj.name
            yield self._entry(full, obj)
            if recursive and obj.type == ObjectType.TREE:
                yield from self.list_tree(sha, full, recursive=True)

    def entry(self, sha: str, path: str) -> Entry | None:
        try:
            obj = self.git[sha].tree[path] if path else self.git[sha].tree
        except KeyError:
            return None
        return self._entry(path, obj)

    def read(self, sha: str, path: str) -> tuple[Entry, bytes]:
        """A file's entry and its git blob bytes (the pointer, for LFS files)."""
        try:
            obj = self.git[sha].tree[path]
        except KeyError:
            raise entry_not_found(path, sha) from None
        if obj.type != ObjectType.BLOB:
            raise entry_not_found(path, sha)
        return self._entry(path, obj), obj.data

    def is_lfs_path(self, sha: str, path: str) -> bool:
        """Git attribute semantics of the `.gitattributes` at that commit."""
        flags = AttrCheck.INCLUDE_COMMIT | AttrCheck.NO_SYSTEM | AttrCheck.INDEX_ONLY
        return self.git.get_attr(path, "filter", flags=flags, commit=sha) == "lfs"

    def last_commit(self, sha: str, path: str) -> CommitSummary:
        """The newest commit that changed `path` (for `expand=true` listings)."""
        previous = None
        for commit in self.git.walk(sha, SortMode.TOPOLOGICAL | SortMode.TIME):
            current = self.entry(str(commit.id), path)
            if previous is not None and (current is None or current.oid != previous[1]):
                return self._summary(previous[0])
            previous = (commit, current.oid if current else None)
        return self._summary(previous[0])

    # -- history ----------------------------------------------------------------
    @staticmethod
    def _summary(commit: pygit2.Commit) -> CommitSummary:
        message = commit.message
        return CommitSummary(
            id=str(commit.id),
            title=message.split("\n", 1)[0],
            message=message,
            date=iso(commit.commit_time),
            author=commit.author.name,
        )

    def log(self, sha: str) -> Iterator[CommitSummary]:
        for commit in self.git.walk(sha, SortMode.TOPOLOGICAL | SortMode.TIME):
            yield self._summary(commit)

    # -- refs -------------------------------------------------------------------
    def refs(self, prefix: str) -> list[tuple[str, str]]:
        out = []
        for name in self.git.references:
            if name.startswith(prefix):
                out.append((name, str(self.git.references[name].peel(pygit2.Commit).id)))
        return sorted(out)

    def create_ref(self, name: str, sha: str, message: str | None = None, user: str = "") -> None:
        if self.git.references.get(name) is not None:
            raise conflict(f"Reference already exists: {name}")
        if name.startswith("refs/tags/") and message:
            tag_name = name.removeprefix("refs/tags/")
            self.git.create_tag(tag_name, sha, ObjectType.COMMIT, _signature(user), message)
        else:
            self.git.references.create(name, sha)

    def delete_ref(self, name: str) -> None:
        ref = self.git.references.get(name)
        if ref is None:
            raise revision_not_found(name.rsplit("/", 1)[-1])
        ref.delete()

    def next_pr_number(self) -> int:
        numbers = [int(n.rsplit("/", 1)[1]) for n, _ in self.refs("refs/pr/")]
        return max(numbers, default=0) + 1

    # -- commits ----------------------------------------------------------------
    def commit(
        self,
        ref_name: str,
        operations: list[Operation],
        message: str,
        user: str,
        parent_commit: str | None = None,
    ) -> str:
        """Commit on top of branch `ref_name` and move it; the caller holds the write lock."""
        head = str(self.git.references[ref_name].target)
        if parent_commit is not None and parent_commit != head:
            raise HubHTTPError(
                412,
                f"A commit has happened since {parent_commit}: the head of the branch is now "
                f"{head}. Pull the latest changes and retry.",
                "PreconditionFailed",
            )
        sha = self.commit_on(head, operations, message, user)
        self.git.references.create(ref_name, sha, force=True)  # atomic lockfile + rename
        return sha

    def commit_on(self, parent: str, operations: list[Operation], message: str, user: str) -> str:
        """Write the commit applying `operations` to `parent`; no ref moves."""
        index = pygit2.Index()
        index.read_tree(self.git[parent].tree)
        files = {entry.path for entry in index}
        dirs = Counter(d for f in files for d in _parents(f))
        for op in operations:
            if isinstance(op, Delete):
                target = op.path.rstrip("/")
                if op.folder:
                    doomed = [f for f in files if f.startswith(target + "/")]
                else:
                    doomed = [target] if target in files else []
                if not doomed:
                    raise entry_not_found(op.path, parent)
                for f in doomed:
                    index.remove(f)
                    files.discard(f)
                    dirs.subtract(_parents(f))
                continue
            if dirs[op.path] > 0:
                raise bad_request(f"Cannot add {op.path}: it is a directory")
            if clash := next((d for d in _parents(op.path) if d in files), None):
                raise bad_request(f"Cannot add {op.path}: {clash} is a file")
            data = op.data if isinstance(op, AddFile) else lfs_pointer_bytes(op.oid, op.size)
            index.add(pygit2.IndexEntry(op.path, self.git.create_blob(data), FileMode.BLOB))
            if op.path not in files:
                files.add(op.path)
                dirs.update(_parents(op.path))
        tree = index.write_tree(self.git)
        sig = _signature(user)
        return str(self.git.create_commit(None, sig, sig, message, tree, [self.git[parent].id]))


def _remove_stale_git_locks(repo: Path) -> None:
    """Drop `*.lock` files a killed writer left behind; the caller holds the write lock.

    git (and libgit2) update a ref by writing `main.lock` and renaming it over `main`;
    a process killed in between leaves the lock, and every later update of that ref
    fails. Every writer of a repo holds our flock, so while we hold it no git lock can
    be live: whatever is there is stale, and the ref it guards was never changed.
    """
    candidates = [repo / "HEAD.lock", repo / "config.lock", repo / "packed-refs.lock"]
    candidates += (repo / "refs").rglob("*.lock")
    for lock in candidates:
        if lock.is_file():
            log.warning("removing stale git lock %s (a writer was killed mid-update)", lock)
            lock.unlink(missing_ok=True)


def _parents(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]
