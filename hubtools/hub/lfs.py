"""Git-LFS objects of the local Hub: a content-addressed store and upload links.

The clients PUT LFS content to the link the batch API hands out *without* an
Authorization header, so the link itself is the credential: it names one
object (oid and size) and one repo, expires, and is signed with a secret only
the server knows. The server hashes what arrives and keeps it only if size and
sha256 match, so the store never holds an object under a wrong name.

Objects are stored once, but each repo may only use the objects granted to it
(uploaded to it, or copied from a repo the committer can read): knowing a
sha256 must not be enough to read another repo's private file, and the batch
API must not reveal whether some content exists elsewhere on the server.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlencode

from hubtools.hub.errors import HubHTTPError, bad_request, too_large

CAPABILITY_TTL_S = 3600


def is_sha256(value: object) -> bool:
    return (
        isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)
    )


class LfsStore:
    def __init__(self, root: Path, max_object_bytes: int):
        self.dir = Path(root) / "lfs" / "objects"
        self.tmp = Path(root) / "tmp"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_object_bytes = max_object_bytes
        self._secret = self._load_secret(Path(root) / "secret")

    @staticmethod
    def _load_secret(path: Path) -> bytes:
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(secrets.token_bytes(32))
        return path.read_bytes()

    def path(self, oid: str) -> Path:
        return self.dir / oid[:2] / oid[2:4] / oid

    def size(self, oid: str) -> int | None:
        try:
            return self.path(oid).stat().st_size
        except FileNotFoundError:
            return None

    # -- upload links -------------------------------------------------------------
    # -- per-repo grants ------------------------------------------------------------
    @staticmethod
    def _grant_path(repo_dir: Path, oid: str) -> Path:
        return repo_dir / "lfs-oids" / oid[:2] / oid

    def granted(self, repo_dir: Path, oid: str) -> bool:
        return self._grant_path(repo_dir, oid).exists() and self.size(oid) is not None

    def grant(self, repo_dir: Path, oid: str) -> None:
        path = self._grant_path(repo_dir, oid)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()

    # -- upload links -------------------------------------------------------------
    def _sign(self, repo_key: str, oid: str, size: int, expires: int) -> str:
        msg = f"{repo_key}:{oid}:{size}:{expires}".encode()
        return hmac.new(self._secret, msg, hashlib.sha256).hexdigest()

    def upload_query(self, repo_key: str, oid: str, size: int) -> str:
        expires = int(time.time()) + CAPABILITY_TTL_S
        sig = self._sign(repo_key, oid, size, expires)
        return urlencode({"repo": repo_key, "size": size, "expires": expires, "sig": sig})

    def check_capability(self, oid: str, query: dict[str, str]) -> tuple[str, int]:
        """(repo key, object size) the link allows; 403 for a forged, altered or expired link."""
        try:
            size_i, expires_i = int(query.get("size")), int(query.get("expires"))
        except (TypeError, ValueError):
            raise HubHTTPError(403, "Malformed upload link", "Forbidden") from None
        repo_key = query.get("repo") or ""
        expected = self._sign(repo_key, oid, size_i, expires_i)
        good = hmac.compare_digest(expected, query.get("sig") or "")
        if not good or expires_i < time.time():
            raise HubHTTPError(
                403, "Upload link is invalid or expired: ask for a new one", "Forbidden"
            )
        return repo_key, size_i

    async def receive(self, oid: str, size: int, chunks: AsyncIterator[bytes]) -> None:
        """Stream an upload to disk, then keep it only if its size and sha256 match."""
        if size > self.max_object_bytes:
            raise too_large(f"Object of {size} bytes is over the server's limit")
        tmp = self.tmp / f"lfs-{uuid.uuid4().hex}"
        digest, received = hashlib.sha256(), 0
        try:
            with open(tmp, "wb") as fh:
                async for chunk in chunks:
                    received += len(chunk)
                    if received > size:
                        raise bad_request(f"Upload is larger than the announced {size} bytes")
                    digest.update(chunk)
                    fh.write(chunk)
                fh.flush()
                os.fsync(fh.fileno())
            if received != size or digest.hexdigest() != oid:
                raise bad_request(
                    f"Upload does not match oid {oid} and size {size}: got {received} bytes"
                )
            final = self.path(oid)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
