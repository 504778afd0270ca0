"""Bad input gets a clean 4xx JSON answer with X-Error-Code, never a 500; README validation."""

from __future__ import annotations

import base64
import hashlib
import json

import httpx
import pytest
from huggingface_hub import CommitOperationAdd, HfApi
from huggingface_hub.errors import HfHubHTTPError

GOOD_CARD = """---
license: mit
pretty_name: Good
configs:
- config_name: main
  data_files:
  - split: train
    path: data/*.parquet
---
# A good card
"""


@pytest.fixture(scope="module")
def token(hub) -> str:
    return hub.token("carol", "carol-org", write=True)


@pytest.fixture(scope="module")
def repo(hub, token) -> str:
    """A dataset of carol's with one regular file, shared by the read-only cases below."""
    api = HfApi(token=token)
    repo_id = api.create_repo("carol/bad-input", repo_type="dataset").repo_id
    api.upload_file(
        path_or_fileobj=b"abc", path_in_repo="a.txt", repo_id=repo_id, repo_type="dataset"
    )
    return repo_id


def assert_clean_error(response: httpx.Response, status: int, code: str | None = None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"] and response.headers["X-Error-Message"]
    assert response.headers["X-Error-Code"] == (code or response.headers["X-Error-Code"])


def ndjson(*ops: dict, header: dict | None = None) -> bytes:
    lines = [{"key": "header", "value": header or {"summary": "s"}}, *ops]
    return "\n".join(json.dumps(line) for line in lines).encode()


def add(path: str, data: bytes = b"x") -> dict:
    return {"key": "file", "value": {"path": path, "content": base64.b64encode(data).decode()}}


def post_commit(hub, repo_id: str, token: str, body: bytes) -> httpx.Response:
    return httpx.post(
        f"{hub.url}/api/datasets/{repo_id}/commit/main",
        content=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"},
    )


# -- commits --------------------------------------------------------------------------------------
SHA = "a" * 64
BAD_COMMITS = {
    "not-json": b'{"key":"header","value":{"summary":"s"}}\nthis is not json',
    "not-utf8": b'{"key":"header","value":{"summary":"s"}}\n\xff\xfe',
    "no-header": b'{"key":"file","value":{"path":"x","content":"eA=="}}',
    "empty": b"",
    "value-not-object": ndjson({"key": "file", "value": "x"}),
    "summary-not-string": ndjson(header={"summary": 5}),
    "unknown-op": ndjson({"key": "rename", "value": {"path": "x"}}),
    "bad-base64": ndjson({"key": "file", "value": {"path": "x", "content": "!!not base64!!"}}),
    "content-not-string": ndjson({"key": "file", "value": {"path": "x", "content": 5}}),
    "other-encoding": ndjson(
        {"key": "file", "value": {"path": "x", "content": "x", "encoding": "utf-8"}}
    ),
    "dotdot": ndjson(add("../x")),
    "absolute": ndjson(add("/abs")),
    "inner-dotdot": ndjson(add("a/../b")),
    "dot-git": ndjson(add(".git/config")),
    "nested-dot-git": ndjson(add("sub/.git/hooks/pre-commit")),
    "backslash": ndjson(add("a\\..\\b")),
    "empty-segment": ndjson(add("a//b")),
    "path-not-string": ndjson(add("x") | {"value": {"path": 5, "content": "eA=="}}),
    "delete-dotdot": ndjson({"key": "deletedFile", "value": {"path": "../a.txt"}}),
    "delete-root-folder": ndjson({"key": "deletedFolder", "value": {"path": "/"}}),
    "lfs-not-uploaded": ndjson(
        {"key": "lfsFile", "value": {"path": "w.bin", "algo": "sha256", "oid": SHA, "size": 3}}
    ),
    "lfs-bad-oid": ndjson({"key": "lfsFile", "value": {"path": "w.bin", "oid": "xyz", "size": 3}}),
    "file-under-file": ndjson(add("a.txt/inner")),
    "file-over-dir": ndjson(add("d/x"), add("d")),
}


@pytest.mark.parametrize("body", BAD_COMMITS.values(), ids=BAD_COMMITS.keys())
def test_bad_commit_is_400(hub, token, repo, body):
    before = HfApi(token=token).dataset_info(repo).sha
    assert_clean_error(post_commit(hub, repo, token, body), 400, "BadRequest")
    assert HfApi(token=token).dataset_info(repo).sha == before  # nothing was committed


def test_commit_status_codes(hub, token, repo):
    missing = ndjson({"key": "deletedFile", "value": {"path": "nope.txt"}})
    assert_clean_error(post_commit(hub, repo, token, missing), 404, "EntryNotFound")
    stale = ndjson(add("b.txt"), header={"summary": "s", "parentCommit": "0" * 40})
    assert_clean_error(post_commit(hub, repo, token, stale), 412)
    to_tag = httpx.post(
        f"{hub.url}/api/datasets/{repo}/commit/no-such-branch",
        content=ndjson(add("b.txt")),
        headers={"Authorization": f"Bearer {token}"},
    )
    assert_clean_error(to_tag, 404, "RevisionNotFound")


# -- other endpoints ---------------------------------------------------------------------------
def bad_requests(repo: str) -> list[tuple[str, str, object, int, str]]:
    """(method, path, body, status, X-Error-Code); body bytes are sent as is, else as JSON."""
    api, lfs = f"/api/datasets/{repo}", f"/datasets/{repo}.git/info/lfs/objects"
    return [
        ("POST", "/api/repos/create", b"{not json", 400, "BadRequest"),
        ("POST", "/api/repos/create", b"[1, 2]", 400, "BadRequest"),
        ("POST", "/api/repos/create", {"name": 5}, 400, "BadRequest"),
        ("POST", "/api/repos/create", {"name": "x", "type": "bucket"}, 400, "BadRequest"),
        ("POST", "/api/repos/create", {"name": "s", "type": "space"}, 400, "BadRequest"),
        (
            "POST",
            "/api/repos/create",
            {"name": "s", "type": "space", "sdk": ["x"]},
            400,
            "BadRequest",
        ),
        ("POST", "/api/repos/create", {"name": "x", "organization": "acme"}, 403, "Forbidden"),
        ("DELETE", "/api/repos/delete", b"nope", 400, "BadRequest"),
        ("POST", "/api/validate-yaml", {"content": 5}, 400, "BadRequest"),
        ("POST", "/api/validate-yaml", b"\x00\x01", 400, "BadRequest"),
        ("POST", f"{api}/preupload/main", {"files": "a.txt"}, 400, "BadRequest"),
        ("POST", f"{api}/preupload/main", {"files": [5]}, 400, "BadRequest"),
        (
            "POST",
            f"{api}/preupload/main",
            {"files": [{"path": "../x", "size": 1}]},
            400,
            "BadRequest",
        ),
        (
            "POST",
            f"{api}/preupload/main",
            {"files": [{"path": "x", "sample": "@@"}]},
            400,
            "BadRequest",
        ),
        (
            "POST",
            f"{api}/preupload/main",
            {"files": [{"path": "x", "sample": 5}]},
            400,
            "BadRequest",
        ),
        ("POST", f"{api}/preupload/nope", {"files": []}, 404, "RevisionNotFound"),
        ("POST", f"{api}/paths-info/main", {"paths": ["a/../b"]}, 400, "BadRequest"),
        ("POST", f"{api}/paths-info/main", {"paths": "a.txt"}, 400, "BadRequest"),
        ("POST", f"{api}/tag/main", {"tag": "bad..name"}, 400, "BadRequest"),
        ("POST", f"{api}/tag/main", {"tag": 5}, 400, "BadRequest"),
        ("POST", f"{api}/tag/main", {"tag": "ok", "message": 5}, 400, "BadRequest"),
        ("POST", f"{api}/tag/nope", {"tag": "ok2"}, 404, "RevisionNotFound"),
        ("POST", f"{api}/branch/bad~name", {}, 400, "BadRequest"),
        ("POST", f"{api}/branch/b1", {"startingPoint": 5}, 400, "BadRequest"),
        ("POST", f"{api}/branch/b2", {"startingPoint": "nope"}, 404, "RevisionNotFound"),
        ("DELETE", f"{api}/branch/main", None, 403, "Forbidden"),
        ("PUT", f"{api}/settings", {"visibility": "secret"}, 400, "BadRequest"),
        ("PUT", f"{api}/settings", {"private": "yes"}, 400, "BadRequest"),
        ("GET", f"{api}/revision/a%00b", None, 404, "RevisionNotFound"),
        ("GET", f"{api}/revision/a..b", None, 404, "RevisionNotFound"),
        ("GET", f"{api}/tree/main/..%2F..", None, 404, "EntryNotFound"),
        ("GET", f"{api}/tree/main/a.txt", None, 404, "EntryNotFound"),
        ("GET", f"/datasets/{repo}/resolve/main/..%2F..%2Fsecret", None, 404, "EntryNotFound"),
        ("GET", f"/datasets/{repo}/resolve/main/.git/config", None, 404, "EntryNotFound"),
        ("GET", "/api/datasets?limit=lots", None, 400, "BadRequest"),
        ("POST", f"{lfs}/batch", {"operation": "upload", "objects": [5]}, 400, "BadRequest"),
        (
            "POST",
            f"{lfs}/batch",
            {"operation": "upload", "objects": [{"oid": "x"}]},
            400,
            "BadRequest",
        ),
        ("POST", f"{lfs}/batch", {"operation": "delete", "objects": []}, 400, "BadRequest"),
        ("POST", f"{lfs}/verify", {"oid": SHA, "size": 1}, 404, "NotFound"),
        ("GET", "/api/no/such/route", None, 404, "NotFound"),
        ("PATCH", f"{api}/commit/main", b"", 404, "NotFound"),
        ("GET", "/nothing-here", None, 404, "NotFound"),
    ]


def test_bad_requests_are_clean_4xx(hub, token, repo):
    failures = []
    for method, path, body, status, code in bad_requests(repo):
        kw = {"content": body} if isinstance(body, bytes) else {"json": body}
        answer = httpx.request(
            method, f"{hub.url}{path}", headers={"Authorization": f"Bearer {token}"}, **kw
        )
        try:
            assert_clean_error(answer, status, code)
        except (AssertionError, KeyError, ValueError) as e:
            failures.append(f"{method} {path} {body!r}: {answer.status_code} {answer.text} ({e!r})")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize(
    "name", ["a--b", "-x", "x-", "a..b", "x.git", "n" * 97, "", "a b", "a/b/c", "ümlaut"]
)
def test_invalid_repo_names(hub, token, name):
    answer = httpx.post(
        f"{hub.url}/api/repos/create",
        json={"name": name, "type": "dataset", "organization": "carol"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert_clean_error(answer, 400, "BadRequest")


def test_longest_valid_name(hub, token):
    name = "n" * 96
    assert (
        HfApi(token=token).create_repo(f"carol/{name}", repo_type="dataset").repo_id.endswith(name)
    )


def test_range_past_the_end(hub, repo):
    answer = httpx.get(
        f"{hub.url}/datasets/{repo}/resolve/main/a.txt", headers={"Range": "bytes=3-"}
    )
    assert_clean_error(answer, 416, "RangeNotSatisfiable")
    assert answer.headers["Content-Range"] == "bytes */3"
    reversed_range = httpx.get(
        f"{hub.url}/datasets/{repo}/resolve/main/a.txt", headers={"Range": "bytes=2-1"}
    )
    assert reversed_range.status_code == 416


def test_body_over_the_limit(fresh_hub):
    fresh_hub.start("--max-body-mb", "1")
    token = fresh_hub.token("dave", write=True)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"}
    HfApi(endpoint=fresh_hub.url, token=token).create_repo("dave/big", repo_type="dataset")
    url = f"{fresh_hub.url}/api/datasets/dave/big/commit/main"
    big = ndjson(add("big.txt", b"x" * (2 * 1024**2)))
    assert_clean_error(httpx.post(url, content=big, headers=headers), 413, "PayloadTooLarge")

    def chunks():  # no Content-Length: the limit holds while streaming too
        yield from (big[i : i + 65536] for i in range(0, len(big), 65536))

    assert_clean_error(httpx.post(url, content=chunks(), headers=headers), 413, "PayloadTooLarge")
    # Under the limit is fine, and the server is still up.
    small = ndjson(add("small.txt", b"x" * 500_000))
    assert httpx.post(url, content=small, headers=headers).status_code == 200


# -- README metadata -----------------------------------------------------------------------------
def upload_readme(api: HfApi, repo_id: str, text: str):
    return api.upload_file(
        path_or_fileobj=text.encode(),
        path_in_repo="README.md",
        repo_id=repo_id,
        repo_type="dataset",
    )


@pytest.mark.parametrize(
    ("card", "message"),
    [
        ("---\nlicense: [mit\n---\n", "does not parse"),
        ("---\nconfigs:\n- data_files: x.csv\n---\n", "config_name"),
        ("---\nconfigs:\n- config_name: a\n- config_name: a\n---\n", "duplicate"),
        ("---\nsize_categories: huge\n---\n", "size_categories"),
        ("---\nlicense: 5\n---\n", "license"),
        ("---\n- just\n- a list\n---\n", "mapping"),
        ("---\ndataset_info:\n  splits: 5\n---\n", "splits"),
    ],
    ids=["yaml", "no-config-name", "duplicate", "size", "license", "list", "splits"],
)
def test_bad_card_rejected(token, unique_name, card, message):
    api = HfApi(token=token)
    repo_id = api.create_repo(f"carol/{unique_name}", repo_type="dataset").repo_id
    with pytest.raises(ValueError, match="metadata") as exc:
        upload_readme(api, repo_id, card)
    assert message in str(exc.value)
    assert "README.md" not in api.list_repo_files(repo_id, repo_type="dataset")


def test_good_card_accepted_and_visible(hub, token, unique_name):
    api = HfApi(token=token)
    repo_id = api.create_repo(f"carol/{unique_name}", repo_type="dataset").repo_id
    upload_readme(api, repo_id, GOOD_CARD)
    card = api.dataset_info(repo_id).card_data
    assert card["license"] == "mit" and card["configs"][0]["config_name"] == "main"
    # Anonymous validation works and answers JSON.
    answer = httpx.post(
        f"{hub.url}/api/validate-yaml", json={"content": GOOD_CARD, "repoType": "dataset"}
    )
    assert answer.status_code == 200 and answer.json() == {"errors": [], "warnings": []}
    bad = httpx.post(f"{hub.url}/api/validate-yaml", json={"content": "---\na: [\n---\n"})
    assert bad.status_code == 400 and bad.json()["errors"][0]["message"]


def pointer(data: bytes) -> bytes:
    oid = hashlib.sha256(data).hexdigest()
    return (
        f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {len(data)}\n".encode()
    )


def test_inline_lfs_pointer(token, unique_name, tmp_path):
    """Git keeps LFS files as pointers, so an inline pointer must name a stored object."""
    api = HfApi(token=token)
    repo_id = api.create_repo(f"carol/{unique_name}", repo_type="dataset").repo_id
    dangling = pointer(b"never uploaded " + unique_name.encode())
    with pytest.raises(HfHubHTTPError) as exc:
        api.create_commit(
            repo_id, repo_type="dataset", commit_message="dangling",
            operations=[CommitOperationAdd("fake.txt", dangling)],
        )  # fmt: skip
    assert exc.value.response.status_code == 400
    assert "fake.txt" not in api.list_repo_files(repo_id, repo_type="dataset")
    # A pointer to an object that is stored behaves as that LFS file, as in git-lfs.
    payload = b"stored payload " + unique_name.encode()
    api.upload_file(
        path_or_fileobj=payload, path_in_repo="w.bin", repo_id=repo_id, repo_type="dataset"
    )
    api.upload_file(
        path_or_fileobj=pointer(payload), path_in_repo="p.txt", repo_id=repo_id, repo_type="dataset"
    )
    path = api.hf_hub_download(repo_id, "p.txt", repo_type="dataset", cache_dir=tmp_path)
    assert open(path, "rb").read() == payload
