"""The CLI as a user meets it: help on every verb, the README's commands, one-line errors."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VERBS = [[], ["hub"], ["hub", "serve"], ["hub", "token", "create"], ["hub", "env"],
         ["queries"], ["queries", "add"], ["queries", "pull"], ["queries", "clean"],
         ["queries", "export"], ["status"], ["demo"], ["generate"], ["verify"], ["build"],
         ["publish"], ["import"]]  # fmt: skip


def hubtools(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hubtools", *args], capture_output=True,
                          text=True, timeout=120, **kw)  # fmt: skip


@pytest.mark.parametrize("verb", VERBS, ids=lambda v: " ".join(v) or "root")
def test_every_verb_has_help(verb):
    out = hubtools(*verb, "--help")
    assert out.returncode == 0, out.stderr
    assert "Usage:" in out.stdout and len(out.stdout.splitlines()) > 3


def test_readme_test_command_is_what_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text()
    command = re.search(r"TEST_COMMAND='(.+)'", ci).group(1)
    assert command in (ROOT / "README.md").read_text()


def test_demo_publishes_and_reads_back(tmp_path):
    out = hubtools("demo", "--root", str(tmp_path / "hub"))
    assert out.returncode == 0, out.stderr
    assert "published local/hubtools-demo@v1.0.0" in out.stdout
    assert "all: 4 rows" in out.stdout and "math: 2 rows" in out.stdout
    assert "1 failed verification" in out.stdout  # the wrong math answer (Math-Verify)
    # The embedded Hub was started for the command only, and stopped after it.
    assert not (tmp_path / "hub" / "server.json").exists()
    again = hubtools("demo", "--root", str(tmp_path / "hub"))  # idempotent on a second run
    assert again.returncode == 0, again.stderr
    assert "already published (verified) local/hubtools-demo@v1.0.0" in again.stdout


def _one_line_error(out: subprocess.CompletedProcess) -> str:
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    return lines[0]


def test_serve_on_a_busy_port_is_a_one_line_error(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = hubtools("hub", "serve", "--root", str(tmp_path), "--port", str(port))
    assert "--port" in _one_line_error(out)


def test_token_for_an_invalid_user_name_is_a_one_line_error(tmp_path):
    out = hubtools("hub", "token", "create", "--root", str(tmp_path), "--user", "bad--name")
    assert "bad--name" in _one_line_error(out)


def test_hub_env_prints_what_clients_need():
    out = hubtools("hub", "env", "--endpoint", "http://127.0.0.1:9999")
    assert "export HF_ENDPOINT=http://127.0.0.1:9999" in out.stdout
    assert "export HF_HUB_DISABLE_XET=1" in out.stdout
