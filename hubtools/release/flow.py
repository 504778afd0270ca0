"""The steps of one publish, in a process whose clients talk to the right Hub.

See ``publish.py`` for the order of the steps and why each is safe to interrupt.
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from huggingface_hub import (
    CommitOperationAdd,
    CommitOperationCopy,
    CommitOperationDelete,
    HfApi,
    get_token,
)

from hubtools.errors import PublishError, UsageError
from hubtools.plural import plural
from hubtools.release import card as cards
from hubtools.release.hashing import file_digests, parquet_content_hash
from hubtools.release.publish import FileChange, PublishResult
from hubtools.release.remote import (
    KEEP,
    RepoState,
    Snapshot,
    hub_error,
    is_transient,
    load_and_hash,
    repo_state,
    retry,
    snapshot,
)


@dataclass(slots=True)
class LocalRelease:
    """The folder to publish: its files with their digests, and what each config holds."""

    root: Path
    readme: str
    configs: dict[str, list[str]]  # config -> files, in load order
    files: dict[str, tuple[int, str, str]]  # path -> (size, sha256, git blob sha1)

    @classmethod
    def read(cls, folder: Path) -> LocalRelease:
        if not (folder / "README.md").is_file():
            raise UsageError(
                f"{folder} is not a release folder (no README.md); make one with `hubtools build`"
            )
        readme = (folder / "README.md").read_text(encoding="utf-8")
        try:
            patterns = cards.card_configs(readme)
        except Exception as err:  # a hand-edited card whose YAML no longer parses
            raise UsageError(f"{folder / 'README.md'}: bad card metadata ({err})") from None
        if not patterns:
            raise UsageError(f"{folder / 'README.md'} declares no configs")
        configs = {}
        for name, globs in patterns.items():
            paths = [p for g in globs for p in sorted(folder.glob(g)) if p.is_file()]
            if not paths:
                raise UsageError(f"config {name!r}: no file in {folder} matches {globs}")
            configs[name] = [str(p.relative_to(folder)) for p in paths]
        files = {}
        for path in sorted(folder.rglob("*")):
            relative = path.relative_to(folder)
            if path.is_file() and not any(part.startswith(".") for part in relative.parts):
                files[str(relative)] = (path.stat().st_size, *file_digests(path))
        return cls(folder, readme, configs, files)

    def expected(self) -> dict[str, tuple[int, str]]:
        """``config -> (rows, content hash)`` of the local Parquet files."""
        return {
            name: parquet_content_hash(self.root / p for p in paths)
            for name, paths in self.configs.items()
        }


def _changes(local: LocalRelease, readme: str, remote: Snapshot) -> list[FileChange]:
    """Per file: add, update, same (by the Hub's own ids), or delete (gone from the folder)."""
    changes = []
    for path, (size, sha256, sha1) in local.files.items():
        if path == "README.md":
            data = readme.encode()
            size = len(data)
            same = remote.readme is not None and remote.readme == readme
        else:
            old = remote.files.get(path)
            same = old is not None and (old.sha256 == sha256 if old.sha256 else old.blob_id == sha1)
        exists = path in remote.files
        changes.append(FileChange(path, size, "same" if same else "update" if exists else "add"))
    for path, old in remote.files.items():
        if path not in local.files and path not in KEEP:
            changes.append(FileChange(path, old.size, "delete"))
    return changes


def _same_content(local: LocalRelease, remote: Snapshot) -> bool:
    """The folder equals a published revision, ignoring the blocks publish stamps."""
    if remote.readme is None or cards.unstamped(remote.readme) != cards.unstamped(local.readme):
        return False
    changes = _changes(local, remote.readme, remote)
    return all(c.action == "same" for c in changes if c.path != "README.md")


def _describe(changes: list[FileChange], rows: dict[str, int], before: dict[str, int]) -> str:
    counts = {a: sum(c.action == a for c in changes) for a in ("add", "update", "delete")}
    files = ", ".join(f"{n} {a}{'d' if a.endswith('e') else 'ed'}" for a, n in counts.items() if n)
    if not before:
        return f"first version; {files or 'no file changes'}"
    deltas = []
    for name in dict.fromkeys([*rows, *before]):
        delta = rows.get(name, 0) - before.get(name, 0)
        if delta:
            deltas.append(f"{name} {delta:+,}")
    return f"rows {', '.join(deltas) if deltas else 'unchanged'}; files {files or 'unchanged'}"


@dataclass(slots=True)
class _Context:
    api: HfApi
    repo_id: str
    version: str
    token: str | None
    local: LocalRelease

    @property
    def tag(self) -> str:
        return f"v{self.version}"

    def result(self, action: str, **kw) -> PublishResult:  # noqa: ANN003
        return PublishResult(self.repo_id, self.version, self.api.endpoint, action, **kw)


def publish_here(
    folder: Path,
    *,
    repo_id: str,
    version: str,
    token: str | None,
    private: bool,
    create_pr: bool,
    dry_run: bool,
) -> PublishResult:
    """Publish in this process (the clients were imported for the right endpoint)."""
    token = token or get_token()  # token=, then HF_TOKEN, then the stored login
    if token is None and not dry_run:
        raise PublishError("no Hugging Face token: run `hf auth login` or set HF_TOKEN")
    api = HfApi(token=token)
    local = LocalRelease.read(folder)
    ctx = _Context(api, repo_id, version, api.token, local)
    state = repo_state(api, repo_id)
    if ctx.tag in state.tags:
        return _existing_tag(ctx, state, dry_run)
    head = snapshot(api, repo_id, state.main) if state.exists else Snapshot(None)
    previous = state.latest_tag()
    if _same_content(local, head) and head.readme is not None:
        if cards.stamped_version(head.readme) == version:
            if dry_run:
                return ctx.result("dry-run", commit=head.sha, summary="would verify and tag main")
            _verify(ctx, head.sha)
            _tag(ctx, head.sha)
            return ctx.result("tagged", commit=head.sha, previous=previous, rows=_rows(head.readme))
        return ctx.result("unchanged", commit=head.sha, previous=previous)
    history = [
        {**e, "commit": state.tags.get(f"v{e.get('version')}", e.get("commit"))}
        for e in cards.history_of(head.readme or "")
        if e.get("version") != version
    ]
    rows = {name: int(n) for name, n in _rows(local.readme).items()}
    before = history[-1]["rows"] if history else {}
    draft = _changes(local, local.readme, head)
    entry = {
        "version": version,
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "parent": head.sha if previous or history else None,
        "parent_version": previous.removeprefix("v") if previous else None,
        "rows": rows,
        # Every file the plan lists, the card too (a new version always changes it).
        "changes": _describe(draft, rows, before),
        "commit": None,
    }
    readme = cards.stamp(
        local.readme,
        repo_id=repo_id,
        version=version,
        configs=list(local.configs),
        history=[*history, entry],
    )
    changes = _changes(local, readme, head)
    summary = entry["changes"]
    if dry_run:
        where = f"builds on {head.sha[:12]}" if head.sha else "the repo would be created"
        return ctx.result(
            "dry-run",
            parent=head.sha,
            previous=previous,
            rows=rows,
            changes=changes,
            summary=f"{summary}; {where}",
        )
    if not state.exists:
        retry(
            lambda: api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True),
            "create the repo",
        )
        state = repo_state(api, repo_id)
        head = snapshot(api, repo_id, state.main)
    elif private:
        print(
            "note: --private only applies when the repo is created; the repo exists",
            file=sys.stderr,
        )
    operations = _operations(local, readme, changes)
    commit, pr_url = _commit(ctx, operations, head, create_pr, summary)
    try:
        _verify(ctx, commit)
    except PublishError:
        if not create_pr:
            _revert(ctx, commit, head)
        raise
    extra = {"pull_request": pr_url} if create_pr else {}
    if not create_pr:  # a pull request is tagged once merged, by running publish again
        _tag(ctx, commit)
    return ctx.result(
        "pull-request" if create_pr else "published",
        commit=commit,
        parent=head.sha,
        previous=previous,
        rows=rows,
        changes=changes,
        summary=summary,
        **extra,
    )


def _rows(readme: str) -> dict[str, int]:
    """Rows per config, from the card's ``dataset_info``."""
    from huggingface_hub import DatasetCard

    infos = DatasetCard(readme).data.to_dict().get("dataset_info") or []
    infos = infos if isinstance(infos, list) else [infos]
    return {
        i.get("config_name", "default"): sum(s.get("num_examples", 0) for s in i.get("splits", []))
        for i in infos
    }


def _existing_tag(ctx: _Context, state: RepoState, dry_run: bool) -> PublishResult:
    """A version is published once: same content is a no-op, other content an error."""
    sha = state.tags[ctx.tag]
    tagged = snapshot(ctx.api, ctx.repo_id, sha)
    if not _same_content(ctx.local, tagged):
        raise PublishError(
            f"{ctx.repo_id} already has tag {ctx.tag} (commit {sha[:12]}) with other content; "
            "tags are never moved: publish this folder as a new version"
        )
    if not dry_run:
        _verify(ctx, ctx.tag)
    return ctx.result(
        "dry-run" if dry_run else "already-published",
        commit=sha,
        rows=_rows(tagged.readme or ""),
        summary="already published",
    )


def _operations(local: LocalRelease, readme: str, changes: list[FileChange]) -> list:
    ops: list = []
    for change in changes:
        if change.action == "delete":
            ops.append(CommitOperationDelete(change.path))
        elif change.path == "README.md" and change.action != "same":
            ops.append(CommitOperationAdd("README.md", readme.encode()))
        elif change.action in ("add", "update"):
            ops.append(CommitOperationAdd(change.path, str(local.root / change.path)))
    return ops


def _commit(
    ctx: _Context, operations: list, head: Snapshot, create_pr: bool, summary: str
) -> tuple[str, str | None]:
    """One commit on ``head``; a retry first checks whether the lost attempt landed."""
    message = f"Release {ctx.tag}"
    size = sum(op.upload_info.size for op in operations if isinstance(op, CommitOperationAdd))
    print(
        f"uploading {plural(len(operations), 'change')} ({size / 1e6:,.1f} MB) to {ctx.repo_id}",
        file=sys.stderr,
        flush=True,
    )
    for attempt in range(5):
        try:
            info = ctx.api.create_commit(
                ctx.repo_id,
                operations,
                commit_message=message,
                commit_description=summary,
                repo_type="dataset",
                parent_commit=head.sha,
                create_pr=create_pr,
            )
            return info.oid, info.pr_url
        except Exception as err:
            if not is_transient(err) or attempt == 4:
                status = getattr(getattr(err, "response", None), "status_code", None)
                if status == 412:
                    raise PublishError(
                        f"main of {ctx.repo_id} moved during the publish "
                        "(another publish?); run it again"
                    ) from None
                raise hub_error(err, "commit the release") from None
            if not create_pr:
                now = repo_state(ctx.api, ctx.repo_id).main
                if now != head.sha:  # the lost attempt may have landed
                    landed = snapshot(ctx.api, ctx.repo_id, now)
                    if cards.stamped_version(landed.readme or "") == ctx.version and _same_content(
                        ctx.local, landed
                    ):
                        return now, None
                    raise PublishError(
                        f"main of {ctx.repo_id} moved during the publish; run it again"
                    ) from None
            import time

            time.sleep(2**attempt)
    raise AssertionError("unreachable")


def _verify(ctx: _Context, revision: str) -> None:
    """Every config read back with ``load_dataset`` has the folder's rows and content.

    It reads into a throwaway cache: the check must read what the Hub serves, and a
    big release should not leave a second copy of itself in the user's datasets cache.
    """
    with tempfile.TemporaryDirectory(prefix="hubtools-verify-") as cache:
        for name, (rows, digest) in ctx.local.expected().items():
            try:
                got_rows, got_digest = load_and_hash(ctx.repo_id, name, revision, ctx.token, cache)
            except PublishError:
                raise
            except Exception as err:
                reason = " ".join(str(err).split())[:200]
                raise PublishError(
                    f"config {name} does not load back at {revision[:12]}: "
                    f"{type(err).__name__}: {reason}"
                ) from None
            if (got_rows, got_digest) != (rows, digest):
                raise PublishError(
                    f"config {name} reads back wrong at {revision[:12]}: {plural(got_rows, 'row')} "
                    f"(expected {rows:,}), content hash {got_digest[:12]} (expected {digest[:12]})"
                )


def _tag(ctx: _Context, commit: str) -> None:
    retry(
        lambda: ctx.api.create_tag(
            ctx.repo_id,
            tag=ctx.tag,
            revision=commit,
            tag_message=f"Release {ctx.tag}",
            repo_type="dataset",
        ),
        f"create tag {ctx.tag}",
    )
    if repo_state(ctx.api, ctx.repo_id).tags.get(ctx.tag) != commit:
        raise PublishError(f"tag {ctx.tag} does not point at the published commit {commit[:12]}")


def _revert(ctx: _Context, bad: str, previous: Snapshot) -> None:
    """Put ``main`` back to the previous version's files after a failed verification."""
    if previous.sha is None:
        return
    now = snapshot(ctx.api, ctx.repo_id, bad)
    ops: list = [CommitOperationDelete(p) for p in now.files if p not in previous.files]
    for path, old in previous.files.items():
        new = now.files.get(path)
        if new is None or (new.sha256, new.blob_id) != (old.sha256, old.blob_id):
            ops.append(CommitOperationCopy(path, path, src_revision=previous.sha))
    if ops:
        retry(
            lambda: ctx.api.create_commit(
                ctx.repo_id,
                ops,
                commit_message=f"Revert failed release {ctx.tag}",
                repo_type="dataset",
                parent_commit=bad,
            ),
            "revert main",
        )
