"""Shared fixtures: a real `hubtools hub serve` process on loopback.

huggingface_hub and datasets read HF_ENDPOINT when they are imported, so the
session's endpoint (and an isolated HF_HOME) is fixed here, before any test
module imports them.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Imported twice (as `conftest` and as `tests.conftest`), this module must not pick a
# second port or home: the first import's values are kept in the environment.
if "HUBTOOLS_TEST_HUB_PORT" not in os.environ:
    os.environ["HUBTOOLS_TEST_HUB_PORT"] = str(free_port())
    os.environ["HUBTOOLS_TEST_HF_HOME"] = tempfile.mkdtemp(prefix="hubtools-hf-home-")
    atexit.register(shutil.rmtree, os.environ["HUBTOOLS_TEST_HF_HOME"], ignore_errors=True)
_SESSION_PORT = int(os.environ["HUBTOOLS_TEST_HUB_PORT"])
_HF_HOME = os.environ["HUBTOOLS_TEST_HF_HOME"]
os.environ.update(
    HF_ENDPOINT=f"http://127.0.0.1:{_SESSION_PORT}",
    HF_HUB_DISABLE_XET="1",
    HF_HUB_DISABLE_TELEMETRY="1",
    HF_HUB_DISABLE_PROGRESS_BARS="1",
    HF_HOME=_HF_HOME,
    HF_DATASETS_CACHE=os.path.join(_HF_HOME, "datasets"),
)
for _var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.pop(_var, None)


class HubProcess:
    """A `hubtools hub serve` subprocess that tests can start, kill and restart."""

    def __init__(self, root: Path, port: int | None = None):
        self.root, self.port = Path(root), port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log = self.root.parent / f"hub-{self.port}.log"

    def start(self, *extra: str) -> HubProcess:
        cmd = [sys.executable, "-m", "hubtools", "hub", "serve", "--root", str(self.root)]
        cmd += ["--port", str(self.port), *extra]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"hub exited early:\n{self.log.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"hub did not start:\n{self.log.read_text()}")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def token(self, user: str, *orgs: str, write: bool = True) -> str:
        cmd = [sys.executable, "-m", "hubtools", "hub", "token", "create", "--root", str(self.root)]
        cmd += ["--user", user, *[a for o in orgs for a in ("--org", o)]]
        cmd += ["--write"] if write else []
        return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="session")
def hub(tmp_path_factory):
    """The session's local Hub, at the HF_ENDPOINT the clients were imported with."""
    server = HubProcess(tmp_path_factory.mktemp("hub") / "root", _SESSION_PORT).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def write_token(hub) -> str:
    """A write token of user `alice`, member of org `acme`."""
    return hub.token("alice", "acme", write=True)


@pytest.fixture
def fresh_hub(tmp_path):
    """A private server for tests that kill or restart it; not at HF_ENDPOINT."""
    server = HubProcess(tmp_path / "root")
    yield server
    server.stop()


@pytest.fixture
def unique_name(request) -> str:
    """A repo name no other test uses on the shared session Hub."""
    base = re.sub(r"[^A-Za-z0-9]+", "-", request.node.name)[:60]
    return f"{base.strip('-')}-{os.getpid() % 10000}-{time.monotonic_ns() % 10**6}"


def shared_path(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs ../shared/{'/'.join(parts)} (absent on this checkout)")
    return path
