"""Repositories, commits and refs of the local Hub, driven by the real huggingface_hub client."""

from __future__ import annotations

import re

import httpx
import pytest
from huggingface_hub import (
    CommitOperationAdd,
    CommitOperationCopy,
    CommitOperationDelete,
    HfApi,
)
from huggingface_hub.errors import (
    HfHubHTTPError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

SHA_RE = re.compile(r"^[0-9a-f]{40}$")


@pytest.fixture
def api(write_token) -> HfApi:
    return HfApi(token=write_token)


@pytest.fixture
def dataset(api, unique_name) -> str:
    repo_id = f"alice/{unique_name}"
    api.create_repo(repo_id, repo_type="dataset")
    return repo_id


def files_at(api: HfApi, repo_id: str, revision: str | None = None, **kw) -> list[str]:
    return sorted(api.list_repo_files(repo_id, repo_type="dataset", revision=revision, **kw))


# -- create / delete ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("repo_type", "extra", "prefix"),
    [
        ("dataset", {}, "datasets/"),
        ("model", {}, ""),
        ("space", {"space_sdk": "gradio"}, "spaces/"),
    ],
    ids=["dataset", "model", "space"],
)
def test_create_repo_each_type(hub, api, unique_name, repo_type, extra, prefix):
    repo_id = f"alice/{unique_name}"
    url = api.create_repo(repo_id, repo_type=repo_type, **extra)
    assert url.repo_id == repo_id
    assert url == f"{hub.url}/{prefix}{repo_id}"
    info = api.repo_info(repo_id, repo_type=repo_type)
    assert info.id == repo_id and SHA_RE.match(info.sha)
    assert [s.rfilename for s in info.siblings] == [".gitattributes"]
    if repo_type == "space":
        assert info.sdk == "gradio"
    gitattributes = api.hf_hub_download(repo_id, ".gitattributes", repo_type=repo_type)
    assert "*.parquet filter=lfs" in open(gitattributes).read()
    commits = api.list_repo_commits(repo_id, repo_type=repo_type)
    assert [c.title for c in commits] == ["initial commit"]


def test_create_duplicate_and_exist_ok(api, dataset):
    with pytest.raises(HfHubHTTPError) as exc:
        api.create_repo(dataset, repo_type="dataset")
    assert exc.value.response.status_code == 409
    sha = api.dataset_info(dataset).sha
    url = api.create_repo(dataset, repo_type="dataset", exist_ok=True)
    assert url.repo_id == dataset
    assert api.dataset_info(dataset).sha == sha  # exist_ok leaves the repo alone


def test_create_private_and_in_org(hub, api, unique_name):
    private = api.create_repo(f"alice/{unique_name}", private=True)
    assert api.model_info(private.repo_id).private is True
    # Anonymous callers cannot see it.
    with pytest.raises(RepositoryNotFoundError):
        HfApi(token=False).model_info(private.repo_id)
    org = api.create_repo(f"acme/{unique_name}", repo_type="dataset")
    assert org.repo_id == f"acme/{unique_name}"
    info = api.dataset_info(org.repo_id)
    assert info.private is False and info.author == "acme"


def test_delete_repo(api, dataset):
    api.delete_repo(dataset, repo_type="dataset")
    with pytest.raises(RepositoryNotFoundError):
        api.dataset_info(dataset)
    with pytest.raises(RepositoryNotFoundError) as exc:
        api.delete_repo(dataset, repo_type="dataset")
    assert exc.value.response.status_code == 404
    api.delete_repo(dataset, repo_type="dataset", missing_ok=True)
    # The name is free again.
    assert api.create_repo(dataset, repo_type="dataset").repo_id == dataset


# -- commits ------------------------------------------------------------------------------------
def test_upload_file_and_info(api, dataset):
    info = api.upload_file(
        path_or_fileobj=b"hello\n", path_in_repo="docs/a.txt", repo_id=dataset, repo_type="dataset"
    )
    assert SHA_RE.match(info.oid)
    assert info.commit_url.endswith(f"/datasets/{dataset}/commit/{info.oid}")
    assert api.dataset_info(dataset).sha == info.oid
    assert files_at(api, dataset) == [".gitattributes", "docs/a.txt"]
    # Same content again: the client sees the same blob oid and makes no commit.
    again = api.upload_file(
        path_or_fileobj=b"hello\n", path_in_repo="docs/a.txt", repo_id=dataset, repo_type="dataset"
    )
    assert again.oid == info.oid
    assert len(api.list_repo_commits(dataset, repo_type="dataset")) == 2


def test_upload_folder_patterns(api, dataset, tmp_path):
    (tmp_path / "keep").mkdir()
    (tmp_path / "keep" / "a.txt").write_text("a")
    (tmp_path / "keep" / "b.json").write_text("{}")
    (tmp_path / "skip.log").write_text("log")
    api.upload_file(
        path_or_fileobj=b"old", path_in_repo="old/x.txt", repo_id=dataset, repo_type="dataset"
    )
    api.upload_file(
        path_or_fileobj=b"old", path_in_repo="old/y.md", repo_id=dataset, repo_type="dataset"
    )
    api.upload_folder(
        folder_path=tmp_path,
        repo_id=dataset,
        repo_type="dataset",
        allow_patterns=["keep/*"],
        delete_patterns=["old/*.txt"],
    )
    assert files_at(api, dataset) == [".gitattributes", "keep/a.txt", "keep/b.json", "old/y.md"]


def test_create_commit_add_delete_copy(hub, api, dataset):
    api.create_commit(
        dataset,
        repo_type="dataset",
        commit_message="seed",
        operations=[
            CommitOperationAdd("a.txt", b"regular"),
            CommitOperationAdd("data/x.parquet", b"PAR1 not really parquet"),
            CommitOperationAdd("folder/one.txt", b"1"),
            CommitOperationAdd("folder/sub/two.txt", b"2"),
            CommitOperationAdd("gone.txt", b"bye"),
        ],
    )
    tree = {f.path: f for f in api.list_repo_tree(dataset, repo_type="dataset", recursive=True)}
    assert tree["data/x.parquet"].lfs is not None and tree["a.txt"].lfs is None
    api.create_commit(
        dataset,
        repo_type="dataset",
        commit_message="reshape",
        operations=[
            CommitOperationCopy("a.txt", "copies/a.txt"),
            CommitOperationCopy("data/x.parquet", "copies/x.parquet"),
            CommitOperationDelete("gone.txt"),
            CommitOperationDelete("folder/"),
        ],
    )
    assert files_at(api, dataset) == [
        ".gitattributes", "a.txt", "copies/a.txt", "copies/x.parquet", "data/x.parquet"
    ]  # fmt: skip
    tree = {f.path: f for f in api.list_repo_tree(dataset, repo_type="dataset", recursive=True)}
    assert tree["copies/x.parquet"].lfs.sha256 == tree["data/x.parquet"].lfs.sha256
    assert tree["copies/a.txt"].blob_id == tree["a.txt"].blob_id
    path = api.hf_hub_download(dataset, "copies/x.parquet", repo_type="dataset")
    assert open(path, "rb").read() == b"PAR1 not really parquet"
    with pytest.raises(RemoteEntryNotFoundError):
        api.delete_file("gone.txt", dataset, repo_type="dataset")


def test_commit_to_missing_branch(api, dataset):
    with pytest.raises(RevisionNotFoundError):
        api.upload_file(
            path_or_fileobj=b"x",
            path_in_repo="x",
            repo_id=dataset,
            repo_type="dataset",
            revision="nope",
        )


def test_stale_parent_commit(api, dataset):
    first = api.dataset_info(dataset).sha
    api.upload_file(path_or_fileobj=b"1", path_in_repo="a", repo_id=dataset, repo_type="dataset")
    with pytest.raises(HfHubHTTPError) as exc:
        api.create_commit(
            dataset,
            repo_type="dataset",
            operations=[CommitOperationAdd("b", b"2")],
            commit_message="late",
            parent_commit=first,
        )
    assert exc.value.response.status_code == 412
    head = api.dataset_info(dataset).sha
    ok = api.create_commit(
        dataset,
        repo_type="dataset",
        operations=[CommitOperationAdd("b", b"2")],
        commit_message="on time",
        parent_commit=head,
    )
    assert api.list_repo_commits(dataset, repo_type="dataset")[0].commit_id == ok.oid


def test_create_pr(api, dataset):
    main = api.dataset_info(dataset).sha
    info = api.create_commit(
        dataset,
        repo_type="dataset",
        operations=[CommitOperationAdd("proposal.txt", b"p")],
        commit_message="proposal",
        create_pr=True,
    )
    assert info.pr_url and info.pr_url.endswith("/discussions/1")
    assert info.pr_revision == "refs/pr/1" and info.pr_num == 1
    refs = api.list_repo_refs(dataset, repo_type="dataset", include_pull_requests=True)
    assert [(r.ref, r.target_commit) for r in refs.pull_requests] == [("refs/pr/1", info.oid)]
    assert api.dataset_info(dataset).sha == main  # main did not move
    assert "proposal.txt" in files_at(api, dataset, revision="refs/pr/1")
    # A commit to the PR ref moves it.
    more = api.upload_file(
        path_or_fileobj=b"q", path_in_repo="q.txt", repo_id=dataset, repo_type="dataset",
        revision="refs/pr/1",
    )  # fmt: skip
    assert api.dataset_info(dataset, revision="refs/pr/1").sha == more.oid
    second = api.create_commit(
        dataset, repo_type="dataset", operations=[CommitOperationAdd("r", b"r")],
        commit_message="another", create_pr=True,
    )  # fmt: skip
    assert second.pr_num == 2


# -- refs ---------------------------------------------------------------------------------------
def test_tags_and_branches(api, dataset):
    v1 = api.upload_file(
        path_or_fileobj=b"1", path_in_repo="f", repo_id=dataset, repo_type="dataset"
    )
    api.create_tag(dataset, tag="v1", repo_type="dataset")
    api.create_tag(dataset, tag="v1-annotated", tag_message="first", repo_type="dataset")
    with pytest.raises(HfHubHTTPError) as exc:
        api.create_tag(dataset, tag="v1", repo_type="dataset")
    assert exc.value.response.status_code == 409
    api.create_branch(dataset, branch="dev", repo_type="dataset")
    with pytest.raises(HfHubHTTPError) as exc:
        api.create_branch(dataset, branch="dev", repo_type="dataset")
    assert exc.value.response.status_code == 409
    api.create_branch(dataset, branch="release/2024", repo_type="dataset", revision="v1")
    dev = api.upload_file(
        path_or_fileobj=b"dev",
        path_in_repo="d",
        repo_id=dataset,
        repo_type="dataset",
        revision="dev",
    )
    refs = api.list_repo_refs(dataset, repo_type="dataset")
    branches = {b.name: b.target_commit for b in refs.branches}
    assert branches == {"main": v1.oid, "dev": dev.oid, "release/2024": v1.oid}
    assert {t.name: t.target_commit for t in refs.tags} == {"v1": v1.oid, "v1-annotated": v1.oid}
    assert refs.converts == []
    assert "d" in files_at(api, dataset, revision="dev") and "d" not in files_at(api, dataset)
    api.delete_tag(dataset, tag="v1", repo_type="dataset")
    api.delete_branch(dataset, branch="dev", repo_type="dataset")
    with pytest.raises(RevisionNotFoundError):
        api.delete_tag(dataset, tag="v1", repo_type="dataset")
    with pytest.raises(RevisionNotFoundError):
        api.delete_branch(dataset, branch="dev", repo_type="dataset")
    refs = api.list_repo_refs(dataset, repo_type="dataset")
    assert [b.name for b in refs.branches] == ["main", "release/2024"]
    assert [t.name for t in refs.tags] == ["v1-annotated"]
    with pytest.raises(RevisionNotFoundError):
        api.dataset_info(dataset, revision="dev")


def test_refs_anywhere_commit_sha(api, dataset):
    first = api.dataset_info(dataset).sha
    api.create_tag(dataset, tag="at-first", repo_type="dataset", revision=first)
    api.upload_file(path_or_fileobj=b"1", path_in_repo="f", repo_id=dataset, repo_type="dataset")
    assert api.dataset_info(dataset, revision="at-first").sha == first
    assert files_at(api, dataset, revision=first) == [".gitattributes"]
    with pytest.raises(RevisionNotFoundError):
        api.dataset_info(dataset, revision="0" * 40)


# -- listings -----------------------------------------------------------------------------------
def test_tree_expand_and_subpath(api, dataset):
    first = api.upload_file(
        path_or_fileobj=b"a", path_in_repo="d/a.txt", repo_id=dataset, repo_type="dataset"
    )
    second = api.upload_file(
        path_or_fileobj=b"b", path_in_repo="d/e/b.txt", repo_id=dataset, repo_type="dataset",
        commit_message="add b",
    )  # fmt: skip
    top = api.list_repo_tree(dataset, repo_type="dataset")
    assert sorted((e.path, type(e).__name__) for e in top) == [
        (".gitattributes", "RepoFile"), ("d", "RepoFolder")
    ]  # fmt: skip
    sub = sorted(e.path for e in api.list_repo_tree(dataset, "d", repo_type="dataset"))
    assert sub == ["d/a.txt", "d/e"]
    deep = sorted(
        e.path for e in api.list_repo_tree(dataset, "d", repo_type="dataset", recursive=True)
    )
    assert deep == ["d/a.txt", "d/e", "d/e/b.txt"]
    expanded = {
        e.path: e
        for e in api.list_repo_tree(dataset, repo_type="dataset", recursive=True, expand=True)
    }
    assert expanded["d/a.txt"].last_commit.oid == first.oid
    assert expanded["d/e/b.txt"].last_commit.oid == second.oid
    assert expanded["d/e/b.txt"].last_commit.title == "add b"
    with pytest.raises(RemoteEntryNotFoundError):
        list(api.list_repo_tree(dataset, "missing", repo_type="dataset"))


def test_tree_pagination_over_1000_files(hub, api, dataset):
    ops = [CommitOperationAdd(f"many/f{i:04d}.txt", f"{i}".encode()) for i in range(1005)]
    api.create_commit(dataset, repo_type="dataset", operations=ops, commit_message="many")
    api.create_branch(dataset, branch="pages/v1", repo_type="dataset")
    for revision in ("main", "pages/v1"):
        listed = [
            e.path
            for e in api.list_repo_tree(dataset, "many", repo_type="dataset", revision=revision)
        ]
        assert listed == [op.path_in_repo for op in ops]
    assert len(files_at(api, dataset, revision="pages/v1")) == 1006
    # The raw protocol: the first page holds 1000 entries and an absolute Link to the next.
    url = f"{hub.url}/api/datasets/{dataset}/tree/pages%2Fv1/many"
    first = httpx.get(url)
    assert first.status_code == 200 and len(first.json()) == 1000
    next_url = first.links["next"]["url"]
    assert next_url.startswith(f"{hub.url}/api/datasets/{dataset}/tree/pages%2Fv1/many?")
    assert [e["path"] for e in httpx.get(next_url).json()][-1] == "many/f1004.txt"
    # expand=true pages at 50.
    expanded = httpx.get(url, params={"expand": "true"})
    assert len(expanded.json()) == 50 and "next" in expanded.links


def test_paths_info(api, dataset):
    api.create_commit(
        dataset, repo_type="dataset", commit_message="seed",
        operations=[CommitOperationAdd("a.txt", b"abc"), CommitOperationAdd("w.bin", b"\x00\x01")],
    )  # fmt: skip
    infos = api.get_paths_info(
        dataset,
        ["a.txt", "w.bin", "missing.txt", ".gitattributes"],
        repo_type="dataset",
        expand=True,
    )
    by_path = {i.path: i for i in infos}
    assert set(by_path) == {"a.txt", "w.bin", ".gitattributes"}
    assert by_path["a.txt"].size == 3 and by_path["a.txt"].lfs is None
    assert by_path["a.txt"].blob_id == "f2ba8f84ab5c1bce84a7b441cb1959cfc7093b7f"  # git hash-object
    assert by_path["w.bin"].lfs.size == 2 and by_path["w.bin"].last_commit.title == "seed"


def test_list_commits_paginates(hub, api, dataset):
    api.create_branch(dataset, branch="long/history", repo_type="dataset")
    shas = []
    for i in range(55):
        info = api.upload_file(
            path_or_fileobj=f"{i}".encode(), path_in_repo="counter.txt", repo_id=dataset,
            repo_type="dataset", revision="long/history", commit_message=f"commit {i}",
        )  # fmt: skip
        shas.append(info.oid)
    commits = api.list_repo_commits(dataset, repo_type="dataset", revision="long/history")
    assert len(commits) == 56
    assert [c.commit_id for c in commits[:55]] == shas[::-1]
    assert commits[0].title == "commit 54" and commits[-1].title == "initial commit"
    assert commits[0].authors == ["alice"]
    page = httpx.get(f"{hub.url}/api/datasets/{dataset}/commits/long%2Fhistory")
    assert len(page.json()) == 50 and "long%2Fhistory" in page.links["next"]["url"]


def test_repo_info_card_data_and_files_metadata(api, unique_name):
    repo_id = f"alice/{unique_name}"
    api.create_repo(repo_id)
    readme = "---\nlicense: mit\ntags:\n- demo\nlibrary_name: custom\n---\n# Model\n"
    api.create_commit(
        repo_id, commit_message="card",
        operations=[
            CommitOperationAdd("README.md", readme.encode()),
            CommitOperationAdd("model.safetensors", b"weights" * 10),
        ],
    )  # fmt: skip
    info = api.model_info(repo_id, files_metadata=True)
    assert info.card_data["license"] == "mit" and info.tags == ["demo"]
    siblings = {s.rfilename: s for s in info.siblings}
    assert siblings["model.safetensors"].size == 70
    assert siblings["model.safetensors"].lfs.sha256 and siblings["README.md"].lfs is None
    assert siblings["README.md"].size == len(readme)
    assert SHA_RE.match(siblings["README.md"].blob_id)
    assert api.repo_info(repo_id).sha == info.sha


def test_exists_helpers_and_space_info(api, unique_name):
    repo_id = api.create_repo(f"alice/{unique_name}", repo_type="space", space_sdk="gradio").repo_id
    api.upload_file(path_or_fileobj=b"import gradio", path_in_repo="app.py", repo_id=repo_id,
                    repo_type="space")  # fmt: skip
    info = api.space_info(repo_id)
    assert info.sdk == "gradio" and [s.rfilename for s in info.siblings] == [
        ".gitattributes",
        "app.py",
    ]
    assert api.repo_exists(repo_id, repo_type="space")
    assert not api.repo_exists(repo_id, repo_type="dataset")
    assert api.file_exists(repo_id, "app.py", repo_type="space")
    assert not api.file_exists(repo_id, "nope.py", repo_type="space")
    assert api.revision_exists(repo_id, "main", repo_type="space")
    assert not api.revision_exists(repo_id, "nope", repo_type="space")
    assert [s.id for s in api.list_spaces(author="alice", search=unique_name)] == [repo_id]
