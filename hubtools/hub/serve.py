"""`hubtools hub serve` and `hubtools hub token create`: run and administer a local Hub."""

from __future__ import annotations

import logging
import os
import socket
import sys
from pathlib import Path

from hubtools.errors import LocalHubError, UsageError

LOCAL_ENV = {"HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}


def serve(
    root: Path,
    host: str = "127.0.0.1",
    port: int = 8765,
    *,
    max_body_bytes: int | None = None,
    fsync: bool = True,
    log_level: str = "warning",
) -> None:
    """Serve the Hub API for the repositories under `root` until interrupted."""
    import uvicorn

    from hubtools.hub.app import DEFAULT_MAX_BODY_BYTES, HubApp

    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as e:
            raise UsageError(
                f"cannot listen on {host}:{port} ({e.strerror}): pick another --port"
            ) from None
    app = HubApp(root, max_body_bytes=max_body_bytes or DEFAULT_MAX_BODY_BYTES, fsync=fsync)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    print(f"hubtools local Hub serving {Path(root).resolve()} at http://{host}:{port}", flush=True)
    uvicorn.run(
        app, host=host, port=port, log_level=log_level, access_log=False,
        timeout_keep_alive=30, limit_concurrency=2048,
    )  # fmt: skip


def create_token(root: Path, user: str, orgs: list[str], write: bool) -> str:
    """A new token for `user` (created with its orgs if needed); only its hash is stored."""
    from hubtools.hub.auth import Accounts
    from hubtools.hub.errors import HubHTTPError

    Path(root).mkdir(parents=True, exist_ok=True)
    try:
        return Accounts(root).create_token(user, orgs, write=write)
    except (HubHTTPError, ValueError) as e:
        raise UsageError(str(getattr(e, "message", e))) from None


def env_lines(endpoint: str) -> list[str]:
    """The environment the official clients need to talk to a local Hub."""
    return [f"export HF_ENDPOINT={endpoint}"] + [f"export {k}={v}" for k, v in LOCAL_ENV.items()]


def configure_local_endpoint(endpoint: str) -> None:
    """Point this process's clients at a local Hub (no Xet, no telemetry).

    huggingface_hub and datasets read these variables once, at import, so this
    must run first; a process that already imported them for another endpoint
    gets a clear error instead of silently talking to the wrong Hub.
    """
    if "huggingface_hub" in sys.modules:
        from huggingface_hub import constants

        if constants.ENDPOINT.rstrip("/") != endpoint.rstrip("/"):
            raise LocalHubError(
                f"huggingface_hub was imported for {constants.ENDPOINT} before the local Hub at "
                f"{endpoint} was configured: set HF_ENDPOINT={endpoint} and HF_HUB_DISABLE_XET=1 "
                "before starting Python"
            )
    os.environ["HF_ENDPOINT"] = endpoint
    os.environ.update(LOCAL_ENV)
