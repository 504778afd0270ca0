"""`hubtools eval` against the protocol test server, scripted per (problem, sample).

The benchmarks are the real AIME 2024 and MATH-500 problems from ../shared/data, seeded
into the local Hub under their Hub ids and read back with ``load_dataset``. The server
answers each sample as the plan below says (right, wrong, cut off at max_new_tokens,
or with no final answer), so every metric is worked out by hand here.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import shared_path
from queries_support import _jsonl, seeded_benchmarks  # noqa: F401

from hubtools.errors import RunBusyError, UsageError
from hubtools.eval.settings import MATH_SUFFIX, PAPER_SYSTEM_PROMPT, resolve_settings
from hubtools.eval.stage import TEACHER, evaluate
from hubtools.records import query_id_for
from hubtools.teachers.client import attempt_seed
from tests.servers.chat_server import ChatServer, Fault, Reply

ROOT = Path(__file__).resolve().parents[1]
MAX_NEW = 1000
# Per problem, the outcome of samples 0, 1, 2, ...: Right, Wrong, Truncated, Malformed.
PLAN = {
    "aime_2024": ["RRRRRR", "RWTMRW", "WWWTWR"],
    "math500": ["RRRR", "WRWW", "TMRR"],
}
TOKENS = {"R": 100, "W": 200, "T": MAX_NEW, "M": 50}


def answers(name: str) -> list[str]:
    rows = _jsonl(shared_path("data", "benchmarks", f"{name}.jsonl"))
    return [r["answer"] for r in rows[: len(PLAN[name])]]


class Scripted:
    """The server's responder: finds the problem and the sample index (from the seed)."""

    def __init__(self):
        base = shared_path("data", "benchmarks")
        self.problems = {}
        for name, plan in PLAN.items():
            rows = _jsonl(base / f"{name}.jsonl")[: len(plan)]
            for i, row in enumerate(rows):
                prompt = f"{row['problem']}\n{MATH_SUFFIX}"
                qid = query_id_for([{"role": "user", "content": prompt}])
                seeds = {attempt_seed(qid, TEACHER, a): a for a in range(len(plan[i]))}
                self.problems[prompt] = (name, i, row["answer"], seeds)
        self.asked: list[tuple[str, int, int]] = []  # (benchmark, problem, sample) answered

    def __call__(self, body: dict) -> Reply:
        name, i, answer, seeds = self.problems[body["messages"][-1]["content"]]
        sample = seeds[body["seed"]]
        self.asked.append((name, i, sample))
        kind = PLAN[name][i][sample]
        right = str(int(answer)) if name == "aime_2024" else answer
        content = {
            "R": f"<think>Work it out.</think><answer>The answer is \\boxed{{{right}}}.</answer>",
            "W": "<think>Work it out.</think><answer>The answer is \\boxed{123456789}.</answer>",
            "T": "<think>Let me consider the first case, then the second, then",
            "M": "<think>Hmm.</think><answer>I am not sure.</answer>",
        }[kind]
        return Reply(
            content, completion_tokens=TOKENS[kind],
            finish_reason="length" if kind == "T" else "stop",
        )  # fmt: skip


def hand_results(name: str, k: int) -> dict:
    """avg@k, its standard error, pass@k and lengths from PLAN, the long way."""
    plans = [p[:k] for p in PLAN[name]]
    rates = [p.count("R") / k for p in plans]
    mean = sum(rates) / len(rates)
    stderr = math.sqrt(sum((r - mean) ** 2 for r in rates) / (len(rates) - 1) / len(rates))
    lengths = sorted(TOKENS[c] for p in plans for c in p)
    middle = len(lengths) // 2
    median = (lengths[middle - 1] + lengths[middle]) / 2 if len(lengths) % 2 == 0 else None
    return {"avg_at_k": mean, "stderr": stderr, "mean_length": sum(lengths) / len(lengths),
            "median_length": median, "truncated_share": sum(p.count("T") for p in plans)
            / (k * len(plans))}  # fmt: skip


def check(results: dict, name: str, k: int) -> None:
    got, want = results["benchmarks"][name], hand_results(name, k)
    for key, value in want.items():
        assert got[key] == pytest.approx(value), key
    assert got["samples_per_problem"] == k and got["complete"]


@pytest.fixture
def server():
    scripted = Scripted()
    with ChatServer(scripted) as chat:
        chat.scripted = scripted
        yield chat


def settings(server, out: Path, samples: str, **extra):
    return resolve_settings(
        endpoint=server.url, model="student", benchmarks="aime_2024,math500", out=out,
        samples=samples, max_new_tokens=MAX_NEW, limit=3, max_concurrency=8, **extra,
    )  # fmt: skip


def test_scripted_eval_scores_as_computed_by_hand(seeded_benchmarks, server, tmp_path):  # noqa: F811
    out = tmp_path / "eval"
    server.script(Fault(503))  # a transport failure is retried, never a sample
    result = evaluate(settings(server, out, "aime_2024=4,math500=4"), progress=False)
    results = json.loads((out / "results.json").read_text())
    assert results == result.results and result.complete
    check(results, "aime_2024", 4)
    check(results, "math500", 4)
    aime = results["benchmarks"]["aime_2024"]
    # By hand: pass counts 4, 1, 0 of 4 samples.
    assert aime["avg_at_k"] == pytest.approx(5 / 12)
    assert aime["pass_at_k"] == pytest.approx(
        {"1": 5 / 12, "2": (1 + (1 - 3 / 6) + 0) / 3, "4": 2 / 3}
    )
    assert aime["mean_length"] == pytest.approx((4 * 100 + 1350 + 1600) / 12)
    assert aime["median_length"] == 150 and aime["truncated_share"] == pytest.approx(2 / 12)
    assert aime["dataset"] == "HuggingFaceH4/aime_2024" and len(aime["revision"]) == 40
    assert aime["verifier"] == "math-verify" and aime["problems"] == 3
    assert aime["settings"] == {
        "temperature": 0.6, "top_p": 0.95, "max_new_tokens": MAX_NEW,
        "system_prompt": PAPER_SYSTEM_PROMPT, "suffix": MATH_SUFFIX,
    }  # fmt: skip
    math500 = results["benchmarks"]["math500"]
    assert math500["problems"] == 3 and math500["split"] == "test"  # MATH-500's only split
    assert math500["avg_at_k"] == pytest.approx((1 + 1 / 4 + 2 / 4) / 3)
    # Exactly k samples per problem, passed or not; the 503 was retried, not counted.
    asked = server.scripted.asked
    assert len(asked) == 3 * 4 + 3 * 4 == len(set(asked))
    assert len(server.chat_requests) == len(asked) + 1
    body = server.chat_requests[-1].body
    assert body["messages"][0] == {"role": "system", "content": PAPER_SYSTEM_PROMPT}
    assert (body["temperature"], body["top_p"], body["max_tokens"]) == (0.6, 0.95, MAX_NEW)
    lines = [json.loads(x) for x in (out / "problems" / "aime_2024.jsonl").read_text().split("\n")
             if x]  # fmt: skip
    assert [(x["samples"], x["passes"], x["truncated"]) for x in lines] == [
        (4, 4, 0),
        (4, 1, 1),
        (4, 0, 1),
    ]
    assert lines[1]["lengths"] == [100, 200, MAX_NEW, 50]
    table = (out / "results.md").read_text()
    assert "| aime_2024 | 3 | 4 | 41.7 |" in table

    # More samples: only the new ones are sent, and the results are those of 6 samples.
    before = len(asked)
    evaluate(settings(server, out, "aime_2024=6,math500=4"), progress=False)
    new = asked[before:]
    assert sorted(new) == sorted(("aime_2024", i, s) for i in range(3) for s in (4, 5))
    check(json.loads((out / "results.json").read_text()), "aime_2024", 6)

    # The same command again sends nothing; other sampling settings are refused up front.
    evaluate(settings(server, out, "aime_2024=6,math500=4"), progress=False)
    assert len(asked) == before + 6
    with pytest.raises(UsageError, match=r"temperature 0\.6 -> 0\.7.*another --out"):
        evaluate(settings(server, out, "aime_2024=6", temperature=0.7), progress=False)
    assert len(asked) == before + 6


def _eval_cli_mid_way(chat: ChatServer, out: Path) -> tuple[subprocess.Popen, Path]:
    """`hubtools eval` (18 samples, 2 in flight) in a child process, once 5 are stored."""
    args = [sys.executable, "-m", "hubtools", "eval", "--benchmarks", "aime_2024",
            "--model", "student", "--out", str(out), "--samples", "6", "--limit", "3",
            "--max-new-tokens", str(MAX_NEW), "--max-concurrency", "2", "--quiet",
            "--endpoint", chat.url]  # fmt: skip
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    database = out / "runs" / "aime_2024" / "db" / "shard-00000-of-00001.sqlite"
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while stored(database) < 5:
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.05)
    return proc, database


def _slow(scripted: Scripted, delay_s: float = 0.15):
    def respond(body):
        reply = scripted(body)
        reply.delay_s = delay_s
        return reply

    return respond


def test_kill_9_mid_eval_then_resume(seeded_benchmarks, tmp_path):  # noqa: F811
    scripted = Scripted()
    out = tmp_path / "eval"
    with ChatServer(_slow(scripted)) as chat:
        proc, database = _eval_cli_mid_way(chat, out)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kept = stored(database, rows=True)
        assert 5 <= len(kept) < 18
        seen = len(scripted.asked)
        # The same command again (in this process: a second interpreter costs seconds).
        again = resolve_settings(
            endpoint=chat.url, model="student", benchmarks="aime_2024", out=out, samples="6",
            limit=3, max_new_tokens=MAX_NEW, max_concurrency=2,
        )  # fmt: skip
        assert evaluate(again, progress=False).complete
    check(json.loads((out / "results.json").read_text()), "aime_2024", 6)
    resent = {(name, i, s) for name, i, s in scripted.asked[seen:]}
    assert not resent & kept  # no stored sample asked again
    assert resent | kept == {("aime_2024", i, s) for i in range(3) for s in range(6)}


def test_ctrl_c_writes_the_results_of_what_is_stored(seeded_benchmarks, tmp_path):  # noqa: F811
    out = tmp_path / "eval"
    with ChatServer(_slow(Scripted())) as chat:
        proc, database = _eval_cli_mid_way(chat, out)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert b"Traceback" not in err
    results = json.loads((out / "results.json").read_text())["benchmarks"]["aime_2024"]
    assert results["complete"] is False  # a sample counts once verified: some may wait
    assert 0 < results["samples"] <= len(stored(database, rows=True)) < 18


def test_a_second_eval_of_the_same_out_is_refused(seeded_benchmarks, tmp_path):  # noqa: F811
    scripted = Scripted()
    out = tmp_path / "eval"
    with ChatServer(_slow(scripted, delay_s=2.0)) as chat:  # the first is still sampling
        proc, _ = _eval_cli_mid_way(chat, out)
        try:
            second = resolve_settings(
                endpoint=chat.url, model="student", benchmarks="aime_2024", out=out,
                samples="6", limit=3, max_new_tokens=MAX_NEW, max_concurrency=2,
            )  # fmt: skip
            asked = len(scripted.asked)
            with pytest.raises(RunBusyError, match=r"being written by .*pid"):
                evaluate(second, progress=False)
            assert proc.poll() is None  # the first goes on
        finally:
            proc.kill()
            proc.wait()
    # Everything asked after the refusal was the first eval's: no sample asked twice.
    assert len(set(scripted.asked)) == len(scripted.asked) >= asked


def stored(database: Path, rows: bool = False):
    """Samples committed to the run's store, as (benchmark, problem, sample)."""
    if not rows:  # polled while the eval writes: a database being created reads as empty
        try:
            with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as conn:
                return conn.execute("SELECT COUNT(*) FROM attempts").fetchone()[0]
        except sqlite3.OperationalError:
            return 0
    with sqlite3.connect(database) as conn:  # its writer is dead
        found = conn.execute("SELECT query_id, attempt FROM attempts").fetchall()
    index = {}
    for prompt, (name, i, _, _) in Scripted().problems.items():
        index[query_id_for([{"role": "user", "content": prompt}])] = (name, i)
    return {(*index[qid], attempt) for qid, attempt in found}


def test_endpoint_down_midway_scores_what_is_stored_then_resumes(seeded_benchmarks, tmp_path):  # noqa: F811
    scripted, up = Scripted(), {"answers": 3}

    def respond(body):
        if len(scripted.asked) >= up["answers"]:
            return Fault(503, {"error": "down for maintenance"})
        return scripted(body)

    config = tmp_path / "eval.yaml"
    with ChatServer(respond) as chat:
        config.write_text(
            f"endpoint: {chat.url}\nmodel: student\nbenchmarks: {{aime_2024: {{samples: 2}}}}\n"
            f"out: {tmp_path / 'eval'}\nlimit: 3\nmax_new_tokens: {MAX_NEW}\n"
            "max_concurrency: 1\ndown_after_s: 1\n"
        )
        first = evaluate(resolve_settings(config=config), progress=False)
        aime = first.results["benchmarks"]["aime_2024"]
        assert not first.complete and "down for maintenance" in first.stopped[0]
        assert (aime["samples"], aime["complete"]) == (3, False)
        saved = json.loads((tmp_path / "eval" / "results.json").read_text())
        assert saved["benchmarks"]["aime_2024"]["complete"] is False
        up["answers"] = 99
        assert evaluate(resolve_settings(config=config), progress=False).complete
    check(json.loads((tmp_path / "eval" / "results.json").read_text()), "aime_2024", 2)
    assert len(scripted.asked) == len(set(scripted.asked)) == 6
