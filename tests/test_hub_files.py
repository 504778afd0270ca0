"""Downloads, HfFileSystem and the git-LFS protocol of the local Hub, with the real clients."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import httpx
import pytest
from huggingface_hub import (
    CommitOperationAdd,
    HfApi,
    HfFileSystem,
    hf_hub_download,
)
from huggingface_hub.errors import (
    EntryNotFoundError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

REGULAR = b"".join(f"line {i}\n".encode() for i in range(2000))
LFS_DATA = os.urandom(300_000)


@pytest.fixture
def api(write_token) -> HfApi:
    return HfApi(token=write_token)


@pytest.fixture
def repo(api, unique_name) -> dict[str, str]:
    """A dataset with a regular and an LFS file, tag `v1`, branch `release/2024` at v1, then v2."""
    repo_id = f"alice/{unique_name}"
    api.create_repo(repo_id, repo_type="dataset")
    v1 = api.create_commit(
        repo_id,
        repo_type="dataset",
        commit_message="v1",
        operations=[
            CommitOperationAdd("notes/regular.txt", REGULAR),
            CommitOperationAdd("data/blob.bin", LFS_DATA),
        ],
    )
    api.create_tag(repo_id, tag="v1", repo_type="dataset")
    api.create_branch(repo_id, branch="release/2024", repo_type="dataset")
    v2 = api.upload_file(
        path_or_fileobj=b"v2 only", path_in_repo="notes/regular.txt", repo_id=repo_id,
        repo_type="dataset", commit_message="v2",
    )  # fmt: skip
    return {"id": repo_id, "v1": v1.oid, "v2": v2.oid}


def download(repo: dict[str, str], filename: str, tmp_path: Path, **kw) -> bytes:
    path = hf_hub_download(repo["id"], filename, repo_type="dataset", cache_dir=tmp_path, **kw)
    return Path(path).read_bytes()


# -- hf_hub_download ---------------------------------------------------------------------------
def test_download_regular_and_lfs(repo, tmp_path):
    assert download(repo, "notes/regular.txt", tmp_path) == b"v2 only"
    assert download(repo, "data/blob.bin", tmp_path) == LFS_DATA


@pytest.mark.parametrize("revision", ["v1", "release/2024", "sha"])
def test_download_at_revision(repo, tmp_path, revision):
    rev = repo["v1"] if revision == "sha" else revision
    assert download(repo, "notes/regular.txt", tmp_path, revision=rev) == REGULAR
    assert download(repo, "data/blob.bin", tmp_path, revision=rev) == LFS_DATA


def test_download_errors(repo, tmp_path):
    with pytest.raises(RemoteEntryNotFoundError):
        download(repo, "missing.txt", tmp_path)
    with pytest.raises(EntryNotFoundError):  # the base class users catch
        download(repo, "notes", tmp_path)  # a directory is not a file
    with pytest.raises(RevisionNotFoundError):
        download(repo, "notes/regular.txt", tmp_path, revision="no-such-branch")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("alice/no-such-repo-xyz", "x", repo_type="dataset", cache_dir=tmp_path)


def test_resolve_headers(hub, repo):
    base = f"{hub.url}/datasets/{repo['id']}/resolve"
    head = httpx.head(f"{base}/main/data/blob.bin")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["X-Repo-Commit"] == repo["v2"]
    oid = hashlib.sha256(LFS_DATA).hexdigest()
    assert head.headers["ETag"] == f'"{oid}"' and head.headers["X-Linked-Etag"] == f'"{oid}"'
    assert head.headers["X-Linked-Size"] == head.headers["Content-Length"] == str(len(LFS_DATA))
    head = httpx.head(f"{base}/release%2F2024/notes/regular.txt")
    assert head.headers["X-Repo-Commit"] == repo["v1"]
    assert head.headers["Content-Length"] == str(len(REGULAR))
    missing = httpx.head(f"{base}/main/nope.txt")
    assert missing.status_code == 404 and missing.headers["X-Error-Code"] == "EntryNotFound"
    assert missing.headers["X-Repo-Commit"] == repo["v2"]


@pytest.mark.parametrize("path", ["notes/regular.txt", "data/blob.bin"])
def test_resolve_ranges(hub, repo, path):
    url = f"{hub.url}/datasets/{repo['id']}/resolve/v1/{path}"
    data = REGULAR if path.endswith(".txt") else LFS_DATA
    part = httpx.get(url, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == data[100:200]
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(data)}"
    tail = httpx.get(url, headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == data[-10:]
    open_end = httpx.get(url, headers={"Range": f"bytes={len(data) - 5}-"})
    assert open_end.content == data[-5:]
    past = httpx.get(url, headers={"Range": f"bytes={len(data)}-{len(data) + 10}"})
    assert past.status_code == 416 and past.headers["Content-Range"] == f"bytes */{len(data)}"
    assert past.headers["X-Error-Code"]


def test_snapshot_download_at_tag(api, repo, tmp_path):
    folder = Path(
        api.snapshot_download(repo["id"], repo_type="dataset", revision="v1", cache_dir=tmp_path)
    )
    assert (folder / "notes/regular.txt").read_bytes() == REGULAR
    assert (folder / "data/blob.bin").read_bytes() == LFS_DATA
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) == [
        ".gitattributes", "data/blob.bin", "notes/regular.txt"
    ]  # fmt: skip
    assert folder.name == repo["v1"]


# -- HfFileSystem -------------------------------------------------------------------------------
def test_hffs_ls_glob_info(repo, write_token):
    fs = HfFileSystem(token=write_token)
    root = f"datasets/{repo['id']}"
    names = sorted(e["name"] for e in fs.ls(root, detail=True))
    assert names == [f"{root}/.gitattributes", f"{root}/data", f"{root}/notes"]
    assert fs.glob(f"{root}/**/*.bin") == [f"{root}/data/blob.bin"]
    info = fs.info(f"{root}/data/blob.bin")
    assert info["type"] == "file" and info["size"] == len(LFS_DATA)
    assert info["lfs"]["sha256"] == hashlib.sha256(LFS_DATA).hexdigest()
    assert fs.info(f"{root}/notes")["type"] == "directory"
    assert fs.info(f"{root}@release%2F2024/notes/regular.txt")["size"] == len(REGULAR)
    with pytest.raises(FileNotFoundError):
        fs.info(f"{root}/nope.txt")
    with pytest.raises(FileNotFoundError):
        fs.ls("datasets/alice/no-such-repo-xyz")
    with pytest.raises(FileNotFoundError):
        fs.ls(f"{root}@no-such-rev")


@pytest.mark.parametrize("path", ["notes/regular.txt", "data/blob.bin"])
def test_hffs_open_range_reads(repo, write_token, path):
    fs = HfFileSystem(token=write_token)
    data = REGULAR if path.endswith(".txt") else LFS_DATA
    with fs.open(f"datasets/{repo['id']}@v1/{path}", "rb", block_size=4096) as fh:
        fh.seek(1234)
        assert fh.read(100) == data[1234:1334]
        fh.seek(len(data) - 7)
        assert fh.read() == data[-7:]
        fh.seek(10)
        assert fh.read(5000) == data[10:5010]
    assert fs.cat_file(f"datasets/{repo['id']}@v1/{path}", start=5, end=25) == data[5:25]


# -- git-LFS protocol ---------------------------------------------------------------------------
def lfs_batch(hub, repo_id: str, token: str | None, objects: list[dict]) -> httpx.Response:
    headers = {"Accept": "application/vnd.git-lfs+json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    body = {
        "operation": "upload",
        "transfers": ["basic"],
        "objects": objects,
        "hash_algo": "sha256",
    }
    return httpx.post(
        f"{hub.url}/datasets/{repo_id}.git/info/lfs/objects/batch", json=body, headers=headers
    )


def test_lfs_upload_without_authorization(hub, api, write_token, unique_name):
    repo_id = f"alice/{unique_name}"
    api.create_repo(repo_id, repo_type="dataset")
    data = os.urandom(1000)
    obj = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data)}
    answer = lfs_batch(hub, repo_id, write_token, [obj])
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/vnd.git-lfs+json")
    actions = answer.json()["objects"][0]["actions"]
    # The upload link is the credential: no Authorization header is sent, as the client does.
    put = httpx.put(actions["upload"]["href"], content=data)
    assert put.status_code == 200
    verify = httpx.post(
        actions["verify"]["href"], json=obj, headers={"Authorization": f"Bearer {write_token}"}
    )
    assert verify.status_code == 200
    # Once stored, the same object needs no upload.
    again = lfs_batch(hub, repo_id, write_token, [obj])
    assert "actions" not in again.json()["objects"][0]
    # And a commit can reference it.
    lines = [
        {"key": "header", "value": {"summary": "lfs"}},
        {"key": "lfsFile", "value": {"path": "w.bin", "algo": "sha256", **obj}},
    ]
    commit = httpx.post(
        f"{hub.url}/api/datasets/{repo_id}/commit/main",
        content="\n".join(map(json.dumps, lines)),
        headers={"Authorization": f"Bearer {write_token}", "Content-Type": "application/x-ndjson"},
    )
    assert commit.status_code == 200, commit.text
    got = httpx.get(f"{hub.url}/datasets/{repo_id}/resolve/main/w.bin")
    assert got.content == data


def test_lfs_batch_needs_write_access(hub, api, unique_name):
    repo_id = f"alice/{unique_name}"
    api.create_repo(repo_id, repo_type="dataset")
    obj = {"oid": hashlib.sha256(b"x").hexdigest(), "size": 1}
    anonymous = lfs_batch(hub, repo_id, None, [obj])
    assert anonymous.status_code == 401
    reader = lfs_batch(hub, repo_id, hub.token("bob"), [obj])
    assert reader.status_code == 403


def test_lfs_put_tampered_or_mismatched(hub, api, write_token, unique_name):
    repo_id = f"alice/{unique_name}"
    api.create_repo(repo_id, repo_type="dataset")
    data = os.urandom(2000)
    oid = hashlib.sha256(data).hexdigest()
    href = lfs_batch(hub, repo_id, write_token, [{"oid": oid, "size": len(data)}]).json()
    href = href["objects"][0]["actions"]["upload"]["href"]
    # A changed signature, size or expiry: 403, nothing stored.
    sig = href.rsplit("sig=", 1)[1]
    forged = href.replace(sig, ("0" if sig[0] != "0" else "1") + sig[1:])
    for bad in (forged, href.replace(f"size={len(data)}", "size=5"), href.split("&sig=")[0]):
        put = httpx.put(bad, content=data)
        assert put.status_code == 403 and put.headers["X-Error-Code"] == "Forbidden"
    # Wrong bytes under a valid link: 400, and the object is still missing.
    wrong = httpx.put(href, content=os.urandom(2000))
    assert wrong.status_code == 400 and wrong.headers["X-Error-Code"]
    short = httpx.put(href, content=data[:-1])
    assert short.status_code == 400
    long = httpx.put(href, content=data + b"!")
    assert long.status_code == 400
    again = lfs_batch(hub, repo_id, write_token, [{"oid": oid, "size": len(data)}])
    assert "actions" in again.json()["objects"][0]
    # The genuine bytes still go through.
    assert httpx.put(href, content=data).status_code == 200


# -- what goes to LFS, odd names -----------------------------------------------------------------
def test_lfs_by_size_and_by_gitattributes(api, unique_name, tmp_path):
    repo_id = f"alice/{unique_name}"
    api.create_repo(repo_id, repo_type="dataset")
    big = os.urandom(1024) * (10 * 1024 + 1)  # just over 10 MB, a .txt name
    api.create_commit(
        repo_id, repo_type="dataset", commit_message="big",
        operations=[
            CommitOperationAdd("big.txt", big),
            CommitOperationAdd(".gitattributes", b"*.dat filter=lfs diff=lfs merge=lfs -text\n"),
        ],
    )  # fmt: skip
    api.create_commit(
        repo_id, repo_type="dataset", commit_message="by pattern",
        operations=[CommitOperationAdd("x.dat", b"small"), CommitOperationAdd("y.bin", b"bin")],
    )  # fmt: skip
    tree = {e.path: e for e in api.list_repo_tree(repo_id, repo_type="dataset")}
    assert tree["big.txt"].lfs.size == len(big)
    assert tree["x.dat"].lfs.sha256 == hashlib.sha256(b"small").hexdigest()
    assert tree["y.bin"].lfs is None  # *.bin is no longer in this repo's .gitattributes
    path = hf_hub_download(repo_id, "big.txt", repo_type="dataset", cache_dir=tmp_path)
    assert Path(path).read_bytes() == big


def test_unusual_file_names(api, write_token, unique_name, tmp_path):
    repo_id = f"alice/{unique_name}"
    api.create_repo(repo_id, repo_type="dataset")
    names = ["dir with space/ünï côdé.txt", "odd/#hash?q=1&x%20.txt", "odd/plus+semi;colon.txt"]
    api.create_commit(
        repo_id, repo_type="dataset", commit_message="odd names",
        operations=[CommitOperationAdd(n, n.encode()) for n in names],
    )  # fmt: skip
    assert sorted(api.list_repo_files(repo_id, repo_type="dataset")) == sorted(
        [".gitattributes", *names]
    )
    for name in names:
        path = hf_hub_download(repo_id, name, repo_type="dataset", cache_dir=tmp_path)
        assert Path(path).read_bytes() == name.encode()
    sub = [e.path for e in api.list_repo_tree(repo_id, "dir with space", repo_type="dataset")]
    assert sub == [names[0]]
    fs = HfFileSystem(token=write_token)
    assert fs.cat_file(f"datasets/{repo_id}/{names[1]}") == names[1].encode()


def test_lfs_objects_are_scoped_per_repo(hub, api, write_token, unique_name):
    """Knowing a sha256 is not access: another user can neither probe nor commit it."""
    secret = os.urandom(5000)
    private = f"alice/{unique_name}-private"
    api.create_repo(private, repo_type="dataset", private=True)
    api.upload_file(path_or_fileobj=secret, path_in_repo="secret.bin", repo_id=private,
                    repo_type="dataset")  # fmt: skip
    obj = {"oid": hashlib.sha256(secret).hexdigest(), "size": len(secret)}
    mallory = hub.token("mallory", write=True)
    theirs = f"mallory/{unique_name}"
    HfApi(token=mallory).create_repo(theirs, repo_type="dataset")
    # The batch API does not reveal that the content exists elsewhere: it asks for an upload.
    probe = lfs_batch(hub, theirs, mallory, [obj])
    assert "actions" in probe.json()["objects"][0]
    lines = [
        {"key": "header", "value": {"summary": "steal"}},
        {"key": "lfsFile", "value": {"path": "stolen.bin", "algo": "sha256", **obj}},
    ]
    steal = httpx.post(
        f"{hub.url}/api/datasets/{theirs}/commit/main",
        content="\n".join(map(json.dumps, lines)),
        headers={"Authorization": f"Bearer {mallory}", "Content-Type": "application/x-ndjson"},
    )
    assert steal.status_code == 400 and "not uploaded" in steal.json()["error"]
    # Alice's own repo still serves it.
    got = httpx.get(f"{hub.url}/datasets/{private}/resolve/main/secret.bin",
                    headers={"Authorization": f"Bearer {write_token}"})  # fmt: skip
    assert got.content == secret
