"""The LLM judge against a real OpenAI-style server on loopback (tests/servers/chat_server.py)."""

from __future__ import annotations

import asyncio

import pytest
from servers.chat_server import ChatServer, Fault, Reply

from hubtools.errors import UsageError
from hubtools.records import Query
from hubtools.verify import JudgeConfig, VerifyConfig, verifier_for
from hubtools.verify.judge import GENERAL, JudgeVerifier, parse_verdict

HF_SECRET = "hf_this_token_must_never_leave_the_machine"


@pytest.fixture
def server():
    with ChatServer() as chat:
        yield chat


@pytest.fixture
def query() -> Query:
    return Query.from_prompt("Explain why the sky is blue.", source="t", category="chat")


def judge(server: ChatServer, **options) -> JudgeVerifier:
    key_env = options.pop("api_key_env", None)
    config = VerifyConfig(judge=JudgeConfig(server.url, "judge-model", api_key_env=key_env,
                                            **options))  # fmt: skip
    return JudgeVerifier(config, GENERAL, backoff_s=0.01)


@pytest.mark.parametrize(
    "reply, expected",
    [
        ('{"coherence": 8, "correctness": 6, "helpfulness": 7}', 0.7),
        (
            'Here is my verdict:\n```json\n{"coherence": 10, "correctness": 10, '
            '"helpfulness": 10}\n```',
            1.0,
        ),  # fmt: skip
        (
            '<think>Is it {"coherence": 1}? It explains Rayleigh scattering well.</think>\n'
            '{"coherence": 9, "correctness": 9, "helpfulness": 6}',
            0.8,
        ),  # fmt: skip
        ("The answer is clear and correct.\nScore: 7/10", 0.7),
        ("Rating: [[4]]", 0.4),
        ("Overall: 3 out of 5", 0.6),
    ],
)
def test_scripted_verdicts_are_parsed_and_normalised(server, query, reply, expected):
    server.script(Reply(reply))
    score = judge(server).verify(query, "Rayleigh scattering favours short wavelengths.")
    assert score.value == pytest.approx(expected)
    assert "error" not in score.details and score.details["judge"] == "judge-model"


def test_the_request_carries_the_rubric_the_case_and_the_judge_settings(server):
    query = Query.from_prompt("What is 2+2?", source="t", category="general", reference="4")
    server.script(Reply('{"coherence": 5, "correctness": 5, "helpfulness": 5}'))
    judge(server, temperature=0.0, max_tokens=64).verify(query, "It is 4.")
    [request] = server.chat_requests
    assert request.path == "/v1/chat/completions"
    body = request.body
    assert body["model"] == "judge-model" and body["max_tokens"] == 64
    assert body["temperature"] == 0.0 and not body.get("stream")
    system, user = body["messages"]
    assert system["role"] == "system" and "coherence" in system["content"]
    assert "What is 2+2?" in user["content"] and "## Reference answer\n4" in user["content"]
    assert user["content"].endswith("## Response to judge\nIt is 4.")


def test_no_hugging_face_token_reaches_the_judge_endpoint(server, query, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", HF_SECRET)
    monkeypatch.setenv("JUDGE_KEY", "judge-own-key")
    server.script(*[Reply("Score: 5/10")] * 2)
    judge(server).verify(query, "blue")  # an endpoint without a key
    judge(server, api_key_env="JUDGE_KEY").verify(query, "blue")  # the endpoint's own key
    keyless, keyed = server.chat_requests
    assert keyless.headers["authorization"] == "Bearer EMPTY"
    assert keyed.headers["authorization"] == "Bearer judge-own-key"
    for request in server.requests:
        assert all(HF_SECRET not in value for value in request.headers.values())


def test_a_malformed_verdict_scores_zero_with_the_raw_reply(server, query):
    server.script(Reply("I think this answer is pretty good overall!"))
    score = judge(server).verify(query, "blue")
    assert score.value == 0.0
    assert score.details["error"] == "unparseable verdict"
    assert score.details["raw"].startswith("I think this answer")
    assert parse_verdict('{"coherence": 11, "correctness": 5, "helpfulness": 5}', GENERAL) is None


def test_a_reply_that_is_not_a_chat_completion_is_an_error(server, query):
    server.script(Fault(200, "<html>proxy login</html>"))
    score = judge(server).verify(query, "blue")
    assert score.value == 0.0 and score.details["error"].startswith("malformed judge response")
    assert "retryable" not in score.details


def test_transport_errors_are_retried_then_reported(server, query):
    server.script(Fault(503, {"error": "busy"}), Fault(429), Reply("Score: 9/10"))
    score = judge(server).verify(query, "blue")
    assert score.value == pytest.approx(0.9) and score.details["retries"] == 2
    assert len(server.chat_requests) == 3

    server.script(*[Fault(502, "bad gateway")] * 4)
    score = judge(server).verify(query, "blue")
    assert score.value == 0.0 and score.details["retryable"] is True
    assert (
        "HTTP 502" in score.details["error"] and "gave up after 4 tries" in score.details["error"]
    )
    assert len(server.chat_requests) == 3 + 4


def test_a_rejected_request_is_not_retried(server, query):
    server.script(Fault(422, {"error": "Input validation error", "error_type": "validation"}))
    score = judge(server).verify(query, "blue")
    assert score.value == 0.0 and "HTTP 422" in score.details["error"]
    assert "retryable" not in score.details and len(server.chat_requests) == 1


def test_a_judge_that_never_answers_times_out(server, query):
    server.script(Reply("Score: 9/10", delay_s=1))
    verifier = judge(server, timeout_s=0.3)
    verifier.retries = 0
    score = verifier.verify(query, "blue")
    assert score.value == 0.0 and score.details["retryable"] is True
    assert "Timeout" in score.details["error"]


def test_concurrency_is_bounded_by_the_judge_config(server, query):
    server.script(*[Reply("Score: 6/10", delay_s=0.2)] * 8)
    verifier = judge(server, max_concurrency=3)

    async def many():
        try:
            return await asyncio.gather(*(verifier.averify(query, "blue") for _ in range(8)))
        finally:
            await verifier.aclose()

    scores = asyncio.run(many())
    assert [s.value for s in scores] == [pytest.approx(0.6)] * 8
    assert server.max_in_flight == 3


def test_chat_and_general_need_a_judge_and_its_key(server, monkeypatch):
    with pytest.raises(UsageError, match="need an LLM judge"):
        verifier_for("chat", VerifyConfig())
    monkeypatch.delenv("NO_SUCH_KEY", raising=False)
    config = VerifyConfig(judge=JudgeConfig(server.url, "m", api_key_env="NO_SUCH_KEY"))
    with pytest.raises(UsageError, match="NO_SUCH_KEY, which is not set"):
        verifier_for("general", config)
    with pytest.raises(UsageError, match="not an http"):
        verifier_for("general", VerifyConfig(judge=JudgeConfig("localhost:8000", "m")))
    assert verifier_for("general", VerifyConfig(judge=JudgeConfig(server.url, "m"))).is_async
