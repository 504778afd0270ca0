"""`verify --force` never loses a verdict: scores it cannot recompute are kept, everything it
needs is checked before the store is touched, and a SIGKILL at any point loses nothing."""

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
import yaml
from servers.chat_server import ChatServer, Fault, Reply

from hubtools.errors import UsageError
from hubtools.records import Attempt, Query, Verdict
from hubtools.run import Run
from hubtools.verify import verify

TEACHER = "T"


def hubtools(
    *args: str, env: dict | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hubtools", *args], capture_output=True, text=True,
        timeout=timeout, env=env,
    )  # fmt: skip


def _attempt(query: Query, text: str, teacher: str = TEACHER) -> Attempt:
    return Attempt(query_id=query.query_id, teacher=teacher, attempt=0, text=text)


def _verdict(query: Query, verifier: str, score: float, **details) -> Verdict:
    return Verdict(query_id=query.query_id, teacher=TEACHER, attempt=0, verifier=verifier,
                   score=score, details=details)  # fmt: skip


def _one_line_error(out: subprocess.CompletedProcess, code: int) -> str:
    assert out.returncode == code, (out.returncode, out.stdout, out.stderr)
    assert "Traceback" not in out.stderr
    [line] = [x for x in out.stderr.splitlines() if x.startswith("error: ")]
    return line


def _verdicts(run: Path) -> dict[tuple[str, str, int], tuple[str, float, dict]]:
    [path] = sorted((run / "db").glob("shard-*.sqlite"))
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT query_id, teacher, attempt, verifier, score, details"
                            " FROM verdicts").fetchall()  # fmt: skip
    return {(q, t, a): (v, s, json.loads(d)) for q, t, a, v, s, d in rows}


def _attempt_keys(run: Path) -> set[tuple[str, str, int]]:
    [path] = sorted((run / "db").glob("shard-*.sqlite"))
    with sqlite3.connect(path) as conn:
        return set(conn.execute("SELECT query_id, teacher, attempt FROM attempts").fetchall())


def _imported(tmp_path: Path, math: int = 2) -> Path:
    """The issue's reproduction: a run made by `hubtools import` from a file with scores."""
    lines = [
        {"prompt": "Is the trolley problem solvable?", "output": "<think>Try it.</think>No: ...",
         "score": 1.0},
        {"prompt": "Explain entropy simply.", "category": "chat",
         "output": "<think>Say it.</think>Disorder.",
         "score": 0.95, "verifier": "rubric-v2"},
        {"prompt": "Name a noble gas.", "category": "science", "reference": "a gas of group 18",
         "output": "<think>Noble.</think>Neon",
         "score": 0.3},
    ] + [
        {"prompt": f"What is {i} + 1?", "category": "math", "reference": str(i + 1),
         "output": f"<think>add</think>$\\boxed{{{i + 1}}}$"}
        for i in range(math)
    ]  # fmt: skip
    file = tmp_path / "outputs.jsonl"
    file.write_text("".join(json.dumps(line) + "\n" for line in lines))
    run = tmp_path / "run"
    out = hubtools("import", str(file), "--run", str(run), "--teacher", TEACHER, "--quiet",
                   "--workers", "1")  # fmt: skip
    assert out.returncode == 0, out.stderr
    return run


def test_force_without_a_judge_keeps_every_imported_score_and_build_keeps_the_rows(tmp_path):
    run = _imported(tmp_path)
    before = _verdicts(run)
    assert sorted(v for v, _, _ in before.values()) == [
        "imported", "imported", "math-verify", "math-verify", "rubric-v2"
    ]  # fmt: skip

    out = hubtools("verify", str(run), "--force", "--teacher", TEACHER, "--workers", "1")
    assert out.returncode == 0, out.stderr
    summary = out.stdout
    assert "verified 2 answers" in summary and "replaced 2 earlier verdicts" in summary
    assert "kept 3 imported scores (imported 2, rubric-v2 1)" in summary
    assert _verdicts(run) == before  # the math ones recomputed to the same values

    status = hubtools("status", str(run), "--json")
    assert status.returncode == 0, status.stderr
    built = hubtools("build", str(run), "--teacher", TEACHER, "--out", str(tmp_path / "rel"),
                     "--quiet")  # fmt: skip
    assert built.returncode == 0, built.stderr
    assert "kept 4 rows (math 2, chat 1, general 1)" in built.stdout  # science 0.3 failed


def test_judge_verdicts_are_kept_when_the_run_has_no_judge(tmp_path):
    run = Run.create(tmp_path / "run", {"verify": {}})
    chat = Query.from_prompt("Say hello nicely.", source="t", category="chat")
    sky = "Rayleigh scattering of sunlight by air molecules"
    free = Query.from_prompt("Why is the sky blue?", source="t", category="science", reference=sky)
    run.add_queries([chat, free])
    with run.store() as store:
        store.add_attempts([_attempt(chat, "Hi!"), _attempt(free, "Light scatters.")])
        store.add_verdicts([
            _verdict(chat, "llm-judge", 0.9, judge="m"),
            _verdict(free, "science", 0.8, judge="m"),
        ])  # fmt: skip
    before = _verdicts(run.path)
    result = verify(run.path, force=True, workers=1, progress=False)
    assert result.verified == 0 and _verdicts(run.path) == before
    assert result.kept_no_judge == {"chat": 1, "science (free-form)": 1}
    assert "kept 1 chat, 1 science (free-form) verdicts: no judge configured" in str(result)


def test_an_unverified_chat_answer_without_a_judge_is_refused_before_any_work(tmp_path):
    run = _imported(tmp_path)
    query = Query.from_prompt("Say hello nicely.", source="t", category="chat")
    opened = Run.open(run)
    opened.add_queries([query])
    with opened.store() as store:  # e.g. judged once by a judge since removed from run.yaml
        store.add_attempts([_attempt(query, "Hello!")])
        store.add_attempts([_attempt(q, "\\boxed{1}", "U") for q in opened.iter_queries("math")])
    before = _verdicts(run)
    for args in ([], ["--force"], ["--force", "--teacher", TEACHER]):
        line = _one_line_error(hubtools("verify", str(run), *args), 2)
        assert "1 chat answer without a verdict" in line and "run.yaml" in line
        assert "judge:" in line and "--judge-endpoint" not in line
        assert _verdicts(run) == before  # nothing verified, nothing replaced
    # a teacher without such answers is not held up by them
    assert hubtools("verify", str(run), "--teacher", "U", "--workers", "1").returncode == 0
    assert len(_verdicts(run)) == len(before) + 2
    # the fix the message gives works: a judge in run.yaml's verify: section
    with ChatServer() as server:
        server.script(Reply('{"coherence": 10, "correctness": 10, "helpfulness": 10}'))
        config = yaml.safe_load((run / "run.yaml").read_text())
        config["verify"]["judge"] = {"endpoint": server.url, "model": "judge"}
        (run / "run.yaml").write_text(yaml.safe_dump(config))
        done = hubtools("verify", str(run), "--workers", "1")
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("verified 1 answer: 1 passed")
    assert len(_verdicts(run)) == len(before) + 3


def test_code_answers_without_a_sandbox_are_refused_before_any_work(tmp_path):
    """A `bwrap` that cannot make a sandbox (as in a container without user namespaces)."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "bwrap").write_text("#!/bin/sh\necho 'bwrap: No permissions' >&2\nexit 1\n")
    (fake / "bwrap").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"}
    run = _imported(tmp_path)
    code = Query.from_prompt("Write add(a, b).", source="t", category="code",
                             tests=[{"script": "assert add(2, 3) == 5"}])  # fmt: skip
    opened = Run.open(run)
    opened.add_queries([code])
    text = "```python\ndef add(a, b):\n    return a + b\n```"
    with opened.store() as store:
        store.add_attempts([_attempt(code, text)])
        store.add_verdicts([_verdict(code, "code-sandbox", 1.0)])
    before = _verdicts(run)
    line = _one_line_error(hubtools("verify", str(run), "--force", env=env), 1)
    assert "sandbox" in line and "bubblewrap" in line
    assert _verdicts(run) == before
    # import, which verifies answers without a score, checks the sandbox first too
    more = tmp_path / "code.jsonl"
    record = {"prompt": "Write sub(a, b).", "category": "code", "output": text,
              "tests": [{"script": "assert sub(3, 2) == 1"}]}  # fmt: skip
    more.write_text(json.dumps(record) + "\n")
    imported = hubtools("import", str(more), "--run", str(run), "--teacher", TEACHER, env=env)
    assert "sandbox" in _one_line_error(imported, 1)
    assert len(_attempt_keys(run)) == len(before)  # nothing stored


def test_an_unknown_teacher_is_refused_with_the_runs_teachers(tmp_path):
    run = _imported(tmp_path, math=1)
    with pytest.raises(UsageError, match=r"teacher 'nobody' has no attempts .*teachers: T\)"):
        verify(run, teacher="nobody", progress=False)
    line = _one_line_error(hubtools("verify", str(run), "--teacher", "nobody"), 2)
    assert "'nobody'" in line and "T" in line


def test_force_with_a_judge_replaces_its_verdicts_and_keeps_them_when_it_is_down(tmp_path):
    with ChatServer() as server:
        judge = {"endpoint": server.url, "model": "judge", "timeout_s": 5}
        run = Run.create(tmp_path / "run", {"verify": {"judge": judge}})
        query = Query.from_prompt("Say hello nicely.", source="t", category="chat")
        run.add_queries([query])
        with run.store() as store:
            store.add_attempts([_attempt(query, "Hello there!")])
            store.add_verdicts([_verdict(query, "llm-judge", 0.5)])
        server.script(*[Fault(503, {"error": "down"})] * 4)
        down = verify(run.path, force=True, workers=1, progress=False)
        assert (down.not_stored, down.replaced) == (1, 0)
        assert [s for _, s, _ in _verdicts(run.path).values()] == [0.5]  # the old one stays
        server.script(Reply('{"coherence": 9, "correctness": 9, "helpfulness": 9}'))
        up = verify(run.path, force=True, workers=1, progress=False)
        assert (up.verified, up.replaced) == (1, 1)
        assert [s for _, s, _ in _verdicts(run.path).values()] == [pytest.approx(0.9)]


# -- SIGKILL during verify --force ---------------------------------------------------------

N_MATH, N_IMPORTED = 3 * 1024 + 100, 300  # four verify batches


def _big_run(path: Path) -> Run:
    """Math attempts with seeded verdicts (to be replaced) and imported scores (to be kept)."""
    run = Run.create(path, {"verify": {}})
    math = [Query.from_prompt(f"What is {i} * 3?", source="t", category="math",
                              reference=str(3 * i)) for i in range(N_MATH)]  # fmt: skip
    chat = [Query.from_prompt(f"Tell me about topic {i}.", source="t", category="general")
            for i in range(N_IMPORTED)]  # fmt: skip
    run.add_queries(math + chat)
    attempts = [_attempt(q, f"\\boxed{{{3 * i if i % 4 else 1}}}") for i, q in enumerate(math)]
    attempts += [_attempt(q, "It is ...") for q in chat]
    verdicts = [_verdict(q, "math-verify", 0.5, seeded=True)
                for q in math]  # fmt: skip
    verdicts += [_verdict(q, "imported", 0.25 + i / 1000, source="import")
                 for i, q in enumerate(chat)]  # fmt: skip
    with run.store() as store:
        store.add_attempts(attempts)
        store.add_verdicts(verdicts)
    return run


def _seeded_left(run: Path) -> int:
    [path] = sorted((run / "db").glob("shard-*.sqlite"))
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(
            "SELECT COUNT(*) FROM verdicts WHERE details LIKE '%seeded%'"
        ).fetchone()[0]
    finally:
        conn.close()


def _check_nothing_lost(run: Path, imported: dict) -> None:
    verdicts = _verdicts(run)
    assert set(verdicts) == _attempt_keys(run)  # every attempt still has a verdict
    assert {k: v for k, v in verdicts.items() if v[0] == "imported"} == imported


@pytest.mark.parametrize("when", ["starting", "mid-way"])
def test_sigkill_during_force_loses_no_verdict_and_a_rerun_finishes(tmp_path, when):
    run = _big_run(tmp_path / "run").path
    imported = {k: v for k, v in _verdicts(run).items() if v[0] == "imported"}
    assert len(imported) == N_IMPORTED
    proc = subprocess.Popen(
        [sys.executable, "-m", "hubtools", "verify", str(run), "--force", "--workers", "2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        if when == "starting":
            time.sleep(1.0)  # planning, pool start-up: before the first batch commits
        else:  # after at least one batch is committed, before the last one
            while _seeded_left(run) == N_MATH and time.monotonic() < deadline:
                assert proc.poll() is None, proc.stderr.read()
                time.sleep(0.01)
        left = _seeded_left(run)
        assert proc.poll() is None, "verify finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if when == "mid-way":
        assert 0 < left < N_MATH, left
    _check_nothing_lost(run, imported)
    assert hubtools("verify", str(run), "--workers", "2").stdout.startswith("verified 0 answers")

    again = hubtools("verify", str(run), "--force", "--workers", "2", timeout=180)
    assert again.returncode == 0, again.stderr
    assert f"kept {N_IMPORTED} imported scores" in again.stdout
    _check_nothing_lost(run, imported)
    assert _seeded_left(run) == 0
    scores = [s for v, s, _ in _verdicts(run).values() if v == "math-verify"]
    assert len(scores) == N_MATH and sum(scores) == N_MATH - len(range(0, N_MATH, 4))


def test_replace_verdicts_overwrites_in_place_and_needs_the_attempt(tmp_path):
    from hubtools.errors import RunStoreError

    run = Run.create(tmp_path / "run")
    a, b = (Query.from_prompt(f"What is {x}?", source="t", category="math", reference="1")
            for x in "ab")  # fmt: skip
    run.add_queries([a, b])
    with run.store() as store:
        store.add_attempts([_attempt(a, "1"), _attempt(b, "2")])
        store.add_verdicts([_verdict(a, "math-verify", 0.0)])
        assert store.add_verdicts([_verdict(a, "math-verify", 1.0)]) == 0  # first write wins
        assert store.replace_verdicts([_verdict(a, "x", 1.0, why="again"), _verdict(b, "y", 0.5)])
        with pytest.raises(RunStoreError, match="not stored"):
            store.replace_verdicts([Verdict(query_id=a.query_id, teacher="nobody", attempt=0,
                                            verifier="x", score=1.0)])  # fmt: skip
    assert sorted(_verdicts(run.path).values(), key=lambda v: v[0]) == [
        ("x", 1.0, {"why": "again"}), ("y", 0.5, {})
    ]  # fmt: skip
