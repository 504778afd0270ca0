"""A real `transformers serve` for the tests, on a free loopback port, until the block ends."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from conftest import free_port


@contextmanager
def transformers_serve(model: str, log_path: Path, *, timeout_s: float = 120) -> Iterator[str]:
    """Serve ``model`` (a folder, or ``FOLDER:FILE.gguf``) and yield its base URL once
    ``/health`` answers; the test fails with the server's log if it never does."""
    cli = shutil.which("transformers") or str(Path(sys.executable).parent / "transformers")
    port = free_port()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([cli, "serve", model, "--port", str(port), "--device", "cpu"],
                                stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"transformers serve did not start: {log_path.read_text()[-2000:]}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
