"""`generate` against a real scripted endpoint: reasoning shapes, faults, tokens, stopping."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from hubtools.records import Query
from hubtools.run import Run
from hubtools.teachers import GenerateConfig, generate_shard
from hubtools.teachers.client import attempt_seed
from tests.servers.chat_server import ChatServer, Fault, Reply

PROBLEMS = [(f"What is {a} + {b}?", str(a + b)) for a, b in [(2, 3), (7, 6), (10, 5), (1, 8)]]


def make_run(tmp_path, problems=PROBLEMS) -> Run:
    run = Run.create(tmp_path / "run", {})
    run.add_queries(Query.from_prompt(p, category="math", source="t", reference=r)
                    for p, r in problems)  # fmt: skip
    return run


def config(*teachers: dict, **top) -> GenerateConfig:
    base = {"sampling": {"max_tokens": 64}, "max_attempts": 3, "down_after_s": 2.0}
    return GenerateConfig.from_dict({**base, **top, "teachers": list(teachers)})


def teacher(server_url: str, name: str = "t", **kw) -> dict:
    return {"name": name, "endpoint": server_url, "model": "m", "max_concurrency": 4, **kw}


def answer_of(body: dict) -> str:
    prompt = body["messages"][-1]["content"]
    return dict(PROBLEMS)[prompt]


def correct(body: dict) -> Reply:
    return Reply(content=f"The final answer is $\\boxed{{{answer_of(body)}}}$.")


def passed_attempts(run: Run, name: str) -> dict:
    with run.store() as store:
        return {a.query_id: (a, v) for a, v in store.iter_passed(name, 0.9)}


def generate(run, cfg, **kw):
    return asyncio.run(generate_shard(run.path, cfg, None, progress=False, **kw))


@pytest.mark.parametrize(
    ("shape", "stream"),
    [("reasoning", False), ("reasoning_content", False), ("think", False),
     ("reasoning", True), ("reasoning_content", True), ("think", True)],
)  # fmt: skip
def test_reasoning_captured_from_every_response_shape(tmp_path, shape, stream):
    def responder(body):
        final = f"So the answer is $\\boxed{{{answer_of(body)}}}$."
        if shape == "think":  # TGI: the tags stay in the content
            return Reply(content=f"<think>\nadd the numbers\n</think>\n{final}")
        return Reply(content=final, reasoning="add the numbers", reasoning_field=shape)

    run = make_run(tmp_path)
    with ChatServer(responder) as server:
        summary = generate(run, config(teacher(server.url, stream=stream)))
    assert summary.teachers[0].passed == len(PROBLEMS)
    for attempt, verdict in passed_attempts(run, "t").values():
        assert attempt.think == "add the numbers"
        assert attempt.answer.startswith("So the answer is")
        assert verdict.score == 1.0 and attempt.finish_reason == "stop"


def test_truncated_answer_is_recorded_as_such(tmp_path):
    run = make_run(tmp_path, PROBLEMS[:1])
    cut = Reply(content="<think>\nlet me think about this for a very long", finish_reason="length")
    with ChatServer() as server:
        server.script(cut, cut)
        summary = generate(run, config(teacher(server.url), max_attempts=2))
    assert summary.teachers[0].failed == 1
    with run.store() as store:
        rows = store._conn.execute("SELECT finish_reason, answer, think FROM attempts").fetchall()
        verdicts = [json.loads(r[0]) for r in store._conn.execute("SELECT details FROM verdicts")]
    assert [tuple(r) for r in rows] == [
        ("length", None, "let me think about this for a very long")
    ] * 2
    assert all(v["truncated"] for v in verdicts)


def test_retries_until_verified_with_new_seeds(tmp_path):
    """Attempt k carries its own seed; a wrong answer is re-asked, a right one stops."""
    run = make_run(tmp_path, PROBLEMS[:1])
    [query] = run.iter_queries()
    with ChatServer() as server:
        server.script(Reply("$\\boxed{4}$"), Reply("$\\boxed{6}$"), Reply("$\\boxed{5}$"))
        summary = generate(run, config(teacher(server.url), max_attempts=5))
        seeds = [r.body["seed"] for r in server.chat_requests]
    assert summary.teachers[0].passed == 1 and summary.teachers[0].attempts == 3
    assert seeds == [attempt_seed(query.query_id, "t", k) for k in range(3)]
    assert len(set(seeds)) == 3


FAULTS = {
    "429 with Retry-After": Fault(429, headers={"Retry-After": "1"}),
    "503": Fault(503, {"error": "unavailable", "error_type": "healthcheck"}),
    "500": Fault(500, {"error": "boom", "error_type": "incomplete_generation"}),
    "502 text": Fault(502, "bad gateway"),
}


@pytest.mark.parametrize("name", list(FAULTS))
def test_transient_faults_are_retried(tmp_path, name):
    run = make_run(tmp_path, PROBLEMS[:1])
    with ChatServer(correct) as server:
        server.script(FAULTS[name], FAULTS[name])
        start = time.monotonic()
        summary = generate(run, config(teacher(server.url)))
        elapsed = time.monotonic() - start
        assert len(server.chat_requests) == 3
    stats = summary.teachers[0]
    assert (stats.passed, stats.attempts, stats.retries) == (1, 1, 2)  # retries are not samples
    if "Retry-After" in name:
        assert elapsed >= 2.0  # the server's Retry-After is a floor for the backoff


@pytest.mark.parametrize(
    "fault",
    [Fault(200, {"error": "Model is overloaded", "error_type": "overloaded"}, after_chunks=2),
     Fault(200, {"error": {"message": "engine died", "http_status_code": 500}}, after_chunks=1),
     Fault(200, after_chunks=2, disconnect=True)],
    ids=["tgi-overload-event", "openai-error-event", "connection-reset"],
)  # fmt: skip
def test_stream_faults_are_retried(tmp_path, fault):
    run = make_run(tmp_path, PROBLEMS[:1])
    with ChatServer(correct) as server:
        server.script(fault)
        summary = generate(run, config(teacher(server.url, stream=True)))
    stats = summary.teachers[0]
    assert (stats.passed, stats.attempts, stats.retries) == (1, 1, 1)
    [(attempt, _)] = passed_attempts(run, "t").values()
    assert "partial" not in attempt.text  # a broken stream's partial text is never kept


def test_timeouts_are_retried(tmp_path):
    run = make_run(tmp_path, PROBLEMS[:1])
    with ChatServer(correct) as server:
        server.script(Reply("late", delay_s=3.0))
        summary = generate(run, config(teacher(server.url, request_timeout_s=0.5)))
    assert (summary.teachers[0].passed, summary.teachers[0].retries) == (1, 1)


def test_422_is_recorded_and_not_retried(tmp_path):
    run = make_run(tmp_path, PROBLEMS[:1])
    validation = Fault(
        422, {"error": "Input validation error: too long", "error_type": "validation"}
    )
    with ChatServer(correct) as server:
        server.script(validation)
        summary = generate(run, config(teacher(server.url)))
        assert len(server.chat_requests) == 1
    assert (summary.teachers[0].rejected, summary.teachers[0].attempts) == (1, 1)
    with run.store() as store:
        [error] = [r[0] for r in store._conn.execute("SELECT error FROM attempts")]
    assert "too long" in error


def test_concurrency_adapts_down_on_overload(tmp_path):
    """A server that admits 4 requests answers 429 past that; the client settles under it."""
    problems = [(f"What is {i} + 1?", str(i + 1)) for i in range(40)]
    run = make_run(tmp_path, problems)
    state = {"active": 0, "rejected": 0}

    def responder(body):
        prompt = body["messages"][-1]["content"]
        if server.in_flight >= 4:
            state["rejected"] += 1
            return Fault(429)
        return Reply(f"$\\boxed{{{dict(problems)[prompt]}}}$", delay_s=0.05)

    with ChatServer(responder) as server:
        summary = generate(run, config(teacher(server.url, max_concurrency=32), max_retries=50))
    stats = summary.teachers[0]
    assert stats.passed == 40 and state["rejected"] > 0
    assert stats.concurrency < 32  # multiplicative decrease happened


def test_hf_token_never_reaches_a_third_party_endpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret_user_token")
    monkeypatch.setenv("MY_ENDPOINT_KEY", "sk-endpoint-key")
    run = make_run(tmp_path, PROBLEMS[:2])
    with ChatServer(correct) as keyless, ChatServer(correct) as keyed:
        generate(run, config(teacher(keyless.url, "a"),
                             teacher(keyed.url, "b", api_key_env="MY_ENDPOINT_KEY")))  # fmt: skip
        seen = [r.headers.get("authorization") for r in keyless.requests + keyed.requests]
    assert not any("hf_secret" in (h or "") for h in seen)
    assert {r.headers.get("authorization") for r in keyed.chat_requests} == {
        "Bearer sk-endpoint-key"
    }


def test_dead_endpoint_does_not_stall_other_teachers(tmp_path):
    run = make_run(tmp_path)
    with ChatServer(correct) as live:
        dead = ChatServer().start()
        dead_url = dead.url
        dead.stop()  # connection refused from now on
        start = time.monotonic()
        summary = generate(run, config(teacher(live.url, "live"), teacher(dead_url, "dead"),
                                       down_after_s=1.5))  # fmt: skip
        elapsed = time.monotonic() - start
    by_name = {t.name: t for t in summary.teachers}
    assert by_name["live"].passed == len(PROBLEMS)
    assert by_name["dead"].down and "without a success" in by_name["dead"].down
    assert by_name["dead"].attempts == 0  # transport failures never burn attempts
    assert not summary.ok and elapsed < 30


# -- TGI's native protocol ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def chat_template(tmp_path_factory):
    pytest.importorskip("transformers", reason="protocol 'tgi' needs transformers")
    from tests.tiny_models import make_tokenizer

    return str(make_tokenizer(tmp_path_factory.mktemp("tok") / "tok"))


@pytest.mark.parametrize("stream", [False, True], ids=["generate", "generate_stream"])
def test_tgi_native_with_local_chat_template(tmp_path, chat_template, stream):
    from tests.servers.tgi_server import TGIServer

    problems = [(f"What is {i} + 2?", str(i + 2)) for i in range(12)]
    run = make_run(tmp_path, problems)

    def responder(body):
        prompt = body["inputs"].split("<|im_start|>user\n", 1)[1].split("<|im_end|>", 1)[0]
        return Reply(f"<think>\nadd\n</think>\n$\\boxed{{{dict(problems)[prompt]}}}$",
                     delay_s=0.05)  # fmt: skip

    with TGIServer(responder, max_concurrent_requests=3) as server:
        server.script(Fault(200, after_chunks=1) if stream else Fault(503))
        cfg = config(teacher(server.url, protocol="tgi", chat_template=chat_template,
                             stream=stream, max_concurrency=64),
                     system_prompt="Be brief.")  # fmt: skip
        summary = generate(run, cfg)
        generations = [r for r in server.requests if r.method == "POST"]
    stats = summary.teachers[0]
    assert (stats.passed, stats.attempts, stats.retries) == (12, 12, 1)
    # Rendered locally with the tokenizer's chat template, system prompt first.
    assert generations[0].body["inputs"].startswith("<|im_start|>system\nBe brief.<|im_end|>")
    assert generations[0].body["inputs"].endswith("<|im_start|>assistant\n")
    # /info's max_concurrent_requests caps concurrency from the start: no 429 ever.
    assert server.max_in_flight <= 3 and server.overloaded == 0
    for attempt, _ in passed_attempts(run, "t").values():
        assert attempt.think == "add" and attempt.finish_reason == "stop"


@pytest.mark.slow
def test_judge_outage_leaves_answers_unverified_then_resumes(tmp_path):
    """A judge that is down is no verdict on the answer: nothing is stored as wrong, and the
    next run verifies what was left without asking the teacher again."""
    run = Run.create(tmp_path / "run", {})
    run.add_queries([Query.from_prompt("Tell me a fun fact.", category="chat", source="t")])
    judge_reply = Reply('{"coherence": 9, "correctness": 8, "helpfulness": 10}')
    with ChatServer(lambda body: Reply("Octopuses have three hearts.")) as teacher_server:
        dead = ChatServer().start()
        dead_url = dead.url
        dead.stop()
        verify = {"judge": {"endpoint": dead_url, "model": "judge", "timeout_s": 2}}
        cfg = config(teacher(teacher_server.url))
        first = asyncio.run(generate_shard(run.path, cfg, verify, progress=False))
        assert (first.teachers[0].unverified, first.teachers[0].done) == (1, 0)
        with run.store() as store:
            assert store.count_unverified("t") == 1
        with ChatServer(lambda body: judge_reply) as judge:
            verify["judge"]["endpoint"] = judge.url
            second = asyncio.run(generate_shard(run.path, cfg, verify, progress=False))
        assert len(teacher_server.chat_requests) == 1  # the answer was not asked for again
    assert (second.teachers[0].passed, second.teachers[0].attempts) == (1, 0)
    [(attempt, verdict)] = passed_attempts(run, "t").values()
    assert verdict.verifier == "llm-judge" and verdict.score == pytest.approx(0.9)
