"""The aiohttp transport under AsyncInferenceClient, against a real server."""

from __future__ import annotations

import asyncio
import socket

import httpx2
import pytest
from huggingface_hub.errors import HfHubHTTPError, InferenceTimeoutError

from hubtools import endpoints
from hubtools.endpoints import RETRY, classify, make_client
from hubtools.endpoints_transport import AiohttpTransport
from hubtools.records import Query
from hubtools.teachers.client import TeacherClient
from hubtools.teachers.config import Sampling, TeacherConfig
from tests.servers.chat_server import ChatServer, Fault, Reply

MESSAGES = [{"role": "user", "content": "What is 2 + 3?"}]


@pytest.fixture(autouse=True)
def _aiohttp(monkeypatch):
    monkeypatch.setenv(endpoints.TRANSPORT_ENV, "aiohttp")


def run(coro):
    return asyncio.run(coro)


async def _transport_of(client) -> object:
    return (await client._get_async_client())._transport


def test_json_answer_and_headers(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret_token_never_sent")
    monkeypatch.setenv("MY_KEY", "sk-endpoint")
    with ChatServer() as server:
        server.script(Reply("five"))

        async def go():
            client = make_client(server.url, api_key_env="MY_KEY", timeout=5)
            assert isinstance(await _transport_of(client), AiohttpTransport)
            out = await client.chat_completion(MESSAGES, model="m", max_tokens=8, seed=1)
            await client.close()
            return out

        out = run(go())
    assert out.choices[0].message.content == "five"
    assert out.usage.prompt_tokens == 10
    (request,) = server.chat_requests
    assert request.headers["authorization"] == "Bearer sk-endpoint"
    assert "hf_secret_token_never_sent" not in str(request.headers)
    assert request.headers["content-type"] == "application/json"
    assert request.body["seed"] == 1 and request.body["messages"] == MESSAGES


def test_no_key_sends_placeholder_not_hf_token(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret_token_never_sent")
    with ChatServer() as server:
        server.script(Reply("ok"))
        run(make_client(server.url).chat_completion(MESSAGES, model="m"))
    (request,) = server.chat_requests
    assert request.headers["authorization"] == f"Bearer {endpoints.NO_KEY}"
    assert "hf_secret" not in str(request.headers)


def test_sse_stream_arrives_in_chunks():
    with ChatServer() as server:
        server.script(Reply("a fairly long answer, streamed in small deltas", chunk_chars=4))

        async def go():
            client = make_client(server.url, timeout=5)
            stream = await client.chat_completion(MESSAGES, model="m", stream=True)
            pieces = [c.choices[0].delta.content async for c in stream if c.choices]
            await client.close()
            return pieces

        pieces = run(go())
    assert "".join(p for p in pieces if p) == "a fairly long answer, streamed in small deltas"
    assert len([p for p in pieces if p]) > 5


def test_http_errors_keep_status_and_headers():
    with ChatServer() as server:
        server.script(Fault(503, headers={"Retry-After": "2"}))

        async def go():
            with pytest.raises(HfHubHTTPError) as info:
                await make_client(server.url).chat_completion(MESSAGES, model="m")
            return info.value

        error = run(go())
    failure = classify(error)
    assert (failure.kind, failure.status, failure.retry_after) == (RETRY, 503, 2.0)


def test_timeout_is_inference_timeout_error():
    with ChatServer() as server:
        server.script(Reply("late", delay_s=2.0))

        async def go():
            with pytest.raises(InferenceTimeoutError) as info:
                await make_client(server.url, timeout=0.3).chat_completion(MESSAGES, model="m")
            return info.value

        error = run(go())
    assert isinstance(error.__cause__, httpx2.TimeoutException)
    assert classify(error).kind == RETRY


def test_connection_refused_is_a_transport_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def go():
        with pytest.raises(httpx2.ConnectError) as info:
            await make_client(f"http://127.0.0.1:{port}").chat_completion(MESSAGES, model="m")
        return info.value

    assert classify(run(go())).kind == RETRY


def test_reset_mid_stream_is_a_transport_error():
    with ChatServer() as server:
        server.script(Fault(200, after_chunks=2, disconnect=True))

        async def go():
            stream = await make_client(server.url).chat_completion(MESSAGES, model="m", stream=True)
            with pytest.raises(httpx2.TransportError) as info:
                async for _ in stream:
                    pass
            return info.value

        assert classify(run(go())).kind == RETRY


def test_teacher_client_many_requests_over_small_pools():
    with ChatServer(lambda body: Reply("ok", delay_s=0.05)) as server:
        cfg = TeacherConfig(name="t", endpoint=server.url, model="m", max_concurrency=80,
                            stream=False)  # fmt: skip

        async def go():
            client = TeacherClient(cfg, Sampling(max_tokens=8), None)
            query = Query.from_prompt("What is 2 + 3?", category="math", source="t")
            return await asyncio.gather(
                *(client.complete(query, client.params(query, i)) for i in range(200))
            )

        results = run(go())
    assert [r.text for r in results] == ["ok"] * 200
    assert server.max_in_flight > 32  # more than one pool at work


def test_streamed_requests_do_not_pile_up_in_one_client():
    # AsyncInferenceClient keeps each streamed response until the client closes; the
    # teacher client replaces a client after STREAMS_PER_CLIENT streams, so what is held
    # stays bounded however many answers are streamed.
    import gc

    from hubtools.teachers.client import STREAMS_PER_CLIENT

    total = 3 * STREAMS_PER_CLIENT + 10
    with ChatServer(lambda body: Reply("<think>a</think>ok")) as server:
        cfg = TeacherConfig(name="t", endpoint=server.url, model="m", max_concurrency=8,
                            stream=True)  # fmt: skip

        async def go():
            client = TeacherClient(cfg, Sampling(max_tokens=8), None)
            query = Query.from_prompt("What is 2 + 3?", category="math", source="t")
            gate = asyncio.Semaphore(8)

            async def one(i):
                async with gate:
                    return await client.complete(query, client.params(query, i))

            results = await asyncio.gather(*(one(i) for i in range(total)))
            await asyncio.sleep(0.1)  # the retired clients' close() tasks
            gc.collect()
            held = sum(type(o) is httpx2.Response for o in gc.get_objects())
            return results, held, len(client._retired)

        results, held, retired = run(go())
    assert [r.answer for r in results] == ["ok"] * total
    assert held <= STREAMS_PER_CLIENT, held
    assert retired == 0  # every replaced client was closed


@pytest.mark.parametrize(
    "fault",
    [Fault(200, after_chunks=2, disconnect=True), Fault(200, after_chunks=1),
     Fault(503, headers={"Retry-After": "0"}), Fault(500)],
)  # fmt: skip
def test_generate_retries_faults_over_aiohttp(tmp_path, fault):
    """hubtools' own retries (faults.classify + runner) see what they saw over httpx2."""
    from tests.test_teachers_generate import PROBLEMS, config, correct, generate, make_run, teacher

    run_ = make_run(tmp_path, PROBLEMS[:1])
    with ChatServer(correct) as server:
        server.script(fault)
        summary = generate(run_, config(teacher(server.url, stream=True)))
    stats = summary.teachers[0]
    assert stats.passed == 1 and stats.retries >= 1


def test_httpx_fallback(monkeypatch):
    monkeypatch.setenv(endpoints.TRANSPORT_ENV, "httpx")
    with ChatServer() as server:
        server.script(Reply("five"))

        async def go():
            client = make_client(server.url)
            transport = await _transport_of(client)
            out = await client.chat_completion(MESSAGES, model="m")
            await client.close()
            return transport, out

        transport, out = run(go())
    assert not isinstance(transport, AiohttpTransport)
    assert out.choices[0].message.content == "five"
