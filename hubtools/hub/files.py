"""File transfer handlers of the local Hub: `/resolve/` downloads and git-LFS.

Downloads answer HEAD with the headers `hf_hub_download` needs (`X-Repo-Commit`,
a quoted `ETag`, `X-Linked-*` for LFS files) and serve single `Range`
requests, which `HfFileSystem` and streaming datasets rely on.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse, Response, StreamingResponse

from hubtools.hub.errors import HubHTTPError, bad_request, entry_not_found
from hubtools.hub.lfs import is_sha256
from hubtools.hub.storage import check_path

if TYPE_CHECKING:
    from hubtools.hub.app import Call

LFS_JSON = "application/vnd.git-lfs+json"
CHUNK = 1024 * 1024


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, end inclusive) of a single `bytes=` range; 416 when unsatisfiable."""
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip() != "bytes" or "," in spec:
        return None  # unsupported forms fall back to the whole file, as RFC 9110 allows
    first, _, last = spec.strip().partition("-")
    try:
        if first == "":
            start, end = max(size - int(last), 0), size - 1
        else:
            start, end = int(first), (int(last) if last else size - 1)
    except ValueError:
        return None
    if start >= size or start > end or size == 0:
        raise HubHTTPError(
            416, f"Range {header} outside a {size}-byte file", "RangeNotSatisfiable",
            {"Content-Range": f"bytes */{size}"},
        )  # fmt: skip
    return start, min(end, size - 1)


def _read_file(path, start: int, end: int) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        fh.seek(start)
        left = end - start + 1
        while left > 0:
            chunk = fh.read(min(CHUNK, left))
            if not chunk:
                return
            left -= len(chunk)
            yield chunk


class FileHandlers:
    """Mixed into `RepoAPI`; uses its `_open` and the app's stores."""

    def resolve(self, call: Call) -> Response:
        repo = self._open(call)
        path = call.params["path"]
        sha = repo.resolve(call.params["revision"])
        try:
            check_path(path)
        except HubHTTPError:
            raise entry_not_found(path, sha) from None
        entry, data = repo.read(sha, path)
        headers = {
            "X-Repo-Commit": sha,
            "Accept-Ranges": "bytes",
            "Content-Type": mimetypes.guess_type(path)[0] or "application/octet-stream",
        }
        if entry.lfs:
            headers["ETag"] = f'"{entry.lfs.oid}"'
            headers["X-Linked-Etag"] = f'"{entry.lfs.oid}"'
            headers["X-Linked-Size"] = str(entry.lfs.size)
            if self.app.lfs.size(entry.lfs.oid) is None:
                raise HubHTTPError(500, f"LFS object of {path} is missing from the store")
        else:
            headers["ETag"] = f'"{entry.oid}"'
        size = entry.size
        span = parse_range(call.request.headers.get("range"), size)
        start, end = span or (0, size - 1)
        status = 206 if span else 200
        if span:
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        headers["Content-Length"] = str(max(end - start + 1, 0))
        if call.method == "HEAD":
            return Response(status_code=status, headers=headers)
        if entry.lfs:
            body = _read_file(self.app.lfs.path(entry.lfs.oid), start, end)
            return StreamingResponse(body, status_code=status, headers=headers)
        return Response(data[start : end + 1], status_code=status, headers=headers)

    def lfs_batch(self, call: Call) -> Response:
        body = call.json_object()
        operation = body.get("operation")
        repo = self._open(call, write=operation == "upload")
        objects = body.get("objects")
        if operation not in ("upload", "download") or not isinstance(objects, list):
            raise bad_request("LFS batch needs 'operation' (upload|download) and 'objects'")
        url = f"{call.base_url}/{repo.ref.url_prefix}{repo.ref.repo_id}.git/info/lfs/objects"
        out = []
        for obj in objects:
            obj = obj if isinstance(obj, dict) else {}
            oid, size = obj.get("oid"), obj.get("size")
            if not is_sha256(oid) or not isinstance(size, int) or size < 0:
                raise bad_request("Each LFS object needs a sha256 'oid' and an integer 'size'")
            item: dict[str, Any] = {"oid": oid, "size": size, "authenticated": True}
            have = self.app.lfs.granted(self.git.path(repo.ref), oid)
            if operation == "upload" and not (have and self.app.lfs.size(oid) == size):
                if size > self.app.lfs.max_object_bytes:
                    item["error"] = {"code": 413, "message": "Object is over the size limit"}
                else:
                    href = (
                        f"{call.base_url}/lfs-upload/{oid}?"
                        f"{self.app.lfs.upload_query(repo.ref.key, oid, size)}"
                    )
                    item["actions"] = {
                        "upload": {"href": href, "expires_in": 3600},
                        "verify": {"href": f"{url}/verify"},
                    }
            elif operation == "download":
                item["error"] = {"code": 404, "message": "Download LFS files through /resolve/"}
            out.append(item)
        return JSONResponse(
            {"transfer": "basic", "objects": out, "hash_algo": "sha256"},
            headers={"Content-Type": LFS_JSON},
        )

    def lfs_verify(self, call: Call) -> Response:
        repo = self._open(call, write=True)
        body = call.json_object()
        oid, size = body.get("oid"), body.get("size")
        if not is_sha256(oid):
            raise bad_request("verify needs a sha256 'oid'")
        stored = self.app.lfs.size(oid)
        granted = self.app.lfs.granted(self.git.path(repo.ref), oid)
        if not granted or (size is not None and stored != size):
            raise HubHTTPError(
                404, f"LFS object {oid} is not stored (or has another size)", "NotFound"
            )
        return JSONResponse({"oid": oid, "size": stored}, headers={"Content-Type": LFS_JSON})
