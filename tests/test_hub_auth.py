"""Access rules of the local Hub (spec "Errors and access"), through the client and raw HTTP."""

from __future__ import annotations

import json

import httpx
import pytest
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError


@pytest.fixture
def api(write_token) -> HfApi:
    return HfApi(token=write_token)


@pytest.fixture(scope="module")
def bob(hub) -> str:
    """A write token of `bob`, who is in no organization."""
    return hub.token("bob", write=True)


@pytest.fixture
def private_repo(api, unique_name) -> str:
    repo_id = f"alice/{unique_name}"
    api.create_repo(repo_id, repo_type="dataset", private=True)
    api.upload_file(
        path_or_fileobj=b"secret", path_in_repo="s.txt", repo_id=repo_id, repo_type="dataset"
    )
    return repo_id


def bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def commit_body(path: str = "x.txt") -> str:
    lines = [
        {"key": "header", "value": {"summary": "raw"}},
        {"key": "file", "value": {"path": path, "content": "eA==", "encoding": "base64"}},
    ]
    return "\n".join(json.dumps(line) for line in lines)


def raw_commit(hub, repo_id: str, token: str | None) -> httpx.Response:
    return httpx.post(
        f"{hub.url}/api/datasets/{repo_id}/commit/main",
        content=commit_body(),
        headers={"Content-Type": "application/x-ndjson", **bearer(token)},
    )


def assert_repo_not_found(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["X-Error-Code"] == "RepoNotFound"
    assert response.json()["error"]


# -- reads ----------------------------------------------------------------------------------------
def test_anonymous_read_of_private_or_missing(hub, private_repo):
    for repo_id in (private_repo, "alice/does-not-exist-at-all"):
        assert_repo_not_found(httpx.get(f"{hub.url}/api/datasets/{repo_id}"), 401)
        assert_repo_not_found(httpx.get(f"{hub.url}/datasets/{repo_id}/resolve/main/s.txt"), 401)
        with pytest.raises(RepositoryNotFoundError):
            HfApi(token=False).dataset_info(repo_id)


def test_token_without_access_sees_404(hub, private_repo, bob):
    for repo_id in (private_repo, "alice/does-not-exist-at-all"):
        answer = httpx.get(f"{hub.url}/api/datasets/{repo_id}", headers=bearer(bob))
        assert_repo_not_found(answer, 404)
        with pytest.raises(RepositoryNotFoundError):
            HfApi(token=bob).dataset_info(repo_id)
    # Not listed either.
    assert private_repo not in [d.id for d in HfApi(token=bob).list_datasets(author="alice")]


def test_private_resolve_needs_the_token(hub, private_repo, write_token, tmp_path):
    url = f"{hub.url}/datasets/{private_repo}/resolve/main/s.txt"
    assert httpx.get(url, headers=bearer(write_token)).content == b"secret"
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download(private_repo, "s.txt", repo_type="dataset", token=False, cache_dir=tmp_path)
    path = hf_hub_download(
        private_repo, "s.txt", repo_type="dataset", token=write_token, cache_dir=tmp_path
    )
    assert open(path, "rb").read() == b"secret"


def test_unknown_token(hub):
    for path in ("/api/whoami-v2", "/api/datasets/alice/anything", "/api/validate-yaml"):
        answer = httpx.get(f"{hub.url}{path}", headers=bearer("hf_not_a_real_token"))
        assert answer.status_code == 401
        assert answer.headers["X-Error-Message"] == "Invalid credentials in Authorization header"
    with pytest.raises(HfHubHTTPError) as exc:
        HfApi(token="hf_not_a_real_token").whoami()
    assert exc.value.response.status_code == 401


def test_whoami_roles(hub, write_token):
    me = HfApi(token=write_token).whoami()
    assert me["name"] == "alice" and me["type"] == "user"
    assert [o["name"] for o in me["orgs"]] == ["acme"]
    assert me["auth"]["accessToken"]["role"] == "write"
    reader = HfApi(token=hub.token("alice", write=False)).whoami()
    assert reader["auth"]["accessToken"]["role"] == "read"
    assert httpx.get(f"{hub.url}/api/whoami-v2").status_code == 401


# -- writes ---------------------------------------------------------------------------------------
def test_read_token_cannot_write(hub, api, unique_name):
    repo_id = f"alice/{unique_name}"
    api.create_repo(repo_id, repo_type="dataset")
    reader = HfApi(token=hub.token("alice", write=False))
    with pytest.raises(HfHubHTTPError) as exc:
        reader.upload_file(
            path_or_fileobj=b"x", path_in_repo="x", repo_id=repo_id, repo_type="dataset"
        )
    assert exc.value.response.status_code == 403
    with pytest.raises(HfHubHTTPError) as exc:
        reader.create_repo(f"alice/{unique_name}-2")
    assert exc.value.response.status_code == 403
    with pytest.raises(HfHubHTTPError) as exc:
        reader.create_tag(repo_id, tag="t", repo_type="dataset")
    assert exc.value.response.status_code == 403
    assert reader.dataset_info(repo_id).id == repo_id  # reading is fine


def test_anonymous_write(hub, api, unique_name):
    repo_id = f"alice/{unique_name}"
    api.create_repo(repo_id, repo_type="dataset")
    answer = raw_commit(hub, repo_id, None)
    assert answer.status_code == 401 and answer.headers["X-Error-Code"]
    create = httpx.post(f"{hub.url}/api/repos/create", json={"name": "anon", "type": "dataset"})
    assert create.status_code == 401
    delete = httpx.request(
        "DELETE", f"{hub.url}/api/repos/delete", json={"name": unique_name, "organization": "alice"}
    )
    assert delete.status_code == 401
    assert len(api.list_repo_commits(repo_id, repo_type="dataset")) == 1


def test_org_members_write_others_do_not(hub, api, bob, unique_name):
    public = api.create_repo(f"acme/{unique_name}", repo_type="dataset").repo_id
    private = api.create_repo(f"acme/{unique_name}-p", repo_type="dataset", private=True).repo_id
    for repo_id in (public, private):  # alice is a member of acme
        api.upload_file(
            path_or_fileobj=b"m", path_in_repo="m", repo_id=repo_id, repo_type="dataset"
        )
    outsider = HfApi(token=bob)
    with pytest.raises(HfHubHTTPError) as exc:
        outsider.upload_file(
            path_or_fileobj=b"x", path_in_repo="x", repo_id=public, repo_type="dataset"
        )
    assert exc.value.response.status_code == 403
    with pytest.raises(RepositoryNotFoundError) as exc:
        outsider.upload_file(
            path_or_fileobj=b"x", path_in_repo="x", repo_id=private, repo_type="dataset"
        )
    assert exc.value.response.status_code == 404
    assert raw_commit(hub, public, bob).status_code == 403
    assert_repo_not_found(raw_commit(hub, private, bob), 404)
    with pytest.raises(HfHubHTTPError) as exc:
        outsider.create_repo(f"acme/{unique_name}-bob")
    assert exc.value.response.status_code == 403
    with pytest.raises(HfHubHTTPError) as exc:
        outsider.delete_repo(public, repo_type="dataset")
    assert exc.value.response.status_code == 403
    assert outsider.dataset_info(public).id == public


def test_visibility_change(hub, api, unique_name):
    repo_id = api.create_repo(f"alice/{unique_name}", repo_type="dataset").repo_id
    assert httpx.get(f"{hub.url}/api/datasets/{repo_id}").status_code == 200
    api.update_repo_settings(repo_id, repo_type="dataset", private=True)
    assert_repo_not_found(httpx.get(f"{hub.url}/api/datasets/{repo_id}"), 401)
    assert api.dataset_info(repo_id).private is True


# -- repo ids that try to escape their namespace --------------------------------------------------
@pytest.mark.parametrize("name", ["..%2Fbob%2F{victim}", "x%2F..%2F..%2Fbob%2F{victim}"])
def test_repo_name_cannot_reach_other_namespace(hub, bob, unique_name, write_token, name):
    """alice owns `alice/...`: a name holding `../` must not land in bob's private repo."""
    HfApi(token=bob).create_repo(f"bob/{unique_name}", repo_type="dataset", private=True)
    sneaky = f"alice/{name.format(victim=unique_name)}"
    info = httpx.get(f"{hub.url}/api/datasets/{sneaky}", headers=bearer(write_token))
    assert_repo_not_found(info, 404)
    file = httpx.get(
        f"{hub.url}/datasets/{sneaky}/resolve/main/.gitattributes", headers=bearer(write_token)
    )
    assert_repo_not_found(file, 404)
    commit = raw_commit(hub, sneaky, write_token)
    assert_repo_not_found(commit, 404)
    assert len(HfApi(token=bob).list_repo_commits(f"bob/{unique_name}", repo_type="dataset")) == 1
