"""The local Hub's ASGI application: routing, auth, bodies and error shapes.

Routing happens on the raw request path (`scope["raw_path"]`), segment by
segment, because revisions arrive percent-encoded (`refs%2Fpr%2F1`) and a
router that decodes first would split them. Handlers are plain functions run
in worker threads; only LFS uploads stream on the event loop.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from hubtools.hub.auth import Accounts, Principal
from hubtools.hub.errors import HubHTTPError, bad_request, too_large
from hubtools.hub.lfs import LfsStore
from hubtools.hub.storage import REPO_TYPES, GitStore, RepoRef

log = logging.getLogger("hubtools.hub")

DEFAULT_MAX_BODY_BYTES = 512 * 1024**2
DEFAULT_MAX_LFS_OBJECT_BYTES = 50 * 1024**3


@dataclass
class Call:
    """One request as the handlers see it: decoded route parts, caller, body."""

    request: Request
    method: str
    base_url: str
    principal: Principal | None
    query: dict[str, list[str]]
    body: bytes = b""
    raw_path: str = ""  # still percent-encoded, for links back to this route
    params: dict[str, Any] = field(default_factory=dict)

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default

    def flag(self, name: str) -> bool:
        return (self.arg(name) or "").lower() in ("1", "true", "yes")

    def json(self) -> Any:
        if not self.body:
            return {}
        try:
            return json.loads(self.body)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise bad_request(f"Malformed JSON body: {e}") from None

    def json_object(self) -> dict[str, Any]:
        data = self.json()
        if not isinstance(data, dict):
            raise bad_request("The JSON body must be an object")
        return data


def error_response(err: HubHTTPError) -> Response:
    # Header values must be printable ASCII: a NUL or CR echoed from a URL would crash h11.
    # h11 also refuses leading or trailing whitespace in a value.
    safe = "".join(c if " " <= c <= "~" else "?" for c in err.message).strip()
    headers = {"X-Error-Message": safe[:1000], **err.headers}
    if err.code:
        headers["X-Error-Code"] = err.code
    return JSONResponse({"error": err.message}, status_code=err.status, headers=headers)


class HubApp:
    """`hubtools hub serve`: a Hub-compatible server backed by git repositories."""

    def __init__(
        self,
        root: Path,
        *,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_lfs_object_bytes: int = DEFAULT_MAX_LFS_OBJECT_BYTES,
        fsync: bool = True,
    ):
        from hubtools.hub.api import RepoAPI  # handlers need the stores built here

        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.git = GitStore(self.root, fsync=fsync)
        self.accounts = Accounts(self.root)
        self.lfs = LfsStore(self.root, max_lfs_object_bytes)
        self.max_body_bytes = max_body_bytes
        self.api = RepoAPI(self)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        try:
            response = await self._dispatch(request)
        except HubHTTPError as err:
            response = error_response(err)
        except Exception as exc:  # a bug, not bad input: keep the server up and say so
            log.exception("internal error on %s %s", request.method, request.url.path)
            response = error_response(HubHTTPError(500, f"Internal error: {exc}", "InternalError"))
        await response(scope, receive, send)

    async def _read_body(self, request: Request) -> bytes:
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > self.max_body_bytes:
            raise too_large(f"Request body over the {self.max_body_bytes}-byte limit")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body_bytes:
                raise too_large(f"Request body over the {self.max_body_bytes}-byte limit")
            chunks.append(chunk)
        return b"".join(chunks)

    async def _dispatch(self, request: Request) -> Response:
        raw = request.scope.get("raw_path") or request.scope["path"].encode()
        raw = raw.decode("latin-1").split("?", 1)[0]
        parts = raw.strip("/").split("/") if raw.strip("/") else []
        method = request.method
        query = parse_qs(request.scope.get("query_string", b"").decode("latin-1"))

        if parts[:1] == ["lfs-upload"] and len(parts) == 2 and method == "PUT":
            # Capability link: authorised by its signature, never by a header.
            q = {k: v[-1] for k, v in query.items()}
            oid = unquote(parts[1])
            repo_key, size = self.lfs.check_capability(oid, q)
            ref = RepoRef.from_key(repo_key)
            if ref is None or not self.git.exists(ref):
                raise HubHTTPError(404, "The repo of this upload link is gone", "RepoNotFound")
            await self.lfs.receive(oid, size, request.stream())
            self.lfs.grant(self.git.path(ref), oid)
            return Response(status_code=200)
        if parts == ["healthz"]:
            return JSONResponse({"status": "ok"})

        principal = await anyio.to_thread.run_sync(
            self.accounts.authenticate, request.headers.get("authorization")
        )
        base_url = str(request.base_url).rstrip("/")
        call = Call(request, method, base_url, principal, query, raw_path=raw)
        if method in ("POST", "PUT", "DELETE", "PATCH"):
            call.body = await self._read_body(request)
        handler = self._route(parts, call)
        if handler is None:
            raise HubHTTPError(404, f"No route for {method} {raw}", "NotFound")
        return await anyio.to_thread.run_sync(handler, call)

    def _route(self, parts: list[str], call: Call):
        api, m = self.api, call.method
        seg = [unquote(p) for p in parts]
        if seg[:1] == ["api"]:
            rest = seg[1:]
            simple = {
                ("GET", "whoami-v2"): api.whoami,
                ("POST", "repos/create"): api.create_repo,
                ("DELETE", "repos/delete"): api.delete_repo,
                ("POST", "validate-yaml"): api.validate_yaml,
                ("GET", "agent-harnesses"): api.agent_harnesses,
            }
            if (m, "/".join(rest)) in simple:
                return simple[(m, "/".join(rest))]
            if len(rest) == 1 and m == "GET" and rest[0].removesuffix("s") in REPO_TYPES:
                call.params["type"] = rest[0].removesuffix("s")
                return api.list_repos
            if len(rest) >= 3 and rest[0].removesuffix("s") in REPO_TYPES and rest[0].endswith("s"):
                call.params["ref"] = RepoRef(rest[0][:-1], rest[1], rest[2])
                return self._route_repo(parts[4:], call)
            return None
        # File and LFS routes: [datasets|spaces/]ns/name/...
        repo_type = "model"
        if seg and seg[0] in ("datasets", "spaces") and len(seg) > 3:
            repo_type, parts, seg = seg[0][:-1], parts[1:], seg[1:]
        if len(seg) >= 3 and seg[1].endswith(".git") and seg[2:5] == ["info", "lfs", "objects"]:
            call.params["ref"] = RepoRef(repo_type, seg[0], seg[1].removesuffix(".git"))
            action = "/".join(seg[5:])
            if m == "POST" and action == "batch":
                return api.lfs_batch
            if m == "POST" and action == "verify":
                return api.lfs_verify
            return None
        if len(seg) >= 5 and seg[2] == "resolve" and m in ("GET", "HEAD"):
            call.params["ref"] = RepoRef(repo_type, seg[0], seg[1])
            call.params["revision"] = seg[3]
            call.params["path"] = unquote("/".join(parts[4:]))
            return api.resolve
        return None

    def _route_repo(self, parts: list[str], call: Call):
        api, m = self.api, call.method
        seg = [unquote(p) for p in parts]
        if not seg:
            call.params["revision"] = None
            return api.repo_info if m == "GET" else None
        verb, arg = seg[0], (seg[1] if len(seg) > 1 else None)
        call.params["revision"] = arg
        if len(seg) == 2:
            table = {
                ("GET", "revision"): api.repo_info,
                ("POST", "preupload"): api.preupload,
                ("POST", "commit"): api.commit,
                ("POST", "tag"): api.create_tag,
                ("DELETE", "tag"): api.delete_tag,
                ("POST", "branch"): api.create_branch,
                ("DELETE", "branch"): api.delete_branch,
                ("POST", "paths-info"): api.paths_info,
                ("GET", "commits"): api.list_commits,
                ("GET", "tree"): api.tree,
            }
            return table.get((m, verb))
        if verb == "tree" and m == "GET" and len(seg) > 2:
            call.params["path"] = unquote("/".join(parts[2:])).strip("/")
            return api.tree
        if len(seg) == 1 and m == "GET" and verb == "refs":
            return api.list_refs
        if len(seg) == 1 and m == "PUT" and verb == "settings":
            return api.update_settings
        return None
