"""One writer per shard: a second `generate` (or verify, import, clean) refuses or waits.

The generate tests run real `hubtools generate` processes against the protocol test
server and count at the server what each one asked.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from hubtools.errors import RunBusyError
from hubtools.queries.clean import clean
from hubtools.records import Query
from hubtools.release.importer import import_outputs
from hubtools.run import Run
from hubtools.teachers.client import attempt_seed
from hubtools.verify import verify
from tests.servers.chat_server import ChatServer, Reply

N = 24
LOCK = ("locks", "shard-00000-of-00001.lock")


def make_run(tmp_path, n=N):
    problems = [(f"What is {i} + {i}?", str(2 * i)) for i in range(n)]
    queries = [Query.from_prompt(p, category="math", source="t", reference=r) for p, r in problems]
    run = Run.create(tmp_path / "run", {})
    run.add_queries(queries)
    return run, queries


def counting_server(queries, requested, delay_s=0.25):
    by_prompt = {q.messages[0]["content"]: q for q in queries}
    attempt_of = {attempt_seed(q.query_id, "t", k): k for q in queries for k in range(3)}

    def responder(body):
        query = by_prompt[body["messages"][-1]["content"]]
        requested.append((query.query_id, attempt_of[body["seed"]]))
        return Reply(f"The final answer is $\\boxed{{{query.reference}}}$", delay_s=delay_s)

    return ChatServer(responder)


def generate_cmd(run, config, *extra):
    return [sys.executable, "-m", "hubtools", "generate", str(run.path), "--config", str(config),
            "--quiet", *extra]  # fmt: skip


def holder_of(run) -> dict | None:
    try:
        text = run.path.joinpath(*LOCK).read_text()
        return json.loads(text) if text else None
    except (FileNotFoundError, ValueError):
        return None


def wait_until(predicate, proc, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def teachers_config(tmp_path, url: str):
    config = tmp_path / "teachers.yaml"
    config.write_text(
        f"teachers:\n  - {{name: t, endpoint: '{url}', model: m, max_concurrency: 2}}\n"
    )
    return config


def test_second_generate_refuses_at_once_and_a_waiting_one_sends_nothing(tmp_path):
    run, queries = make_run(tmp_path)
    requested: list[tuple[str, int]] = []
    with counting_server(queries, requested) as server:
        config = teachers_config(tmp_path, server.url)
        first = subprocess.Popen(generate_cmd(run, config), stderr=subprocess.PIPE)
        wait_until(lambda: (holder_of(run) or {}).get("pid") == first.pid and requested, first)

        started = time.monotonic()
        second = subprocess.run(generate_cmd(run, config), capture_output=True, text=True,
                                timeout=60)  # fmt: skip
        refused_in = time.monotonic() - started
        assert first.poll() is None, "the first generate must still be running"
        assert second.returncode == 1
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1, second.stderr
        assert lines[0].startswith(f"error: shard 0/1 of {run.path} is being written by generate")
        assert f"(pid {first.pid} on host {socket.gethostname()}, since " in lines[0]
        assert lines[0].endswith("UTC); wait for it, or pass --wait")
        assert "Traceback" not in second.stderr

        waiting = subprocess.Popen(generate_cmd(run, config, "--wait"), stderr=subprocess.PIPE,
                                   stdout=subprocess.PIPE)  # fmt: skip
        assert first.wait(120) == 0, first.stderr.read().decode()[-2000:]
        asked_by_first = len(requested)
        out, err = waiting.communicate(timeout=120)
        assert waiting.returncode == 0, err.decode()[-2000:]
        assert "waiting for shard 0/1" in err.decode()

    # Each query asked exactly once (attempt 0 passes), by the first process only.
    assert sorted(requested) == sorted((q.query_id, 0) for q in queries)
    assert asked_by_first == len(requested) == N
    assert refused_in < 10  # python start-up and imports; the first needed ~3 s more
    assert holder_of(run) is None  # released: nobody is named any more


def test_a_killed_holder_releases_the_shard(tmp_path):
    run, queries = make_run(tmp_path)
    requested: list[tuple[str, int]] = []
    with counting_server(queries, requested) as server:
        config = teachers_config(tmp_path, server.url)
        first = subprocess.Popen(generate_cmd(run, config), stderr=subprocess.PIPE)
        wait_until(lambda: len(requested) >= 4, first)
        first.send_signal(signal.SIGKILL)
        first.wait()
        again = subprocess.run(generate_cmd(run, config), capture_output=True, text=True,
                               timeout=120)  # fmt: skip
        assert again.returncode == 0, again.stderr[-2000:]
    with run.store() as store:
        assert store.counts(0.9)["t"].passed == N


def hold_in_subprocess(run, name="shard-00000-of-00001", stage="generate"):
    """Another process holding a lock of ``run``, until killed."""
    code = (
        "import sys, time; from hubtools.run import Run; run = Run.open(sys.argv[1]);\n"
        f"with run.lock({name!r}, 'x', {stage!r}):\n"
        "    print('held', flush=True); time.sleep(600)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(run.path)], stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"held"
    return proc


def test_verify_import_and_clean_refuse_a_busy_shard(tmp_path):
    run, _ = make_run(tmp_path, n=3)
    answers = tmp_path / "answers.jsonl"
    answers.write_text(json.dumps({"prompt": "Hi?", "output": "Hello", "score": 1}) + "\n")
    holder = hold_in_subprocess(run)
    try:
        with pytest.raises(RunBusyError, match=rf"being written by generate \(pid {holder.pid} "):
            verify(run.path, progress=False)
        with pytest.raises(RunBusyError, match="shard 0/1 of .* is being written by generate"):
            import_outputs(answers, run=run.path, teacher="ext", progress=False)
        assert run.count_queries() == 3 and not run.shard_paths()  # nothing stored
        cli = subprocess.run(
            [sys.executable, "-m", "hubtools", "verify", str(run.path)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert cli.returncode == 1 and len(cli.stderr.strip().splitlines()) == 1, cli.stderr
        assert "pass --wait" in cli.stderr
    finally:
        holder.kill()
        holder.wait()
    # Released by the kill: the same calls go through now.
    assert import_outputs(answers, run=run.path, teacher="ext", progress=False).stored == 1
    assert verify(run.path, progress=False).verified == 0

    Run.create(run.path / "pulled").add_queries(
        Query.from_prompt(f"Prove that {i} is a number.", category="math", source="s")
        for i in range(4)
    )
    holder = hold_in_subprocess(run, "clean-00001-of-00002", "queries clean")
    try:
        done = clean(run.path, benchmarks=(), shard=(0, 2), workers=1, progress=False)
        assert done.shard == (0, 2)  # another scan shard: not in the way
        with pytest.raises(RunBusyError, match="clean shard 1/2 of .* queries clean"):
            clean(run.path, benchmarks=(), shard=(1, 2), workers=1, progress=False)
        with pytest.raises(RunBusyError, match="clean shard 1/2"):  # deciding needs them all
            clean(run.path, benchmarks=(), workers=1, progress=False)
    finally:
        holder.kill()
        holder.wait()
    assert clean(run.path, benchmarks=(), workers=1, progress=False).queries_in == 4


def test_wait_blocks_until_the_holder_is_done(tmp_path, capfd):
    run, _ = make_run(tmp_path, n=2)
    held = threading.Event()
    release = threading.Event()

    def hold():
        with run.shard_lock((0, 1), "import"):
            held.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait(10)
    threading.Timer(0.5, release.set).start()
    started = time.monotonic()
    with run.shard_lock((0, 1), "verify", wait=True):
        waited = time.monotonic() - started
        assert json.loads(run.path.joinpath(*LOCK).read_text())["stage"] == "verify"
    thread.join()
    assert waited >= 0.4
    assert f"waiting for shard 0/1 of {run.path}: it is being written by import (pid " in (
        capfd.readouterr().err
    )
    assert os.path.getsize(run.path.joinpath(*LOCK)) == 0


def test_ray_executor_refuses_a_busy_shard_before_starting(tmp_path):
    run, _ = make_run(tmp_path, n=2)
    config = tmp_path / "teachers.yaml"
    config.write_text("teachers: [{name: t, endpoint: 'http://127.0.0.1:9', model: m}]\n")
    holder = hold_in_subprocess(run, "shard-00001-of-00003")
    try:
        done = subprocess.run(
            generate_cmd(run, config, "--executor", "ray", "--shards", "3"),
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        holder.kill()
        holder.wait()
    assert done.returncode == 1, done.stderr[-2000:]
    assert done.stderr.startswith(f"error: shard 1/3 of {run.path} is being written by generate")
    assert len(done.stderr.strip().splitlines()) == 1


def test_score_refuses_a_busy_shard_before_loading_its_model(tmp_path):
    pytest.importorskip("transformers")
    from hubtools.quality.stage import score
    from tests.tiny_models import make_model

    run, _ = make_run(tmp_path, n=3)
    answers = tmp_path / "answers.jsonl"
    answers.write_text(json.dumps({"prompt": "Hi?", "output": "<think>t</think>Hello",
                                   "score": 1}) + "\n")  # fmt: skip
    import_outputs(answers, run=run.path, teacher="ext", progress=False)
    model = make_model(tmp_path / "tiny")
    holder = hold_in_subprocess(run, stage="score")
    try:
        with pytest.raises(RunBusyError, match=rf"being written by score \(pid {holder.pid} "):
            score(run.path, model=str(model), progress=False)
    finally:
        holder.kill()
        holder.wait()
    assert score(run.path, model=str(model), progress=False).scored == 1
