"""The CLI as a user meets it: help on every verb, the README's commands, one-line errors."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from hubtools.cli import app

ROOT = Path(__file__).resolve().parents[1]


def _commands(command, prefix=()):
    """Every group and verb of the typer app, walked from it: new verbs are covered too."""
    yield list(prefix)
    for name, child in (getattr(command, "commands", None) or {}).items():
        yield from _commands(child, (*prefix, name))


VERBS = list(_commands(typer.main.get_command(app)))


def hubtools(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hubtools", *args], capture_output=True,
                          text=True, timeout=120, **kw)  # fmt: skip


@pytest.mark.parametrize("verb", VERBS, ids=lambda v: " ".join(v) or "root")
def test_every_verb_has_help(verb):
    out = hubtools(*verb, "--help")
    assert out.returncode == 0, out.stderr
    assert "Usage:" in out.stdout and len(out.stdout.splitlines()) > 3


def test_version_is_cheap_and_matches_the_package():
    from importlib.metadata import version

    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "hubtools", "--version"],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0 and out.stdout == f"hubtools {version('hubtools')}\n"
    imported = {line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines()}
    assert not imported & {"datasets", "torch", "transformers", "hubtools.records"}


@pytest.mark.parametrize("verb", VERBS, ids=lambda v: " ".join(v) or "root")
def test_help_is_plain_text(verb):
    """No Rich markup: `[embed]` survives, and flags show no `<bool>` placeholder."""
    out = hubtools(*verb, "--help")
    assert "<bool>" not in out.stdout and "BOOLEAN" not in out.stdout
    assert "╭" not in out.stdout  # no Rich panels, whose markup eats [brackets]
    if verb == ["queries", "clean"]:
        assert "hubtools[embed]" in out.stdout


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
    assert "hubtools space run --datasets local/hubtools-demo@v1.0.0 --endpoint" in out.stdout
    # The embedded Hub was started for the command only, and stopped after it.
    assert not (tmp_path / "hub" / "server.json").exists()
    again = hubtools("demo", "--root", str(tmp_path / "hub"))  # idempotent on a second run
    assert again.returncode == 0, again.stderr
    assert "already published (verified) local/hubtools-demo@v1.0.0" in again.stdout
    # The same port on every run (the probe must not see the last server's TIME_WAIT as
    # busy), so the printed commands keep working.
    ports = [re.search(r"--port (\d+)", o.stdout)[1] for o in (out, again)]
    assert ports[0] == ports[1], (out.stdout, again.stdout)
    assert f'eval "$(hubtools hub env --endpoint http://127.0.0.1:{ports[0]})"' in out.stdout


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


def test_token_create_needs_an_existing_hub_or_init(tmp_path):
    typo = tmp_path / "typo"
    out = hubtools("hub", "token", "create", "--root", str(typo), "--user", "bob")
    assert "hub serve --root" in _one_line_error(out) and out.returncode == 2
    assert not typo.exists()  # a typo does not start a second, empty Hub
    made = hubtools("hub", "token", "create", "--root", str(typo), "--user", "bob", "--init")
    assert made.returncode == 0 and made.stdout.startswith("hf_"), made.stderr
    again = hubtools("hub", "token", "create", "--root", str(typo), "--user", "carol")
    assert again.returncode == 0 and again.stdout.startswith("hf_"), again.stderr


def _release(tmp_path: Path) -> Path:
    """A release folder made the way a user makes one: import, then build."""
    outputs = tmp_path / "outputs.jsonl"
    outputs.write_text(
        '{"prompt": "What is 1 + 1?", "category": "math", "reference": "2", '
        '"output": "<think>1 + 1 = 2.</think>The answer is $\\\\boxed{2}$."}\n'
        '{"prompt": "Say hi.", "category": "chat", "score": 1.0, '
        '"output": "<think>Greet.</think>Hi!"}\n'
    )
    run, release = tmp_path / "run", tmp_path / "release"
    for args in (["import", str(outputs), "--run", str(run), "--teacher", "t1"],
                 ["build", str(run), "--teacher", "t1", "--out", str(release)]):  # fmt: skip
        made = hubtools(*args, "--quiet")
        assert made.returncode == 0, made.stderr
    return release


def test_publish_hub_local_counts_every_file_and_says_how_to_reach_the_hub(tmp_path):
    release, root = _release(tmp_path), tmp_path / "hub"
    env = {k: v for k, v in os.environ.items() if k not in ("HF_ENDPOINT", "HF_HUB_DISABLE_XET")}
    env["HUBTOOLS_HUB_ROOT"] = str(root)
    args = ["publish", str(release), "--repo", "local/reach", "--version", "1.0.0"]
    args += ["--hub", "local"]
    plan = hubtools(*args, "--dry-run", env=env)
    assert plan.returncode == 0, plan.stderr
    listed = [line.split()[0] for line in plan.stdout.splitlines() if line.startswith("  ")]
    listed = [action for action in listed if action in ("add", "update", "delete")]
    summary = re.search(r"first version; (\d+) added", plan.stdout)
    assert summary and int(summary[1]) == len(listed) == 3, plan.stdout  # README + 2 configs
    done = hubtools(*args, env=env)
    assert done.returncode == 0, done.stderr
    port = re.search(r"--port (\d+) &", done.stdout)[1]
    assert f"hubtools hub serve --root {root} --port {port} &" in done.stdout
    assert f'eval "$(hubtools hub env --endpoint http://127.0.0.1:{port})"' in done.stdout


def test_hub_env_prints_what_clients_need():
    out = hubtools("hub", "env", "--endpoint", "http://127.0.0.1:9999")
    assert "export HF_ENDPOINT=http://127.0.0.1:9999" in out.stdout
    assert "export HF_HUB_DISABLE_XET=1" in out.stdout
