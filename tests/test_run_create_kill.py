"""A run directory is absent or complete: kill -9 the moment it appears, run again.

Also: a file, a missing path or a foreign directory given as a run is one clear line
(exit 2) for every verb, and the temp files a killed stage left are gone after its
next run.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from datasets import Dataset
from huggingface_hub import HfApi

from hubtools.errors import NotARunError
from hubtools.queries import add
from hubtools.queries.clean import clean
from hubtools.queries.export import export
from hubtools.queries.pull import SOURCES_FILE, pool_path, read_provenance
from hubtools.release.build import build
from hubtools.release.importer import import_outputs
from hubtools.run import Run
from hubtools.verify import verify

HUBTOOLS = [sys.executable, "-m", "hubtools"]


def write_jsonl(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def kill_when(cmd: list[str], appeared) -> None:
    """Start ``cmd`` and SIGKILL it as soon as ``appeared()`` is true (a tight poll)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while proc.poll() is None and not appeared():
        assert time.monotonic() < deadline, "never appeared"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "finished before the kill: " + proc.stderr.read(
    ).decode()[-2000:]  # fmt: skip


def staging_of(path: Path):
    return lambda: any(
        p.startswith(f".{path.name}.") and p.endswith(".tmp") for p in os.listdir(path.parent)
    )


def leftovers(*folders: Path) -> list[str]:
    """Temp names of our stages: ``.NAME.<pid>.tmp`` and build's ``.OUT.build-<pid>``."""
    return sorted(
        p.name for f in folders if f.is_dir() for p in f.iterdir()
        if p.name.startswith(".") and (p.name.endswith(".tmp") or ".build-" in p.name)
    )  # fmt: skip


def again(cmd: list[str]) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def query_ids(run: Path) -> list[str]:
    return sorted(q.query_id for q in Run.open(run).iter_queries())


def stored(run: Path) -> list[tuple]:
    conn = sqlite3.connect(run / "db" / "shard-00000-of-00001.sqlite")
    try:
        return conn.execute(
            "SELECT a.query_id, a.teacher, a.attempt, a.text, v.verifier, v.score FROM attempts a"
            " JOIN verdicts v USING (query_id, teacher, attempt) ORDER BY 1, 2, 3"
        ).fetchall()
    finally:
        conn.close()


@pytest.mark.parametrize("moment", ["run", "staging"])
def test_queries_add_killed_as_the_run_appears(tmp_path, moment):
    records = [{"prompt": f"Question {i}: what is {i} squared?"} for i in range(20_000)]
    file = write_jsonl(tmp_path / "q.jsonl", records)
    add(file, tmp_path / "reference")
    run = tmp_path / "run"
    cmd = [*HUBTOOLS, "queries", "add", str(file), "--run", str(run)]
    kill_when(cmd, run.exists if moment == "run" else staging_of(run))
    again(cmd)
    assert query_ids(run) == query_ids(tmp_path / "reference")
    assert leftovers(tmp_path, run, run / "queries") == []


@pytest.mark.parametrize("moment", ["run", "staging"])
def test_import_killed_as_the_run_appears(tmp_path, moment):
    records = [
        {"prompt": f"What is {i} + {i}?", "category": "math", "reference": str(2 * i),
         "output": f"<think>add</think>$\\boxed{{{2 * i}}}$", "score": 1.0}
        for i in range(300)
    ]  # fmt: skip
    file = write_jsonl(tmp_path / "out.jsonl", records)
    import_outputs(file, run=tmp_path / "reference", teacher="ext", progress=False)
    run = tmp_path / "run"
    cmd = [*HUBTOOLS, "import", str(file), "--run", str(run), "--teacher", "ext", "--quiet"]
    kill_when(cmd, run.exists if moment == "run" else staging_of(run))
    again(cmd)
    assert stored(run) == stored(tmp_path / "reference") and len(stored(run)) == 300
    assert query_ids(run) == query_ids(tmp_path / "reference")
    assert Run.open(run).config == Run.open(tmp_path / "reference").config
    assert leftovers(tmp_path, run, run / "queries") == []


def test_pull_killed_as_the_run_and_the_pool_appear(hub, tmp_path):
    repo = "killorg/appearing-source"
    if not HfApi().repo_exists(repo, repo_type="dataset"):
        rows = [{"problem": f"Compute {i} * 3 and explain.", "answer": str(3 * i)}
                for i in range(3000)]  # fmt: skip
        Dataset.from_list(rows).push_to_hub(repo, token=hub.token("src", "killorg", write=True))
    config = tmp_path / "sources.yaml"
    config.write_text(f"sources:\n  - {{name: s, repo: {repo}, category: math, shape: problem}}\n")
    run = tmp_path / "run"
    cmd = [*HUBTOOLS, "queries", "pull", "--config", str(config), "--run", str(run), "--quiet"]
    kill_when(cmd, run.exists)
    kill_when(cmd, pool_path(run).exists)
    stale = pool_path(run) / f".{SOURCES_FILE}.{os.getpid()}9.tmp"  # as a killed pull leaves
    if pool_path(run).is_dir():
        stale.write_text("{}")
    again(cmd)
    assert len(set(query_ids(pool_path(run)))) == 3000
    assert read_provenance(run)["s"]["done"]
    assert leftovers(tmp_path, run, pool_path(run), pool_path(run) / "queries") == []


# -- a path that is not a run ----------------------------------------------------------------


def test_every_verb_refuses_a_file_as_the_run_in_one_line(tmp_path):
    file = tmp_path / "notes.txt"
    file.write_text("mine")
    queries = write_jsonl(tmp_path / "q.jsonl", [{"prompt": "Hi?"}])
    answers = write_jsonl(tmp_path / "a.jsonl", [{"prompt": "Hi?", "output": "Hello", "score": 1}])
    teachers = tmp_path / "teachers.yaml"
    teachers.write_text("teachers: [{name: t, endpoint: 'http://127.0.0.1:9', model: m}]\n")
    sources = tmp_path / "sources.yaml"
    sources.write_text("sources: [{name: s, repo: a/b, category: math, shape: problem}]\n")
    verbs = [
        ["status", str(file)],
        ["build", str(file), "--teacher", "t", "--out", str(tmp_path / "out")],
        ["verify", str(file)],
        ["generate", str(file), "--config", str(teachers)],
        ["import", str(answers), "--run", str(file), "--teacher", "t"],
        ["queries", "export", "--run", str(file), "--out", str(tmp_path / "x.jsonl")],
        ["queries", "clean", "--run", str(file)],
        ["queries", "add", str(queries), "--run", str(file)],
        ["queries", "pull", "--config", str(sources), "--run", str(file)],
    ]
    for verb in verbs:
        done = subprocess.run([*HUBTOOLS, *verb], capture_output=True, text=True, timeout=120)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2, (verb, done.stderr[-2000:])
        assert len(lines) == 1 and "Traceback" not in done.stderr, (verb, done.stderr)
        assert lines[0].startswith(f"error: {file} is a file, not a run directory; give "), verb
    assert file.read_text() == "mine" and leftovers(tmp_path) == []


def test_missing_and_foreign_directories(tmp_path):
    missing, foreign = tmp_path / "missing", tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(NotARunError, match="missing does not exist; start a run with"):
        Run.open(missing)
    with pytest.raises(NotARunError, match=r"foreign is not a run directory \(no run.yaml\)"):
        Run.open(foreign)
    with pytest.raises(NotARunError, match="foreign exists and is not a run"):
        Run.create(foreign)
    with pytest.raises(NotARunError, match="run at .*notes.txt/run: .*notes.txt is a file"):
        Run.create(foreign / "notes.txt" / "run")
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"] and not missing.exists()
    # What a creation killed under earlier versions left (an empty queries/) becomes a run.
    (tmp_path / "half" / "queries").mkdir(parents=True)
    (tmp_path / "half" / "queries" / ".lock").write_text("")
    assert Run.create(tmp_path / "half").count_queries() == 0
    # An existing empty directory (here the working directory) is made a run in place.
    (tmp_path / "here").mkdir()
    inode = (tmp_path / "here").stat().st_ino
    assert Run.create(tmp_path / "here", queries=[]).added.added == 0
    assert (tmp_path / "here").stat().st_ino == inode


# -- temp files of killed stages -------------------------------------------------------------


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_next_run_of_a_stage_removes_what_a_killed_one_left(tmp_path):
    dead = dead_pid()
    live = subprocess.Popen(["sleep", "60"])
    try:
        file = write_jsonl(tmp_path / "q.jsonl", [{"prompt": f"Q{i}?"} for i in range(5)])
        run = tmp_path / "run"
        add(file, run)
        planted = [
            run / "queries" / f".part-00001.parquet.{dead}.tmp",
            run / "queries" / f".part-00002.parquet.{live.pid}.tmp",  # under the lock: stale too
            run / f".run.yaml.{dead}.tmp",
            tmp_path / f".run.{dead}.tmp" / "run.yaml",
        ]
        for path in planted:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("partial")
        (tmp_path / f".run.{live.pid}.tmp").mkdir()  # a live creator's: kept
        add(write_jsonl(tmp_path / "more.jsonl", [{"prompt": "Q9?"}]), run)
        assert leftovers(run, run / "queries") == []
        assert leftovers(tmp_path) == [f".run.{live.pid}.tmp"]

        answers = [{"prompt": "Q1?", "output": "<think>T</think>A", "score": 1.0}]
        import_outputs(write_jsonl(tmp_path / "a.jsonl", answers), run=run, teacher="t",
                       progress=False)  # fmt: skip
        for pid in (dead, live.pid):
            (tmp_path / f".release.build-{pid}" / "data").mkdir(parents=True)
        build(run, teacher="t", out=tmp_path / "release", progress=False)
        assert leftovers(tmp_path) == [f".release.build-{live.pid}", f".run.{live.pid}.tmp"]

        Run.create(run / "pulled").add_queries(Run.open(run).iter_queries())
        scan = run / "clean" / "scan" / "part-00000"
        scan.mkdir(parents=True)
        (scan / f".rg-00000-shard-00000-of-00001.parquet.{dead}.tmp").write_text("partial")
        (run / f".funnel.json.{dead}.tmp").write_text("partial")
        clean(run, benchmarks=(), workers=1, progress=False)
        assert leftovers(run, run / "clean", scan) == []

        outputs = tmp_path / "outputs"
        outputs.mkdir()
        for name in ("queries.jsonl", "scored.jsonl"):
            (outputs / f".{name}.{dead}.tmp").write_text("partial")
        export(run, outputs / "queries.jsonl", progress=False)
        answer = {
            "prompt": "1 + 1?",
            "category": "math",
            "reference": "2",
            "answer": "$\\boxed{2}$",
        }
        verify(input=write_jsonl(tmp_path / "answers.jsonl", [answer]),
               output=outputs / "scored.jsonl", workers=1, progress=False)  # fmt: skip
        assert leftovers(outputs) == []
    finally:
        live.kill()
        live.wait()


def test_concurrent_adds_create_one_run_with_every_query(tmp_path):
    files = [
        write_jsonl(
            tmp_path / f"q{k}.jsonl", [{"prompt": f"File {k} question {i}?"} for i in range(2000)]
        )  # fmt: skip
        for k in range(4)
    ]
    run = tmp_path / "run"
    procs = [
        subprocess.Popen(
            [*HUBTOOLS, "queries", "add", str(f), "--run", str(run)], stderr=subprocess.PIPE
        )  # fmt: skip
        for f in files
    ]
    for proc in procs:
        assert proc.wait(120) == 0, proc.stderr.read().decode()[-2000:]
    assert len(query_ids(run)) == len(set(query_ids(run))) == 8000
    assert leftovers(tmp_path, run, run / "queries") == []
