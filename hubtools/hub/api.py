"""Handlers of the local Hub's repository API (shared/specs/hub-http.md).

Each handler takes a `Call` and returns a Starlette response; access checks
come first, so private repos never leak through error messages or timing of
later steps.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode

import pygit2
from starlette.responses import JSONResponse, Response

from hubtools.hub import cardmeta
from hubtools.hub.auth import check_read, check_write
from hubtools.hub.errors import HubHTTPError, bad_request, repo_not_found
from hubtools.hub.files import FileHandlers
from hubtools.hub.lfs import is_sha256
from hubtools.hub.storage import (
    REPO_TYPES,
    AddFile,
    AddLfs,
    Delete,
    Entry,
    GitRepo,
    Operation,
    RepoRef,
    check_name,
    check_path,
    parse_lfs_pointer,
)

if TYPE_CHECKING:
    from hubtools.hub.app import Call, HubApp

TREE_PAGE, TREE_PAGE_EXPANDED, COMMITS_PAGE = 1000, 50, 50
LFS_SIZE_THRESHOLD = 10 * 1024**2
MAX_PREUPLOAD_FILES = 1000


def _entry_json(entry: Entry, repo: GitRepo | None = None, sha: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": entry.type, "oid": entry.oid, "size": entry.size, "path": entry.path
    }  # fmt: skip
    if entry.lfs:
        out["lfs"] = {
            "oid": entry.lfs.oid, "size": entry.lfs.size, "pointerSize": entry.lfs.pointer_size
        }  # fmt: skip
    if repo is not None:
        last = repo.last_commit(sha, entry.path)
        out["lastCommit"] = {"id": last.id, "title": last.title, "date": last.date}
    return out


class RepoAPI(FileHandlers):
    def __init__(self, app: HubApp):
        self.app = app
        self.git = app.git

    # -- helpers --------------------------------------------------------------
    def _open(self, call: Call, write: bool = False) -> GitRepo:
        ref: RepoRef = call.params["ref"]
        if not self.git.exists(ref):
            raise repo_not_found(ref.repo_id, status=401 if call.principal is None else 404)
        repo = self.git.open(ref)
        check = check_write if write else check_read
        check(call.principal, ref.namespace, repo.private, ref.repo_id)
        return repo

    def _repo_url(self, call: Call, ref: RepoRef) -> str:
        return f"{call.base_url}/{ref.url_prefix}{ref.repo_id}"

    def _require_token(self, call: Call):
        if call.principal is None:
            raise HubHTTPError(401, "You must be logged in: pass a token", "Unauthorized")
        return call.principal

    # -- account ----------------------------------------------------------------
    def whoami(self, call: Call) -> Response:
        p = self._require_token(call)
        return JSONResponse({
            "type": "user",
            "name": p.name,
            "fullname": p.name,
            "orgs": [{"type": "org", "name": org} for org in p.orgs],
            "auth": {
                "type": "access_token",
                "accessToken": {"displayName": p.token_name, "role": p.role},
            },
        })  # fmt: skip

    def agent_harnesses(self, call: Call) -> Response:
        return JSONResponse({"standardEnvVars": [], "harnesses": {}})

    # -- repos --------------------------------------------------------------------
    def _ref_from_body(self, call: Call, body: dict[str, Any]) -> RepoRef:
        p = self._require_token(call)
        repo_type = body.get("type") or "model"
        if repo_type not in REPO_TYPES:
            raise bad_request(f"Unknown repo type {repo_type!r}: use one of {REPO_TYPES}")
        name, org = body.get("name"), body.get("organization")
        if not isinstance(name, str) or not (org is None or isinstance(org, str)):
            raise bad_request("'name' must be a string and 'organization' a string or null")
        if "/" in name and org is None:
            org, name = name.split("/", 1)
        namespace = org or p.name
        return RepoRef(repo_type, check_name(namespace, "namespace"), check_name(name, "repo name"))

    def create_repo(self, call: Call) -> Response:
        body = call.json_object()
        ref = self._ref_from_body(call, body)
        p = call.principal
        if not p.owns(ref.namespace) or p.role != "write":
            raise HubHTTPError(
                403,
                f"You don't have the rights to create a repo under '{ref.namespace}'",
                "Forbidden",
            )
        sdk = body.get("sdk") if ref.type == "space" else None  # only Spaces keep one
        if ref.type == "space" and (not isinstance(sdk, str) or sdk not in cardmeta.SPACE_SDKS):
            raise bad_request(f"A Space needs an sdk, one of {sorted(cardmeta.SPACE_SDKS)}")
        private = body.get("visibility") == "private" or body.get("private") is True
        url = self._repo_url(call, ref)
        if not self.git.create(ref, private=private, owner=p.name, sdk=sdk):
            message = "You already created this repo"
            headers = {"X-Error-Message": message, "X-Error-Code": "Conflict"}
            return JSONResponse({"error": message, "url": url}, status_code=409, headers=headers)
        return JSONResponse({"url": url, "name": ref.repo_id, "id": ref.repo_id})

    def delete_repo(self, call: Call) -> Response:
        ref = self._ref_from_body(call, call.json_object())
        call.params["ref"] = ref
        self._open(call, write=True)
        with self.git.write_lock(ref):
            self.git.delete(ref)
        return Response(status_code=200)

    def update_settings(self, call: Call) -> Response:
        repo = self._open(call, write=True)
        body = call.json_object()
        private = body.get("private")
        if "visibility" in body:  # what huggingface_hub 2.x sends
            if body["visibility"] not in ("public", "private"):
                raise bad_request("'visibility' must be 'public' or 'private'")
            private = body["visibility"] == "private"
        if private is not None:
            if not isinstance(private, bool):
                raise bad_request("'private' must be a boolean")
            with self.git.write_lock(repo.ref):
                repo.set_private(private)
        return JSONResponse({"private": repo.private})

    def _info(self, call: Call, repo: GitRepo, sha: str, full: bool) -> dict[str, Any]:
        ref = repo.ref
        info: dict[str, Any] = {
            "_id": ref.repo_id, "id": ref.repo_id, "author": ref.namespace, "sha": sha,
            "private": repo.private, "gated": False, "disabled": False,
            "lastModified": repo.commit_time(sha), "createdAt": repo.created_at,
            "downloads": 0, "likes": 0, "tags": [],
        }  # fmt: skip
        if ref.type == "model":
            info["modelId"] = ref.repo_id
        if ref.type == "space":
            info["sdk"] = repo.sdk
            info["runtime"] = {"stage": "NO_APP_FILE", "hardware": {"current": None}}
        readme = repo.entry(sha, "README.md")
        if readme is not None and readme.type == "file" and readme.lfs is None:
            card = cardmeta.card_data(repo.read(sha, "README.md")[1].decode(errors="replace"))
            if card is not None:
                info["cardData"] = card
                tags = card.get("tags")
                info["tags"] = [tags] if isinstance(tags, str) else list(tags or [])
        if full:
            siblings = []
            for e in repo.list_tree(sha, recursive=True):
                if e.type != "file":
                    continue
                item: dict[str, Any] = {"rfilename": e.path}
                if call.flag("blobs"):
                    item |= {"size": e.size, "blobId": e.oid}
                    if e.lfs:
                        lfs = e.lfs
                        item["lfs"] = {
                            "sha256": lfs.oid, "size": lfs.size, "pointerSize": lfs.pointer_size
                        }  # fmt: skip
                siblings.append(item)
            info["siblings"] = siblings
        return info

    def repo_info(self, call: Call) -> Response:
        repo = self._open(call)
        sha = repo.resolve(call.params["revision"] or "main")
        return JSONResponse(self._info(call, repo, sha, full=True))

    def list_repos(self, call: Call) -> Response:
        author, search = call.arg("author"), (call.arg("search") or "").lower()
        limit = call.arg("limit") or "1000"
        if not limit.isdigit():
            raise bad_request("'limit' must be a positive integer")
        limit = int(limit)
        out = []
        for ref in self.git.list(call.params["type"]):
            if (author and ref.namespace != author) or search not in ref.repo_id.lower():
                continue
            call.params["ref"] = ref
            try:
                repo = self._open(call)
            except HubHTTPError:
                continue  # private repos of others are not listed
            out.append(self._info(call, repo, repo.resolve("main"), full=False))
            if len(out) >= limit:
                break
        return JSONResponse(out)

    def validate_yaml(self, call: Call) -> Response:
        body = call.json_object()
        content = body.get("content")
        if not isinstance(content, str):
            raise bad_request("'content' must be the README text")
        errors, warnings = cardmeta.validate(content, body.get("repoType") or "model")
        status = 400 if errors else 200
        return JSONResponse(
            {
                "errors": [{"message": e} for e in errors],
                "warnings": [{"message": w} for w in warnings],
            },
            status_code=status,
        )

    # -- commits --------------------------------------------------------------------
    def preupload(self, call: Call) -> Response:
        repo = self._open(call, write=True)
        sha = repo.resolve(call.params["revision"])
        files = call.json_object().get("files")
        if not isinstance(files, list) or len(files) > MAX_PREUPLOAD_FILES:
            raise bad_request(f"'files' must be a list of at most {MAX_PREUPLOAD_FILES} entries")
        out = []
        for f in files:
            if not isinstance(f, dict) or not isinstance(f.get("size", 0), int):
                raise bad_request("Each file needs a 'path' and an integer 'size'")
            path = check_path(f.get("path"))
            try:
                sample = base64.b64decode(f.get("sample") or "", validate=True)
            except (binascii.Error, TypeError):
                raise bad_request(f"Invalid base64 sample for {path}") from None
            lfs = (
                f.get("size", 0) > LFS_SIZE_THRESHOLD
                or b"\x00" in sample
                or repo.is_lfs_path(sha, path)
            )
            current = repo.entry(sha, path)
            oid = None
            if current is not None and current.type == "file":
                oid = current.lfs.oid if current.lfs else current.oid
            out.append({
                "path": path, "uploadMode": "lfs" if lfs else "regular",
                "shouldIgnore": False, "oid": oid,
            })  # fmt: skip
        return JSONResponse({"files": out, "commitOid": sha})

    def _parse_commit(self, call: Call, repo: GitRepo) -> tuple[dict[str, Any], list[Operation]]:
        header, ops = None, []
        for n, line in enumerate(call.body.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise bad_request(f"Malformed NDJSON: line {n} is not JSON") from None
            if not isinstance(item, dict) or not isinstance(item.get("value"), dict):
                raise bad_request(f"Malformed NDJSON: line {n} needs 'key' and an object 'value'")
            key, value = item.get("key"), item["value"]
            if key == "header":
                header = value
                continue
            if header is None:
                raise bad_request("Malformed NDJSON: the first line must be the header")
            ops.append(self._parse_op(call, repo, n, key, value))
        if header is None:
            raise bad_request("Malformed NDJSON: missing header line")
        if not isinstance(header.get("summary", ""), str):
            raise bad_request("header.summary must be a string")
        return header, ops

    def _parse_op(
        self, call: Call, repo: GitRepo, n: int, key: str, value: dict[str, Any]
    ) -> Operation:
        path = value.get("path")
        if key in ("deletedFile", "deletedFolder"):
            check_path(path.rstrip("/") if isinstance(path, str) else path)
            return Delete(path, folder=key == "deletedFolder")
        check_path(path)
        if key == "file":
            if value.get("encoding", "base64") != "base64" or not isinstance(
                value.get("content"), str
            ):
                raise bad_request(f"Line {n}: 'file' needs base64 'content'")
            try:
                data = base64.b64decode(value["content"], validate=True)
            except binascii.Error:
                raise bad_request(f"Line {n}: invalid base64 content for {path}") from None
            self._check_pointer(call, repo, n, path, data)
            return AddFile(path, data)
        if key == "lfsFile":
            oid, algo = value.get("oid"), value.get("algo", "sha256")
            if algo != "sha256" or not is_sha256(oid):
                raise bad_request(f"Line {n}: lfsFile needs a sha256 'oid'")
            stored = self.app.lfs.size(oid)
            if not self._lfs_usable(repo, oid):
                raise bad_request(f"Line {n}: LFS object {oid} for {path} was not uploaded")
            if value.get("size") is not None and value["size"] != stored:
                raise bad_request(f"Line {n}: size of {path} does not match the uploaded object")
            return AddLfs(path, oid, stored)
        raise bad_request(f"Line {n}: unknown operation {key!r}")

    def _lfs_usable(self, repo: GitRepo, oid: str) -> bool:
        """Only objects uploaded to this repo: knowing a sha256 is not access to a file.

        (The official client copies LFS files across repos only through Xet, which a
        local Hub does not speak, so there is no cross-repo grant to honour.)
        """
        return self.app.lfs.granted(self.git.path(repo.ref), oid)

    def _check_pointer(self, call: Call, repo: GitRepo, n: int, path: str, data: bytes) -> None:
        """Git stores LFS files as pointers: an inline pointer must name a stored object.

        Otherwise every download of it would fail, as on the Hub, which refuses such pushes.
        """
        pointer = parse_lfs_pointer(data)
        if pointer is not None and (
            self.app.lfs.size(pointer.oid) != pointer.size
            or not self._lfs_usable(repo, pointer.oid)
        ):
            raise bad_request(f"Line {n}: {path} is an LFS pointer to an object never uploaded")

    def commit(self, call: Call) -> Response:
        repo = self._open(call, write=True)
        header, ops = self._parse_commit(call, repo)
        message = header.get("summary") or "Upload files"
        if header.get("description"):
            message += "\n\n" + str(header["description"])
        revision, ref = call.params["revision"], repo.ref
        create_pr = call.flag("create_pr")
        with self.git.write_lock(ref):
            repo = self.git.open(ref)  # reopen under the lock: see every ref moved before us
            if create_pr:
                number = repo.next_pr_number()
                sha = repo.commit_on(repo.resolve(revision), ops, message, call.principal.name)
                repo.create_ref(f"refs/pr/{number}", sha)
            else:
                ref_name = repo.branch_ref(revision)
                sha = repo.commit(
                    ref_name, ops, message, call.principal.name, header.get("parentCommit")
                )
        url = self._repo_url(call, ref)
        out = {"commitOid": sha, "commitUrl": f"{url}/commit/{sha}", "success": True}
        if create_pr:
            out["pullRequestUrl"] = f"{url}/discussions/{number}"
        return JSONResponse(out)

    # -- refs ---------------------------------------------------------------------
    def _check_ref_name(self, name: Any, kind: str) -> str:
        if not isinstance(name, str) or not pygit2.reference_is_valid_name(f"refs/{kind}/{name}"):
            raise bad_request(f"Invalid {kind[:-1]} name {name!r}")
        return name

    def create_tag(self, call: Call) -> Response:
        repo = self._open(call, write=True)
        body = call.json_object()
        tag = self._check_ref_name(body.get("tag"), "tags")
        if not isinstance(body.get("message") or "", str):
            raise bad_request("'message' must be a string")
        with self.git.write_lock(repo.ref):
            sha = repo.resolve(call.params["revision"])
            repo.create_ref(f"refs/tags/{tag}", sha, body.get("message"), call.principal.name)
        return JSONResponse({"name": tag, "commitOid": sha})

    def delete_tag(self, call: Call) -> Response:
        repo = self._open(call, write=True)
        with self.git.write_lock(repo.ref):
            repo.delete_ref(f"refs/tags/{call.params['revision']}")
        return Response(status_code=200)

    def create_branch(self, call: Call) -> Response:
        repo = self._open(call, write=True)
        body = call.json_object()
        branch = self._check_ref_name(call.params["revision"], "heads")
        if not isinstance(body.get("startingPoint") or "", str):
            raise bad_request("'startingPoint' must be a revision name")
        with self.git.write_lock(repo.ref):
            start = repo.resolve(body.get("startingPoint") or "main")
            if body.get("overwrite") and repo.git.references.get(f"refs/heads/{branch}"):
                repo.delete_ref(f"refs/heads/{branch}")
            repo.create_ref(f"refs/heads/{branch}", start)
        return JSONResponse({"name": branch, "commitOid": start})

    def delete_branch(self, call: Call) -> Response:
        repo = self._open(call, write=True)
        if call.params["revision"] == "main":
            raise HubHTTPError(403, "The default branch 'main' cannot be deleted", "Forbidden")
        with self.git.write_lock(repo.ref):
            repo.delete_ref(f"refs/heads/{call.params['revision']}")
        return Response(status_code=200)

    def list_refs(self, call: Call) -> Response:
        repo = self._open(call)

        def refs(prefix: str) -> list[dict[str, str]]:
            return [
                {"name": name.removeprefix(prefix), "ref": name, "targetCommit": sha}
                for name, sha in repo.refs(prefix)
            ]

        out = {"branches": refs("refs/heads/"), "tags": refs("refs/tags/"), "converts": []}
        if call.flag("include_prs"):
            out["pullRequests"] = refs("refs/pr/")
        return JSONResponse(out)

    # -- listings ---------------------------------------------------------------------
    @staticmethod
    def _cursor(call: Call) -> int:
        cursor = call.arg("cursor") or "0"
        return int(cursor) if cursor.isdigit() else 0

    def _page(self, call: Call, page: list[Any], start: int, size: int, total: int) -> Response:
        """One page, with the absolute `Link` to the next that the clients follow.

        The link reuses the raw path: decoding it would turn `release%2F2024` into two segments.
        """
        headers = {}
        if start + size < total:
            query = {k: v[-1] for k, v in call.query.items()} | {"cursor": str(start + size)}
            url = f"{call.base_url}{call.raw_path}?{urlencode(query)}"
            headers["Link"] = f'<{url}>; rel="next"'
        return JSONResponse(page, headers=headers)

    def tree(self, call: Call) -> Response:
        repo = self._open(call)
        sha = repo.resolve(call.params["revision"])
        expand = call.flag("expand")
        entries = list(repo.list_tree(sha, call.params.get("path", ""), call.flag("recursive")))
        size, start = (TREE_PAGE_EXPANDED if expand else TREE_PAGE), self._cursor(call)
        page = [
            _entry_json(e, repo if expand else None, sha) for e in entries[start : start + size]
        ]
        return self._page(call, page, start, size, len(entries))

    def paths_info(self, call: Call) -> Response:
        repo = self._open(call)
        sha = repo.resolve(call.params["revision"])
        content_type = call.request.headers.get("content-type", "")
        if "json" in content_type:
            body = call.json_object()
            paths, expand = body.get("paths") or [], bool(body.get("expand"))
        else:
            form = parse_qs(call.body.decode("latin-1"))
            paths = form.get("paths", [])
            expand = (form.get("expand", ["false"])[-1]).lower() == "true"
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise bad_request("'paths' must be a list of strings")
        out = []
        for path in dict.fromkeys(p.strip("/") for p in paths):
            if path and (entry := repo.entry(sha, check_path(path))) is not None:
                out.append(_entry_json(entry, repo if expand else None, sha))
        return JSONResponse(out)

    def list_commits(self, call: Call) -> Response:
        repo = self._open(call)
        sha = repo.resolve(call.params["revision"])
        start, commits = self._cursor(call), list(repo.log(sha))
        page = [
            {"id": c.id, "title": c.title, "message": c.message, "date": c.date,
             "authors": [{"user": c.author}]}
            for c in commits[start : start + COMMITS_PAGE]
        ]  # fmt: skip
        return self._page(call, page, start, COMMITS_PAGE, len(commits))
