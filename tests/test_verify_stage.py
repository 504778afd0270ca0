"""The verify stage end to end: a real run store, worker processes, the CLI, input files."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from conftest import shared_path
from servers.chat_server import ChatServer, Fault, Reply
from typer.testing import CliRunner

from hubtools.cli import app
from hubtools.errors import InputFileError, UsageError
from hubtools.records import Attempt, Query
from hubtools.run import Run
from hubtools.verify import VerifyConfig, VerifyPool, verify

HF_SECRET = "hf_never_send_me_to_a_judge"


def _rows(name: str) -> list[dict]:
    path = shared_path("data", "benchmarks", name)
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def aime() -> list[dict]:
    return _rows("aime_2025.jsonl")[:4]


@pytest.fixture(scope="module")
def ifeval() -> dict:
    return next(r for r in _rows("ifeval_input_data.jsonl") if r["key"] == 1001)  # no commas


def _queries(aime, ifeval) -> list[Query]:
    math = [
        Query.from_prompt(r["problem"], source="aime_2025", category="math", reference=r["answer"])
        for r in aime
    ]
    constraints = {"instruction_id_list": ifeval["instruction_id_list"], "kwargs": ifeval["kwargs"]}
    follow = Query.from_prompt(
        ifeval["prompt"], source="ifeval", category="if", constraints=constraints
    )
    science = Query.from_prompt(
        "Which gas do plants absorb? (A) O2 (B) CO2", source="t", category="science", reference="B"
    )
    return [*math, follow, science]


def _attempt(query: Query, teacher: str, n: int, text: str, **extra) -> Attempt:
    return Attempt(query_id=query.query_id, teacher=teacher, attempt=n, text=text, **extra)


@pytest.fixture
def run(tmp_path, aime, ifeval):
    """A run with two teachers' attempts: right, wrong, truncated and errored ones."""
    run = Run.create(tmp_path / "run", {"verify": {"math_timeout_s": 3}})
    queries = _queries(aime, ifeval)
    run.add_queries(queries)
    *math, follow, science = queries
    attempts = []
    for q, row in zip(math, aime, strict=True):
        attempts.append(
            _attempt(q, "t1", 0, f"<think>work</think>The answer is $\\boxed{{{row['answer']}}}$.")
        )
        attempts.append(_attempt(q, "t2", 0, f"<think>I get {row['answer']}</think>So it is 1."))
    attempts += [
        _attempt(follow, "t1", 0, "<think>no, commas, here</think>Day one we sail to Tokyo."),
        _attempt(follow, "t2", 0, "Day one, we sail."),
        _attempt(science, "t1", 0, "Answer: B", answer="Answer: B"),
        _attempt(science, "t2", 0, "<think>B or D, it is probably"),  # truncated: no answer
        _attempt(science, "t2", 1, "", error="HTTP 503 overloaded"),  # nothing to verify
    ]
    with run.store() as store:
        store.add_attempts(attempts)
    return run


def _verdicts(run: Run) -> dict[tuple[str, str, int], float]:
    import sqlite3

    [path] = run.shard_paths()
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT query_id, teacher, attempt, score FROM verdicts").fetchall()
    return {(q, t, a): s for q, t, a, s in rows}


def test_a_run_is_verified_once_resumably_and_again_with_force(run):
    result = verify(run.path, workers=2, progress=False)
    assert (result.verified, result.passed, result.failed) == (12, 6, 6)
    assert result.by_verifier == {"math-verify": 8, "ifeval": 2, "science": 2}
    verdicts = _verdicts(run)
    assert len(verdicts) == 12  # the errored attempt has none
    assert sorted(verdicts.values()) == [0.0] * 6 + [1.0] * 6
    assert Run.open(run.path).config["verify"] == {"math_timeout_s": 3}

    again = verify(run.path, workers=2, progress=False)
    assert again.verified == 0 and _verdicts(run) == verdicts

    one = verify(run.path, force=True, teacher="t1", workers=1, progress=False)
    assert (one.replaced, one.verified, one.passed) == (6, 6, 6)
    everything = verify(run.path, force=True, workers=1, progress=False)
    assert (everything.replaced, everything.verified) == (12, 12)
    assert _verdicts(run) == verdicts


def test_the_cli_verifies_a_run_and_freezes_the_default_config(tmp_path, aime, ifeval):
    run = Run.create(tmp_path / "run")
    [query, *_] = _queries(aime, ifeval)
    run.add_queries([query])
    with run.store() as store:
        store.add_attempts([_attempt(query, "t", 0, f"\\boxed{{{aime[0]['answer']}}}")])
    out = CliRunner().invoke(app, ["verify", str(run.path), "--workers", "1", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["passed"] == 1
    assert Run.open(run.path).config["verify"] == {}
    bad = CliRunner().invoke(app, ["verify", str(run.path), "--judge-model", "m"])
    assert bad.exit_code != 0 and "frozen in its run.yaml" in str(bad.exception)
    sharded = CliRunner().invoke(app, ["verify", str(run.path), "--shard", "1"])
    assert "--shard must look like i/N" in str(sharded.exception)


def test_judge_failures_are_not_stored_and_retried_next_time(tmp_path):
    with ChatServer() as server:
        judge = {"endpoint": server.url, "model": "judge", "timeout_s": 5}
        run = Run.create(tmp_path / "run", {"verify": {"judge": judge}})
        query = Query.from_prompt("Say hello nicely.", source="t", category="chat")
        run.add_queries([query])
        with run.store() as store:
            store.add_attempts([_attempt(query, "t", 0, "<think>hm</think>Hello there!")])
        server.script(*[Fault(503, {"error": "down"})] * 4)
        first = verify(run.path, workers=1, progress=False)
        assert (first.verified, first.not_stored) == (0, 1) and _verdicts(run) == {}
        server.script(Reply('{"coherence": 9, "correctness": 9, "helpfulness": 9}'))
        second = verify(run.path, workers=1, progress=False)
        assert second.verified == 1 and list(_verdicts(run).values()) == [pytest.approx(0.9)]
        judged = server.chat_requests[-1].body["messages"][1]["content"]
        assert judged.endswith("Hello there!") and "hm" not in judged  # think removed


def _line(category: str, answer: str, **fields) -> str:
    return json.dumps({"prompt": fields.pop("prompt", "Q?"), "category": category,
                       "answer": answer, **fields})  # fmt: skip


def test_input_files_are_scored_line_by_line_through_the_cli(tmp_path, ifeval):
    constraints = {"instruction_id_list": ifeval["instruction_id_list"], "kwargs": ifeval["kwargs"]}
    lines = [
        _line("math", "<think>17*23</think>The final answer is $\\boxed{391}$.", reference="391"),
        _line("math", "It is 390.", reference="391"),
        _line("science", "Answer: B", reference="B"),
        _line("if", "No commas in this reply.", prompt=ifeval["prompt"], constraints=constraints),
        _line("chat", "Hello! How can I help?", meta={"id": 7}),
    ]
    source = tmp_path / "answers.jsonl"
    source.write_text("\n".join(lines) + "\n")
    output = tmp_path / "scored.jsonl"
    with ChatServer() as server:
        server.script(Reply("<think>friendly</think>Score: 8/10"))
        env = {**os.environ, "HF_TOKEN": HF_SECRET}
        cli = [sys.executable, "-m", "hubtools", "verify", "--input", str(source), "--output",
               str(output), "--workers", "1", "--judge-endpoint", server.url,
               "--judge-model", "judge"]  # fmt: skip
        done = subprocess.run(cli, capture_output=True, text=True, timeout=120, env=env)
        assert done.returncode == 0, done.stderr
        assert all(HF_SECRET not in v for r in server.requests for v in r.headers.values())
    scored = [json.loads(line) for line in output.read_text().splitlines()]
    assert [r["score"] for r in scored] == [1.0, 0.0, 1.0, 1.0, pytest.approx(0.8)]
    assert [r["verifier"] for r in scored] == ["math-verify", "math-verify", "science", "ifeval",
                                               "llm-judge"]  # fmt: skip
    assert scored[1]["details"]["reason"].startswith("no final answer")
    assert scored[4]["meta"] == {"id": 7} and scored[4]["answer"] == "Hello! How can I help?"
    assert "verified 5 answers: 3 passed" in done.stdout  # 0.8 is under the 0.9 bar


@pytest.mark.parametrize(
    "bad_line, message",
    [
        ("{not json", "answers.jsonl:2: invalid JSON"),
        (_line("math", "x", refrence="1"), "answers.jsonl:2: unknown field 'refrence' (did you "),
        (json.dumps({"prompt": "Q", "answer": "x"}), "answers.jsonl:2: 'category' is required"),
        (json.dumps({"prompt": "Q", "category": "math"}), "answers.jsonl:2: 'answer' (the text"),
        (_line("chat", "hi"), "answers.jsonl:2: chat and general answers need an LLM judge"),
    ],
)
def test_a_bad_input_line_is_named_and_leaves_no_output(tmp_path, bad_line, message):
    source = tmp_path / "answers.jsonl"
    source.write_text(_line("math", "\\boxed{1}", reference="1") + "\n" + bad_line + "\n")
    output = tmp_path / "out.jsonl"
    with pytest.raises(InputFileError) as raised:
        verify(input=source, output=output, workers=1, progress=False)
    assert message in str(raised.value) and "\n" not in str(raised.value)
    assert not output.exists() and list(tmp_path.iterdir()) == [source]


def test_the_cli_reports_a_bad_line_in_one_line_and_exits_non_zero(tmp_path):
    source = tmp_path / "answers.jsonl"
    source.write_text(_line("math", "", reference="1") + "\n{not json\n")
    output = tmp_path / "out.jsonl"
    cli = [sys.executable, "-m", "hubtools", "verify", "--input", str(source),
           "--output", str(output)]  # fmt: skip
    done = subprocess.run(cli, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and not output.exists()
    [error] = [line for line in done.stderr.splitlines() if line.strip()]
    assert (
        error == f"error: {source}:2: invalid JSON (Expecting property name enclosed in "
        "double quotes at column 2)"
    )
    helped = subprocess.run([*cli[:4], "--help"], capture_output=True, text=True, timeout=120)
    assert helped.returncode == 0 and "--input" in helped.stdout and "--force" in helped.stdout


@pytest.mark.parametrize("where", ["missing folder", "a directory", "a file's folder", "/proc"])
def test_a_bad_output_is_one_line_before_any_answer_is_verified(tmp_path, where):
    source = tmp_path / "answers.jsonl"
    source.write_text(_line("chat", "Hello!") + "\n")
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("x")
    output = {
        "missing folder": tmp_path / "nope" / "out.jsonl",
        "a directory": tmp_path / "dir",
        "a file's folder": tmp_path / "file" / "out.jsonl",
        "/proc": Path("/proc/hubtools-out.jsonl"),  # unwritable even for root
    }[where]
    with ChatServer() as server:  # a judge that must not be asked
        cli = [sys.executable, "-m", "hubtools", "verify", "--input", str(source), "--output",
               str(output), "--judge-endpoint", server.url, "--judge-model", "judge"]  # fmt: skip
        done = subprocess.run(cli, capture_output=True, text=True, timeout=120)
        assert server.chat_requests == []
    assert done.returncode == 2 and "Traceback" not in done.stderr
    [error] = [line for line in done.stderr.splitlines() if line.strip()]
    assert error.startswith(f"error: --output {output}"), error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["answers.jsonl", "dir", "file"]


def test_run_only_options_are_refused_with_input(tmp_path):
    source = tmp_path / "answers.jsonl"
    source.write_text(_line("math", "\\boxed{1}", reference="1") + "\n")
    for extra in ({"force": True}, {"teacher": "t"}, {"shard": (1, 2)}):
        with pytest.raises(UsageError, match="are for a RUN"):
            verify(input=source, output=tmp_path / "out.jsonl", progress=False, **extra)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_an_unwritable_output_folder_is_refused(tmp_path):
    source = tmp_path / "answers.jsonl"
    source.write_text(_line("math", "\\boxed{1}", reference="1") + "\n")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(UsageError, match="cannot write in"):
        verify(input=source, output=locked / "out.jsonl", workers=1, progress=False)


def test_verify_async_keeps_the_event_loop_free(aime):
    """Worker start-up (seconds: the forkserver imports the verifiers) and every check run
    off the loop: a ticker on the same loop never waits long between beats."""
    query = Query.from_prompt("q", source="t", category="math", reference=aime[0]["answer"])
    beats: list[float] = []

    async def ticker(stop: asyncio.Event) -> None:
        while not stop.is_set():
            beats.append(time.monotonic())
            await asyncio.sleep(0.005)

    async def main() -> list[float]:
        stop = asyncio.Event()
        async with VerifyPool(VerifyConfig(), workers=2) as pool:
            beat = asyncio.create_task(ticker(stop))
            answers = [f"\\boxed{{{aime[0]['answer'] if i % 2 else 7}}}" for i in range(200)]
            scores = await asyncio.gather(*(pool.verify_async(query, a) for a in answers))
            stop.set()
            await beat
        return [s.value for s in scores]

    assert asyncio.run(main()) == [0.0, 1.0] * 100
    gaps = [b - a for a, b in zip(beats, beats[1:], strict=False)]
    assert len(beats) > 10 and max(gaps) < 1.0, f"the loop stalled for {max(gaps):.2f}s"


def test_the_pool_runs_math_from_an_event_loop_in_another_thread(aime):
    """Math-Verify needs a main thread: the pool gives it one in each worker process."""
    query = Query.from_prompt("q", source="t", category="math", reference=aime[1]["answer"])
    results = []

    def in_thread() -> None:
        async def main():
            async with VerifyPool(VerifyConfig(), workers=1) as pool:
                return await pool.score_batch([(query, f"\\boxed{{{aime[1]['answer']}}}")] * 3)

        results.extend(s.value for s in asyncio.run(main()))

    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join(120)
    assert results == [1.0, 1.0, 1.0]


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def test_workers_exit_when_their_owner_is_killed(tmp_path):
    """A SIGKILLed stage must not leave worker processes (and their forkserver) behind."""
    script = tmp_path / "owner.py"
    script.write_text(
        textwrap.dedent(
            """
            import asyncio
            from hubtools.records import Query
            from hubtools.verify.pool import VerifyPool

            async def main():
                pool = VerifyPool(workers=2)
                query = Query.from_prompt("q", source="t", category="math", reference="1")
                await pool.score_batch([(query, "\\\\boxed{1}")] * 4)
                print(*pool.executor._processes, flush=True)
                await asyncio.sleep(120)

            if __name__ == "__main__":
                asyncio.run(main())
            """
        )
    )
    owner = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        workers = [int(pid) for pid in owner.stdout.readline().split()]
        assert len(workers) == 2 and all(_running(pid) for pid in workers)
    finally:
        owner.kill()
        owner.wait()
    deadline = time.monotonic() + 15
    while any(_running(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_running(pid) for pid in workers)


def test_a_worker_killed_mid_batch_is_replaced_and_its_answers_retried(aime):
    query = Query.from_prompt("q", source="t", category="math", reference=aime[2]["answer"])
    n = 3000  # long enough that the kill below always lands mid-batch, however fast the CPU
    answers = [f"\\boxed{{{aime[2]['answer'] if i % 3 else 1}}}" for i in range(n)]

    async def main() -> tuple[list[float], list[int], list[int]]:
        async with VerifyPool(VerifyConfig(), workers=2) as pool:
            await pool.score_batch([(query, answers[0])] * 4)
            before = list(pool.executor._processes)
            batch = asyncio.create_task(pool.score_batch([(query, a) for a in answers]))
            await asyncio.sleep(0.05)
            os.kill(before[0], signal.SIGKILL)
            scores = await batch
            return [s.value for s in scores], before, list(pool.executor._processes)

    values, before, after = asyncio.run(main())
    assert values == [0.0 if i % 3 == 0 else 1.0 for i in range(n)]
    assert not set(before) & set(after)  # a fresh set of workers finished the batch
