"""`hubtools hub serve` and `hubtools hub token create`: run and administer a local Hub."""

from __future__ import annotations

import logging
import os
import socket
import sys
from pathlib import Path

from hubtools.errors import LocalHubError, UsageError

LOCAL_ENV = {"HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
# What `hub serve` leaves in a root; a directory holding neither is not a local Hub.
HUB_MARKERS = ("auth.sqlite", "repos")


def is_hub_root(root: Path) -> bool:
    return Path(root).is_dir() and any((Path(root) / m).exists() for m in HUB_MARKERS)


def make_root(root: Path) -> Path:
    """Create the Hub's directory (the commands that serve one do); a file there is an error."""
    root = Path(root).expanduser()
    if root.exists() and not root.is_dir():
        raise UsageError(f"--root {root} is a file; give a directory for the local Hub")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"cannot create the local Hub in {root}: {err.strerror}") from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise UsageError(f"the local Hub's directory {root} is not writable")
    return root


def check_root(root: Path) -> Path:
    """A local Hub that must already exist (commands that only read or administer one)."""
    root = Path(root).expanduser()
    if root.exists() and not root.is_dir():
        raise UsageError(f"--root {root} is a file; give the local Hub's directory")
    if not is_hub_root(root):
        what = "does not exist" if not root.exists() else "is not a local Hub (no auth.sqlite)"
        raise UsageError(
            f"--root {root} {what}: create the Hub with `hubtools hub serve --root {root}`, "
            "or pass --init to create it here"
        )
    return root


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
    if not 0 <= port <= 65535:
        raise UsageError(f"--port must be between 0 and 65535, got {port}")
    if log_level not in LOG_LEVELS:
        raise UsageError(f"--log-level must be one of {', '.join(LOG_LEVELS)}, got {log_level!r}")
    if Path(root).exists() and not Path(root).is_dir():
        raise UsageError(f"--root {root} is a file; give a directory for the local Hub")
    import uvicorn

    from hubtools.hub.app import DEFAULT_MAX_BODY_BYTES, HubApp

    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except socket.gaierror as e:
            raise UsageError(f"--host {host}: {e.strerror}; give an address to listen on") from None
        except OSError as e:
            raise UsageError(
                f"cannot listen on {host}:{port} ({e.strerror}): pick another --port"
            ) from None
        port = port or probe.getsockname()[1]  # --port 0: a free port, printed below
    root = make_root(root)  # `hub serve` creates the Hub: the other commands need one
    app = HubApp(root, max_body_bytes=max_body_bytes or DEFAULT_MAX_BODY_BYTES, fsync=fsync)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    print(f"hubtools local Hub serving {Path(root).resolve()} at http://{host}:{port}", flush=True)
    uvicorn.run(
        app, host=host, port=port, log_level=log_level, access_log=False,
        timeout_keep_alive=30, limit_concurrency=2048,
    )  # fmt: skip


def create_token(root: Path, user: str, orgs: list[str], write: bool, *, init: bool = False) -> str:
    """A new token for `user` (created with its orgs if needed); only its hash is stored.

    The Hub at `root` must exist (a typo must not start a second, empty Hub) unless
    `init` asks to create it.
    """
    from hubtools.hub.auth import Accounts
    from hubtools.hub.errors import HubHTTPError
    from hubtools.hub.storage import check_name

    try:
        for name, what in [(user, "user name"), *((org, "organization name") for org in orgs)]:
            check_name(name, what)
    except (HubHTTPError, ValueError) as e:
        raise UsageError(str(getattr(e, "message", e))) from None
    root = make_root(root) if init else check_root(root)
    try:
        return Accounts(root).create_token(user, orgs, write=write)
    except (HubHTTPError, ValueError) as e:
        raise UsageError(str(getattr(e, "message", e))) from None


def check_url(url: str, option: str = "--endpoint") -> str:
    """An http(s) URL with a host, or a one-line UsageError."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as err:
        raise UsageError(f"{option} {url!r} is not a valid URL ({err})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"{option} must be an http(s) URL with a host, e.g. "
                         f"http://127.0.0.1:8765, got {url!r}")  # fmt: skip
    return url


def env_lines(endpoint: str) -> list[str]:
    """The environment the official clients need to talk to a local Hub."""
    check_url(endpoint)
    return [f"export HF_ENDPOINT={endpoint}"] + [f"export {k}={v}" for k, v in LOCAL_ENV.items()]


def clients_imported() -> bool:
    """Whether huggingface_hub or datasets already read HF_ENDPOINT (at their import).

    ``huggingface_hub.utils`` alone (its validators) reads no setting; ``constants`` does.
    """
    return "huggingface_hub.constants" in sys.modules or "datasets" in sys.modules


def configure_local_endpoint(endpoint: str) -> None:
    """Point this process's clients at a local Hub (no Xet, no telemetry).

    huggingface_hub and datasets read these variables once, at import, so this
    must run first; a process that already imported them for another endpoint
    gets a clear error instead of silently talking to the wrong Hub.
    """
    if clients_imported():
        from huggingface_hub import constants

        if constants.ENDPOINT.rstrip("/") != endpoint.rstrip("/"):
            raise LocalHubError(
                f"huggingface_hub was imported for {constants.ENDPOINT} before the local Hub at "
                f"{endpoint} was configured: set HF_ENDPOINT={endpoint} and HF_HUB_DISABLE_XET=1 "
                "before starting Python"
            )
    os.environ["HF_ENDPOINT"] = endpoint
    os.environ.update(LOCAL_ENV)
