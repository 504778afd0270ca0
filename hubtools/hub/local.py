"""The embedded local Hub: offline by default, with nothing to set up.

`local_hub()` reuses a local Hub already serving the root (found through its
`server.json`) or starts one for the duration of the block, and creates a
local user with a write token on first use. The token is kept in a 0600 file
next to the repos, as huggingface_hub keeps its own token under HF_HOME.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.error import URLError
from urllib.request import urlopen

from hubtools.errors import LocalHubError
from hubtools.hub.serve import configure_local_endpoint, create_token, make_root

LOCAL_USER = "local"
DEFAULT_PORT = 8765


def default_root() -> Path:
    return Path(os.environ.get("HUBTOOLS_HUB_ROOT", Path.home() / ".cache" / "hubtools" / "hub"))


@dataclass(frozen=True)
class LocalHub:
    url: str
    token: str
    user: str
    root: Path
    started: bool = False  # started for this block, and stopped after it


def reach_lines(root: Path, url: str, running: bool) -> list[str]:
    """How a user reaches this Hub from a shell afterwards: serve it, point the clients."""
    port, where = url.rsplit(":", 1)[1], shlex.quote(str(root))
    serve = [] if running else [f"hubtools hub serve --root {where} --port {port} &"]
    return [*serve, f'eval "$(hubtools hub env --endpoint {url})"']


def _alive(url: str) -> bool:
    try:
        with urlopen(f"{url}/healthz", timeout=1) as resp:
            return resp.status == 200
    except (URLError, OSError):
        return False


def _free_port(root: Path) -> int:
    """The port this root was served on last (else the default) when free, else any.

    The same port on every run keeps the commands printed last time working. The probe
    sets SO_REUSEADDR as uvicorn does: the last server's connections in TIME_WAIT must
    not make a port that uvicorn can bind look busy.
    """
    remembered = root / "last-port"
    try:
        preferred = int(remembered.read_text())
    except (OSError, ValueError):
        preferred = DEFAULT_PORT
    for port in (preferred, DEFAULT_PORT, 0):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            port = s.getsockname()[1]
        remembered.write_text(str(port))
        return port
    raise LocalHubError("no free port on 127.0.0.1 for the local Hub")


def _local_token(root: Path) -> str:
    path = root / "local-user.json"
    if path.exists():
        return json.loads(path.read_text())["token"]
    token = create_token(root, LOCAL_USER, [], write=True, init=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"user": LOCAL_USER, "token": token}, fh)
    return token


@contextmanager
def local_hub(root: Path | None = None, *, configure_env: bool = True) -> Iterator[LocalHub]:
    """A running local Hub under `root`, started here if none serves it yet."""
    root = make_root(Path(root or default_root()))
    token = _local_token(root)
    state = root / "server.json"
    proc = None
    url = json.loads(state.read_text())["url"] if state.exists() else None
    if url is None or not _alive(url):
        port = _free_port(root)
        url = f"http://127.0.0.1:{port}"
        log = open(root / "server.log", "ab")
        cmd = [sys.executable, "-m", "hubtools", "hub", "serve", "--root", str(root)]
        proc = subprocess.Popen([*cmd, "--port", str(port)], stdout=log, stderr=log)
        deadline = time.monotonic() + 30
        while not _alive(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise LocalHubError(f"the local Hub did not start: see {root / 'server.log'}")
            time.sleep(0.1)
        state.write_text(json.dumps({"url": url, "pid": proc.pid}))
    if configure_env:
        configure_local_endpoint(url)
    try:
        yield LocalHub(url=url, token=token, user=LOCAL_USER, root=root, started=proc is not None)
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
            state.unlink(missing_ok=True)
