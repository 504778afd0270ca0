"""Git-LFS objects of the local Hub: a content-addressed store and upload links.

The clients PUT LFS content to the link the batch API hands out *without* an
Authorization header, so the link itself is the credential: it names one
object (oid and size), expires, and is signed with a secret only the server
knows. The server hashes what arrives and keeps it only if size and sha256
match, so the store never holds an object under a wrong name.
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
    def _sign(self, oid: str, size: int, expires: int) -> str:
        msg = f"{oid}:{size}:{expires}".encode()
        return hmac.new(self._secret, msg, hashlib.sha256).hexdigest()

    def upload_query(self, oid: str, size: int) -> str:
        expires = int(time.time()) + CAPABILITY_TTL_S
        return f"size={size}&expires={expires}&sig={self._sign(oid, size, expires)}"

    def check_capability(self, oid: str, size: str, expires: str, sig: str) -> int:
        """The object size the link allows; 403 for a forged, altered or expired link."""
        try:
            size_i, expires_i = int(size), int(expires)
        except (TypeError, ValueError):
            raise HubHTTPError(403, "Malformed upload link", "Forbidden") from None
        good = hmac.compare_digest(self._sign(oid, size_i, expires_i), sig or "")
        if not good or expires_i < time.time():
            raise HubHTTPError(
                403, "Upload link is invalid or expired: ask for a new one", "Forbidden"
            )
        return size_i

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
