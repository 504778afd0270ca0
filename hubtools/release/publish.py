"""``hubtools publish``: a release folder as one immutable, verified version on the Hub.

The steps, and why each is safe to interrupt:

1. Read the repo: refs, the files and card at ``main``. An existing tag ``vX.Y.Z``
   is compared with the folder before anything is uploaded: same content is
   "already published", other content is refused (tags are never moved).
2. One ``create_commit`` with ``parent_commit=main``: every added, changed and deleted
   file of the version. LFS uploads happen first and commit nothing; the branch moves
   only when the commit lands, all at once. Killed before that, the repo is unchanged
   and the next run re-uploads only the objects the Hub does not have.
3. Load every config back with ``load_dataset`` at the new commit; rows and a content
   hash must equal the folder's. A mismatch reverts ``main`` and tags nothing.
4. Create the tag ``vX.Y.Z`` on that commit. A run killed between 2 and 4 finds
   ``main`` already holding this version and only verifies and tags it.

The card's version history is rendered at publish time. A commit cannot contain its
own id, so the new entry names the commit it builds on; the tag names the version,
and the next version's card lists this one's commit id.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hubtools.errors import PublishError, UsageError
from hubtools.plural import plural

_VERSION = re.compile(r"^v?(\d+\.\d+\.\d+)$")


@dataclass(slots=True)
class FileChange:
    path: str
    size: int
    action: str  # add, update, delete, same


@dataclass(slots=True)
class PublishResult:
    repo_id: str
    version: str
    endpoint: str
    action: str  # published, unchanged, tagged, already-published, pull-request, dry-run
    commit: str | None = None
    parent: str | None = None
    previous: str | None = None  # the latest version tag before this publish
    rows: dict[str, int] = field(default_factory=dict)
    changes: list[FileChange] = field(default_factory=list)
    summary: str = ""
    pull_request: str | None = None
    local_root: str | None = None  # --hub local: the embedded Hub's directory ...
    local_running: bool = False  # ... and whether it still serves after this command

    @property
    def tag(self) -> str:
        return f"v{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PublishResult:
        changes = [FileChange(**c) for c in data.pop("changes", [])]
        return cls(**data, changes=changes)

    def __str__(self) -> str:
        where = f"{self.repo_id}@{self.tag}"
        short = (self.commit or "")[:12]
        if self.action == "dry-run":
            lines = [f"dry run: {where} on {self.endpoint} ({self.summary}); nothing was changed"]
            for c in self.changes:
                if c.action != "same":
                    lines.append(f"  {c.action:<7} {c.path} ({_size(c.size)})")
            same = sum(c.action == "same" for c in self.changes)
            if same:
                lines.append(f"  {plural(same, 'file')} unchanged")
            return "\n".join(lines + self._reach())
        if self.action == "unchanged":
            text = (
                f"no new commit: the folder is identical to {self.previous or 'main'} of "
                f"{self.repo_id} (commit {short}); {self.tag} was not created"
            )
        elif self.action == "already-published":
            text = f"{where} is already published with this content (commit {short}); verified"
        elif self.action == "pull-request":
            text = (
                f"opened {self.pull_request} with {where} (commit {short}, verified); "
                "after merging it, run the same command again to tag the version"
            )
        else:
            verb = "tagged the interrupted publish" if self.action == "tagged" else "published"
            rows = ", ".join(f"{k} {v:,}" for k, v in self.rows.items())
            text = (
                f"{verb} {where} (commit {short}; {self.summary}; rows: {rows})\n"
                f'load it with: load_dataset("{self.repo_id}", "all", revision="{self.tag}")'
            )
        return "\n".join([text, *self._reach()])

    def _reach(self) -> list[str]:
        """For --hub local: how to reach the embedded Hub once this command has ended."""
        if self.local_root is None:
            return []
        from hubtools.hub.local import reach_lines

        state = "still serves" if self.local_running else "was stopped with this command"
        lines = reach_lines(Path(self.local_root), self.endpoint, self.local_running)
        return [f"the local Hub in {self.local_root} {state}; to reach it:"] + [
            f"  {line}" for line in lines
        ]


def _size(n: int) -> str:
    return f"{n / 1e6:,.1f} MB" if n >= 100_000 else f"{n:,} B"


def check_repo_id(repo: str) -> str:
    """``ORG/NAME`` as the Hub accepts it, by huggingface_hub's own validator.

    ``huggingface_hub.utils`` reads no endpoint setting, so importing it here does not
    fix the Hub this process will talk to.
    """
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if repo.count("/") != 1:
        raise UsageError(f"--repo must look like ORG/NAME, got {repo!r}")
    try:
        validate_repo_id(repo)
    except HFValidationError as err:
        raise UsageError(f"--repo {repo!r} is not a valid repo id: {err}") from None
    return repo


def parse_version(version: str) -> str:
    match = _VERSION.match(version.strip())
    if not match:
        raise UsageError(f"--version must look like X.Y.Z (e.g. 1.0.0), got {version!r}")
    return match[1]


def publish(
    folder: Path | str,
    *,
    repo: str,
    version: str,
    private: bool = False,
    create_pr: bool = False,
    dry_run: bool = False,
    endpoint: str | None = None,
    hub: str | None = None,
    token: str | None = None,
) -> PublishResult:
    """Publish a release folder as version ``version`` of the dataset repo ``repo``.

    ``endpoint`` (default: ``HF_ENDPOINT``, else huggingface.co) or ``hub="local"`` (the
    embedded local Hub, started for the call if none is running) pick the Hub; the token
    comes from ``token`` or huggingface_hub's usual sources. When this process imported
    the clients for another Hub, the publish runs in a child process.
    """
    folder = Path(folder)
    version = parse_version(version)
    check_repo_id(repo)
    if hub not in (None, "local"):
        raise UsageError(f"--hub takes 'local' only, got {hub!r}")
    if hub == "local" and endpoint:
        raise UsageError("give --hub local or --endpoint, not both")
    if endpoint is not None:
        from hubtools.hub.serve import check_url

        check_url(endpoint)
    if not (folder / "README.md").is_file():  # before any server starts or file is read
        raise UsageError(
            f"{folder} is not a release folder (no README.md); make one with `hubtools build`"
        )
    args = dict(
        repo_id=repo, version=version, private=private, create_pr=create_pr, dry_run=dry_run
    )
    if hub == "local":
        from hubtools.hub.serve import clients_imported

        if clients_imported():
            return _in_child(folder, args, {}, token, hub="local")
        from hubtools.hub.local import local_hub

        with local_hub() as server:
            from hubtools.release.flow import publish_here

            result = publish_here(folder, token=token or server.token, **args)
        result.local_root, result.local_running = str(server.root), not server.started
        return result
    from hubtools.release.endpoint import prepare, wanted_env

    if not prepare(endpoint):
        return _in_child(folder, args, wanted_env(endpoint), token)
    from hubtools.release.flow import publish_here

    return publish_here(folder, token=token, **args)


def _in_child(
    folder: Path,
    args: dict[str, Any],
    env: dict[str, str],
    token: str | None,
    hub: str | None = None,
) -> PublishResult:
    """Run the publish in ``python -m hubtools publish`` with the clients configured for it."""
    command = [
        sys.executable,
        "-m",
        "hubtools",
        "publish",
        str(folder),
        "--repo",
        args["repo_id"],
        "--version",
        args["version"],
        "--json",
    ]
    command += ["--private"] * args["private"] + ["--create-pr"] * args["create_pr"]
    command += ["--dry-run"] * args["dry_run"] + (["--hub", hub] if hub else [])
    child_env = {**os.environ, **env}
    if token:
        child_env["HF_TOKEN"] = token  # through the environment: never on a command line
    if hub == "local":
        for name in ("HF_ENDPOINT", "HF_HUB_DISABLE_XET"):
            child_env.pop(name, None)
    proc = subprocess.run(command, env=child_env, capture_output=True, text=True)
    sys.stderr.write("".join(s for s in proc.stderr.splitlines(True) if not s.startswith("error:")))
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
        message = lines[-1].removeprefix("error: ") if lines else proc.stderr.strip()[-500:]
        raise PublishError(message or f"the publish process exited with {proc.returncode}")
    return PublishResult.from_dict(json.loads(proc.stdout))
