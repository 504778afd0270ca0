"""What publish reads from and checks on the Hub, with retries on transient failures.

Everything goes through ``huggingface_hub`` and ``datasets``, so the same code serves
huggingface.co and the local Hub.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx2
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from hubtools.errors import PublishError
from hubtools.plural import plural
from hubtools.release.hashing import content_hash

T = TypeVar("T")
TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504}
RETRIES = 5
KEEP = {".gitattributes"}  # repo plumbing the release does not own
_SEMVER = re.compile(r"^v(\d+)\.(\d+)\.(\d+)$")


def is_transient(err: BaseException) -> bool:
    if isinstance(err, HfHubHTTPError) and err.response is not None:
        return err.response.status_code in TRANSIENT_STATUS
    return isinstance(err, httpx2.TransportError | ConnectionError | TimeoutError)


def retry(call: Callable[[], T], what: str, *, tries: int = RETRIES) -> T:
    """``call()``, again with backoff (1, 2, 4, 8 s) while it fails transiently."""
    for n in range(tries):
        try:
            return call()
        except Exception as err:
            if not is_transient(err) or n == tries - 1:
                raise hub_error(err, what) from None
            time.sleep(2**n)
    raise AssertionError("unreachable")


def hub_error(err: BaseException, what: str) -> BaseException:
    """A one-line ``PublishError`` for client errors; anything else unchanged."""
    if isinstance(err, PublishError):
        return err
    if isinstance(err, RepositoryNotFoundError):
        return PublishError(f"{what}: repository not found, or no access with this token")
    if isinstance(err, HfHubHTTPError):
        status = err.response.status_code if err.response is not None else "?"
        message = " ".join(str(err).split())[:300]
        hint = " (check the token: `hf auth login` or HF_TOKEN)" if status in (401, 403) else ""
        return PublishError(f"{what}: HTTP {status}: {message}{hint}")
    if is_transient(err):
        return PublishError(f"{what}: the Hub did not answer ({type(err).__name__}: {err})")
    return err


@dataclass(slots=True)
class RemoteFile:
    size: int
    blob_id: str | None
    sha256: str | None  # set for LFS files


@dataclass(slots=True)
class Snapshot:
    """One revision of the repo: its files and its card."""

    sha: str | None
    files: dict[str, RemoteFile] = field(default_factory=dict)
    readme: str | None = None


@dataclass(slots=True)
class RepoState:
    exists: bool
    main: str | None = None
    tags: dict[str, str] = field(default_factory=dict)  # "v1.0.0" -> commit

    def versions(self) -> list[tuple[tuple[int, int, int], str]]:
        found = []
        for tag in self.tags:
            if m := _SEMVER.match(tag):
                found.append(((int(m[1]), int(m[2]), int(m[3])), tag))
        return sorted(found)

    def latest_tag(self) -> str | None:
        versions = self.versions()
        return versions[-1][1] if versions else None


def repo_state(api: HfApi, repo_id: str) -> RepoState:
    try:
        refs = retry(lambda: api.list_repo_refs(repo_id, repo_type="dataset"), "read the refs")
    except PublishError as err:
        if "repository not found" in str(err):
            return RepoState(exists=False)
        raise
    main = next((b.target_commit for b in refs.branches if b.name == "main"), None)
    return RepoState(True, main, {t.name: t.target_commit for t in refs.tags})


def snapshot(api: HfApi, repo_id: str, sha: str | None) -> Snapshot:
    """Files (with their ids) and README.md text at commit ``sha``."""
    if sha is None:
        return Snapshot(None)
    entries = retry(
        lambda: list(
            api.list_repo_tree(repo_id, recursive=True, revision=sha, repo_type="dataset")
        ),
        "list the repo's files",
    )
    files = {}
    for entry in entries:
        if getattr(entry, "size", None) is None or not hasattr(entry, "blob_id"):
            continue  # a folder
        lfs = getattr(entry, "lfs", None)
        files[entry.path] = RemoteFile(entry.size, entry.blob_id, lfs.sha256 if lfs else None)
    readme = None
    if "README.md" in files:
        path = retry(
            lambda: hf_hub_download(
                repo_id,
                "README.md",
                repo_type="dataset",
                revision=sha,
                token=api.token,
                endpoint=api.endpoint,
            ),
            "download README.md",
        )
        readme = Path(path).read_text(encoding="utf-8")
    return Snapshot(sha, files, readme)


def load_and_hash(
    repo_id: str, config: str, revision: str, token: str | None, cache_dir: str | None = None
) -> tuple[int, str]:
    """``(rows, content hash)`` of a config as ``load_dataset`` returns it at ``revision``."""
    from datasets import load_dataset

    def load() -> Any:
        return load_dataset(
            repo_id, config, split="train", revision=revision, token=token, cache_dir=cache_dir
        )

    try:
        dataset = retry(load, f"load_dataset({repo_id!r}, {config!r}, revision={revision!r})")
    except (EntryNotFoundError, RemoteEntryNotFoundError, RevisionNotFoundError) as err:
        raise PublishError(f"config {config} does not load at {revision}: {err}") from None
    rows, digest = content_hash([dataset.data.table])
    if rows != dataset.num_rows:
        reported = plural(dataset.num_rows, "row")
        raise PublishError(f"config {config}: {reported} reported, {rows:,} read")
    return rows, digest
