"""hubtools publish against the real local Hub: versions, idempotency, dry runs, refusals."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from datasets import load_dataset
from huggingface_hub import DatasetCard, HfApi, hf_hub_download
from release_support import make_run

from hubtools.errors import PublishError
from hubtools.release import card as cards
from hubtools.release.build import build
from hubtools.release.publish import publish

CONFIGS = ("all", "math", "code", "science", "chat")


@pytest.fixture(scope="module")
def releases(tmp_path_factory):
    """v1: many small shards of 40 queries; v2: 60 queries in one shard per config."""
    root = tmp_path_factory.mktemp("release")
    one = make_run(root / "run1", 40)
    two = make_run(root / "run2", 60)
    b1 = build(one.path, teacher="t1", out=root / "v1", max_shard_rows=4, progress=False)
    b2 = build(two.path, teacher="t1", out=root / "v2", progress=False)
    return root / "v1", b1.rows, root / "v2", b2.rows


def _refs(api, repo):
    refs = api.list_repo_refs(repo, repo_type="dataset")
    return {b.name: b.target_commit for b in refs.branches}, {
        t.name: t.target_commit for t in refs.tags
    }


def _commits(api, repo):
    return len(api.list_repo_commits(repo, repo_type="dataset"))


def _load_rows(repo, tag, token):
    return {
        c: load_dataset(repo, c, split="train", revision=tag, token=token).num_rows for c in CONFIGS
    }


def test_versions_side_by_side_idempotent_dry_run_and_refusals(
    hub, write_token, releases, unique_name
):
    v1, rows1, v2, rows2 = releases
    repo, api = f"acme/{unique_name}", HfApi(token=write_token)

    plan = publish(v1, repo=repo, version="1.0.0", dry_run=True, token=write_token)
    assert plan.action == "dry-run" and not api.repo_exists(repo, repo_type="dataset")
    assert {c.action for c in plan.changes} == {"add"} and "dry run" in str(plan)

    first = publish(v1, repo=repo, version="1.0.0", token=write_token)
    assert first.action == "published" and first.rows == rows1
    assert 'revision="v1.0.0"' in str(first)
    second = publish(v2, repo=repo, version="v1.1.0", token=write_token)
    assert second.action == "published" and second.parent == first.commit
    deleted = {c.path for c in second.changes if c.action == "delete"}
    assert "data/math/train-00001-of-00003.parquet" in deleted  # old shards go in the same commit
    files = api.list_repo_files(repo, repo_type="dataset")
    assert not any(f.startswith("data/") and "of-00001" not in f for f in files)

    # Both versions stay loadable at their tags, every config.
    assert _load_rows(repo, "v1.0.0", write_token) == rows1
    assert _load_rows(repo, "v1.1.0", write_token) == rows2

    # The v1.1.0 card: usage pinned to its tag, history naming v1.0.0's commit.
    card = DatasetCard.load(repo, repo_type="dataset", token=write_token)
    assert 'revision="v1.1.0"' in card.text
    history = cards.history_of(card.content)
    assert [h["version"] for h in history] == ["1.0.0", "1.1.0"]
    assert history[0]["commit"] == first.commit and history[1]["parent"] == first.commit
    assert history[1]["rows"] == rows2 and "rows all +" in history[1]["changes"]
    assert f"`{first.commit[:12]}`" in card.text and "this commit (tag `v1.1.0`)" in card.text

    commits, refs = _commits(api, repo), _refs(api, repo)
    again = publish(v2, repo=repo, version="1.1.0", token=write_token)
    assert again.action == "already-published" and "already published" in str(again)
    same = publish(v2, repo=repo, version="1.2.0", token=write_token)
    assert same.action == "unchanged" and "no new commit" in str(same)
    dry = publish(v1, repo=repo, version="2.0.0", dry_run=True, token=write_token)
    assert dry.action == "dry-run" and {"update", "add", "delete"} <= {
        c.action for c in dry.changes
    }
    with pytest.raises(PublishError, match="already has tag v1.0.0"):
        publish(v2, repo=repo, version="1.0.0", token=write_token)
    assert _commits(api, repo) == commits and _refs(api, repo) == refs  # nothing touched

    # A publish that committed but died before tagging: the re-run only verifies and tags.
    api.delete_tag(repo, tag="v1.1.0", repo_type="dataset")
    resumed = publish(v2, repo=repo, version="1.1.0", token=write_token)
    assert resumed.action == "tagged" and resumed.commit == second.commit
    assert _refs(api, repo) == refs and _commits(api, repo) == commits


def test_pull_request_private_and_cli_errors(hub, write_token, releases, unique_name, tmp_path):
    v1, rows1, v2, _ = releases
    repo, api = f"acme/{unique_name}", HfApi(token=write_token)
    publish(v1, repo=repo, version="1.0.0", private=True, token=write_token)
    assert api.repo_info(repo, repo_type="dataset").private
    with pytest.raises(Exception):  # noqa: B017  (anonymous readers see nothing)
        hf_hub_download(repo, "README.md", repo_type="dataset", token=False)
    main = _refs(api, repo)[0]["main"]
    pr = publish(v2, repo=repo, version="1.1.0", create_pr=True, token=write_token)
    assert pr.action == "pull-request" and pr.pull_request and "after merging" in str(pr)
    assert _refs(api, repo)[0]["main"] == main and "v1.1.0" not in _refs(api, repo)[1]

    hubtools = [sys.executable, "-m", "hubtools", "publish"]
    cli = subprocess.run(
        [*hubtools, str(v2), "--repo", repo, "--version", "1.0.0"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "HF_TOKEN": write_token},
    )  # fmt: skip
    assert cli.returncode == 1 and "Traceback" not in cli.stderr
    assert (
        cli.stderr.strip().splitlines()[-1].startswith("error: ")
        and "tags are never moved" in cli.stderr
    )
    assert write_token not in cli.stdout + cli.stderr
    bad = subprocess.run(
        [*hubtools, str(tmp_path), "--repo", repo, "--version", "1"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert bad.returncode == 2 and "X.Y.Z" in bad.stderr


def test_endpoint_of_another_hub_runs_in_a_child_process(fresh_hub, releases):
    v1, rows1, _, _ = releases
    fresh_hub.start()
    token = fresh_hub.token("bob", write=True)
    result = publish(v1, repo="bob/elsewhere", version="1.0.0", endpoint=fresh_hub.url, token=token)
    assert result.action == "published" and result.endpoint.rstrip("/") == fresh_hub.url
    refs = HfApi(endpoint=fresh_hub.url, token=token).list_repo_refs(
        "bob/elsewhere", repo_type="dataset"
    )
    assert [t.name for t in refs.tags] == ["v1.0.0"]


def test_revert_puts_main_back_to_the_previous_version(hub, write_token, releases, unique_name):
    """What a failed read-back does: main returns to the previous version's files."""
    from hubtools.release.flow import LocalRelease, _Context, _revert
    from hubtools.release.remote import snapshot

    v1, _, v2, _ = releases
    repo, api = f"acme/{unique_name}", HfApi(token=write_token)
    first = publish(v1, repo=repo, version="1.0.0", token=write_token)
    second = publish(v2, repo=repo, version="1.1.0", token=write_token)
    before = snapshot(api, repo, first.commit)
    ctx = _Context(api, repo, "1.1.0", write_token, LocalRelease.read(v2))
    _revert(ctx, second.commit, before)
    main = api.list_repo_refs(repo, repo_type="dataset").branches[0].target_commit
    now = snapshot(api, repo, main)
    assert now.files == before.files and now.readme == before.readme


def test_cli_hub_local_starts_the_embedded_hub(releases, tmp_path):
    v1, rows1, _, _ = releases
    env = {k: v for k, v in os.environ.items() if k not in ("HF_ENDPOINT", "HF_HUB_DISABLE_XET")}
    env["HUBTOOLS_HUB_ROOT"] = str(tmp_path / "hub")
    out = subprocess.run(
        [sys.executable, "-m", "hubtools", "publish", str(v1), "--repo", "local/cli",
         "--version", "1.0.0", "--hub", "local"], capture_output=True, text=True, timeout=180,
        env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "published local/cli@v1.0.0" in out.stdout
    assert 'load_dataset("local/cli", "all", revision="v1.0.0")' in out.stdout
    assert not (tmp_path / "hub" / "server.json").exists()  # started for the command only
