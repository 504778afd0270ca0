"""kill -9 during `hubtools generate`, run it again: nothing lost, nothing asked twice."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time

from hubtools.records import Query
from hubtools.run import Run
from hubtools.teachers.client import attempt_seed
from tests.servers.chat_server import ChatServer, Reply

N, K = 40, 3


def committed(run_dir) -> set[tuple[str, int]]:
    rows = set()
    for db in (run_dir / "db").glob("shard-*.sqlite"):
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            rows |= {(q, a) for q, a in conn.execute("SELECT query_id, attempt FROM attempts")}
        except sqlite3.OperationalError:
            pass  # the schema is not there yet
        finally:
            conn.close()
    return rows


def test_kill9_then_rerun(tmp_path):
    problems = [(f"What is {i} + {i}?", str(2 * i)) for i in range(N)]
    queries = [Query.from_prompt(p, category="math", source="t", reference=r) for p, r in problems]
    run = Run.create(tmp_path / "run", {})
    run.add_queries(queries)
    by_prompt = {q.messages[0]["content"]: q for q in queries}
    attempt_of = {attempt_seed(q.query_id, "t", k): k for q in queries for k in range(K)}
    requested: list[tuple[str, int]] = []

    def responder(body):
        query = by_prompt[body["messages"][-1]["content"]]
        attempt = attempt_of[body["seed"]]
        requested.append((query.query_id, attempt))
        answer = query.reference if attempt == 1 else "-1"  # attempt 0 wrong, attempt 1 right
        return Reply(f"<think>sum</think>The final answer is $\\boxed{{{answer}}}$", delay_s=0.15)

    with ChatServer(responder) as server:
        config = tmp_path / "run.yaml"
        config.write_text(
            f"teachers:\n  - {{name: t, endpoint: '{server.url}', model: m, max_concurrency: 6}}\n"
            f"max_attempts: {K}\n"
        )
        cmd = [sys.executable, "-m", "hubtools", "generate", str(run.path), "--config",
               str(config), "--quiet"]  # fmt: skip
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while len(committed(run.path)) < 20 and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        before_kill = committed(run.path)
        asked_before = len(requested)
        assert 20 <= len(before_kill) < 2 * N, "kill -9 must land mid-run"

        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]

    asked_after = requested[asked_before:]
    # Finished (committed) attempts are never sent again...
    assert not set(asked_after) & before_kill
    # ...and nothing else is asked twice after the restart.
    assert len(asked_after) == len(set(asked_after))
    # The final store is what an uninterrupted run holds: attempt 0 failed, attempt 1 passed.
    with run.store() as store:
        rows = store._conn.execute(
            "SELECT a.query_id, a.attempt, v.score FROM attempts a JOIN verdicts v"
            " USING (query_id, teacher, attempt) ORDER BY 1, 2"
        ).fetchall()
        assert store._conn.execute("SELECT COUNT(*) FROM attempts").fetchone()[0] == 2 * N
    expected = sorted((q.query_id, a, float(a == 1)) for q in queries for a in (0, 1))
    assert [tuple(r) for r in rows] == expected
    # None missing: every stored attempt was really answered by the endpoint.
    assert {(q, a) for q, a, _ in expected} <= set(requested)
