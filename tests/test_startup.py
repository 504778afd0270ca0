"""Light verbs start without the heavy libraries (issue 10, item 10).

`--help`, `--version`, `status`, `hub token create`, `hub env` and every verb's `--help`
must start in well under a second, which importing `datasets` (~0.6 s of CPU), torch or
a verifier's dependencies rules out. Timings live in bench/startup.md; this test checks
the cause, what a fresh interpreter has imported after the verb, so it cannot flake on
a loaded machine. Verbs are found by walking the CLI, so a new verb joins by itself.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main

from hubtools.cli import app
from hubtools.hub.app import HubApp
from hubtools.records import Attempt, Query, Verdict
from hubtools.run import Run

ROOT = Path(__file__).resolve().parents[1]

# What no light verb may import: each costs from ~0.15 s (pandas) to seconds (torch).
FORBIDDEN = (
    "datasets", "torch", "transformers", "math_verify", "lm_eval", "nltk", "sympy", "gradio",
    "pandas", "matplotlib",
)  # fmt: skip
# ~0.13 s of CPU: `status` reads the counts stored beside each query part instead.
ARROW = ("pyarrow", "numpy")

# Runs the CLI as `python -m hubtools` does, then reports the exit code and sys.modules.
PROBE = """
import json, runpy, sys
report, sys.argv = sys.argv[1], ["hubtools", *sys.argv[2:]]
code = 0
try:
    runpy.run_module("hubtools", run_name="__main__", alter_sys=True)
except SystemExit as exit:
    code = exit.code if isinstance(exit.code, int) else 1
with open(report, "w") as f:
    json.dump({"rc": code, "modules": sorted(sys.modules)}, f)
"""


def start(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, int, set[str]]:
    """Run one verb in a fresh interpreter: its output, exit code and top-level imports."""
    report = tmp_path / "modules.json"
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(report), *args],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert report.exists(), out.stderr
    probe = json.loads(report.read_text())
    return out, probe["rc"], {name.split(".")[0] for name in probe["modules"]}


def assert_light(tmp_path: Path, *args: str, arrow: bool = False) -> subprocess.CompletedProcess:
    out, rc, loaded = start(tmp_path, *args)
    assert rc == 0, out.stderr
    heavy = sorted(loaded & set(FORBIDDEN if arrow else FORBIDDEN + ARROW))
    assert not heavy, f"`hubtools {' '.join(args)}` imported {heavy}"
    return out


def verbs(command=None, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command and group of the CLI, as the words that name it (() is the root)."""
    command = command or typer.main.get_command(app)
    found = [path]
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        found += verbs(sub, (*path, name))
    return found


def test_the_walk_finds_every_verb():
    found = {" ".join(v) for v in verbs()}
    assert {"", "status", "verify", "build", "hub token create", "queries add"} <= found


@pytest.mark.parametrize("verb", verbs(), ids=lambda v: " ".join(v) or "root")
def test_help_is_light(tmp_path, verb):
    out = assert_light(tmp_path, *verb, "--help")
    assert "Usage:" in out.stdout


def test_version_is_light(tmp_path):
    out, rc, _ = start(tmp_path, "--help")
    if "--version" not in out.stdout:
        pytest.skip("this hubtools has no --version yet")
    out = assert_light(tmp_path, "--version")
    assert out.stdout.strip()


@pytest.fixture
def tiny_run(tmp_path) -> Path:
    """Three queries in two parts, two teachers' attempts and verdicts: a run to count."""
    run = Run.create(tmp_path / "run")
    math = Query.from_prompt("What is 1+1?", source="t", category="math", reference="2")
    chat = Query.from_prompt("Say hi", source="t", category="chat")
    code = Query.from_prompt("Print 1", source="t", category="code")
    run.add_queries([math, chat])
    run.add_queries([code, math])
    with run.store() as store:
        store.add_attempts(
            [Attempt(query_id=math.query_id, teacher="r1", attempt=0, text="2"),
             Attempt(query_id=chat.query_id, teacher="r1", attempt=0, text="hi"),
             Attempt(query_id=chat.query_id, teacher="qwen", attempt=0, error="timeout")]
        )  # fmt: skip
        store.add_verdicts(
            [Verdict(query_id=math.query_id, teacher="r1", attempt=0, verifier="m", score=1.0),
             Verdict(query_id=chat.query_id, teacher="r1", attempt=0, verifier="j", score=0.2)]
        )  # fmt: skip
    return run.path


def status_lines(tmp_path: Path, run: Path, *, arrow: bool = False) -> list[str]:
    return assert_light(tmp_path, "status", str(run), arrow=arrow).stdout.splitlines()


def test_status_is_light_and_right(tmp_path, tiny_run):
    lines = status_lines(tmp_path, tiny_run)
    assert lines[0] == f"run {tiny_run} (1 shard, pass threshold 0.9)"
    assert lines[1:5] == [
        "queries           3", "  math            1", "  code            1", "  chat            1",
    ]  # fmt: skip
    assert lines[6].split() == ["qwen", "1", "1", "1", "0", "0"]
    assert lines[7].split() == ["r1", "2", "2", "0", "1", "1"]


def test_status_json_is_light_and_right(tmp_path, tiny_run):
    out = assert_light(tmp_path, "status", str(tiny_run), "--json")
    report = json.loads(out.stdout)
    assert report["queries"] == {"math": 1, "code": 1, "chat": 1}
    assert report["teachers"]["r1"] == {
        "queries": 2, "attempts": 2, "errors": 0, "passed": 1, "failed": 1,
    }  # fmt: skip


def test_status_of_an_empty_run_is_light(tmp_path):
    Run.create(tmp_path / "empty")
    out = assert_light(tmp_path, "status", str(tmp_path / "empty"))
    assert "no attempts yet" in out.stdout


def test_status_counts_parts_without_stored_counts(tmp_path, tiny_run):
    """Runs made before the counts were stored: status reads the parts (with pyarrow)."""
    expected = status_lines(tmp_path, tiny_run)
    stored = sorted((tiny_run / "queries").glob("part-*.categories.json"))
    assert [p.name for p in stored] == ["part-00000.categories.json", "part-00001.categories.json"]
    stored[0].unlink()
    for damaged in ("not json", '{"poetry": 2}', '{"math": "1"}'):
        stored[1].write_text(damaged)
        assert status_lines(tmp_path, tiny_run, arrow=True) == expected


def test_counts_left_by_a_killed_add_are_replaced(tmp_path, tiny_run):
    """An add killed between writing the counts and the part leaves counts for no part."""
    (tiny_run / "queries" / "part-00002.categories.json").write_text('{"math": 99}')
    assert "queries           3" in status_lines(tmp_path, tiny_run)
    Run.open(tiny_run).add_queries([Query.from_prompt("Hello", source="t", category="if")])
    assert status_lines(tmp_path, tiny_run)[1:6] == [
        "queries           4", "  math            1", "  code            1", "  if              1",
        "  chat            1",
    ]  # fmt: skip
    assert Run.open(tiny_run).categories() == {"math": 1, "code": 1, "if": 1, "chat": 1}


def test_hub_token_create_and_env_are_light(tmp_path):
    HubApp(tmp_path / "hub")  # a hub root, as `hub serve` leaves it
    out = assert_light(tmp_path, "hub", "token", "create", "--root", "hub", "--user", "ann")
    assert out.stdout.startswith("hf_")
    out = assert_light(tmp_path, "hub", "env", "--endpoint", "http://127.0.0.1:9")
    assert "export HF_ENDPOINT=http://127.0.0.1:9" in out.stdout


def test_the_probe_sees_a_heavy_import(tmp_path):
    """The check can fail: the release schema, asked for, still loads datasets."""
    heavy = "import hubtools.records; hubtools.records.RELEASE_SCHEMA\n" + PROBE
    subprocess.run([sys.executable, "-c", heavy, str(tmp_path / "m.json"), "--help"], timeout=120)
    modules = json.loads((tmp_path / "m.json").read_text())["modules"]
    assert "datasets" in modules and "hubtools.records" in modules
