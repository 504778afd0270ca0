"""A scripted OpenAI-style chat server on loopback: the protocol test server for endpoint clients.

It speaks the part of the protocol TGI, vLLM and SGLang share (specs/inference-protocols.md):
``POST /v1/chat/completions`` as JSON or as an SSE stream ending in ``data: [DONE]``,
``GET /v1/models`` and ``GET /health``. It is a real uvicorn server in a thread, so the
client under test (huggingface_hub's AsyncInferenceClient) runs its real HTTP stack.

What it answers is scripted: ``script(*items)`` queues ``Reply`` and ``Fault`` items,
consumed one per chat request in arrival order; when the queue is empty the
``responder`` (a function of the request body) answers, and without one the server
answers 500 "script exhausted" so a test notices an unexpected request. Every request is
recorded with its headers and body (``requests``), so tests can assert on what the
client sent, e.g. that no Hugging Face token reached a third-party endpoint.

Usage::

    with ChatServer() as server:
        server.script(Reply("Score: 7/10"), Fault(503), Reply("{...}"))
        client = AsyncInferenceClient(model=server.url, api_key="k")
        ...
        assert server.chat_requests[0].headers["authorization"] == "Bearer k"
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


@dataclass
class Reply:
    """A successful completion. ``reasoning`` goes in ``reasoning_field`` (vLLM: "reasoning",
    SGLang and older vLLM: "reasoning_content"); TGI has none and keeps <think> in content."""

    content: str = ""
    reasoning: str | None = None
    reasoning_field: str = "reasoning_content"
    finish_reason: str = "stop"
    prompt_tokens: int = 10
    completion_tokens: int | None = None  # default: one per 4 characters
    delay_s: float = 0.0  # before the response starts
    chunk_chars: int = 16  # characters per streamed delta


@dataclass
class Fault:
    """An error answer. Defaults to TGI's overload (429 ``overloaded``).

    ``after_chunks`` applies to streamed requests: send that many content chunks of
    ``partial`` first, then the error as an SSE event inside the 200 (as TGI does), or,
    with ``disconnect=True``, drop the connection instead.
    """

    status: int = 429
    body: Any = field(
        default_factory=lambda: {"error": "Model is overloaded", "error_type": "overloaded"}
    )
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    after_chunks: int | None = None
    partial: str = "partial answer "
    disconnect: bool = False


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: Any  # parsed JSON, or the raw text when it is not JSON
    received_at: float


Item = Reply | Fault
Responder = Callable[[dict[str, Any]], Item]


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class ChatServer:
    """See the module docstring; a context manager that starts and stops the server."""

    def __init__(
        self, responder: Responder | None = None, *, model: str = "test-model",
        host: str = "127.0.0.1",
    ):  # fmt: skip
        self.responder, self.model, self.host = responder, model, host
        self.port = _free_port(host)
        self.requests: list[RecordedRequest] = []
        self.in_flight = self.max_in_flight = 0  # chat requests being answered, and the peak
        self._queue: deque[Item] = deque()
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The server's root URL (what AsyncInferenceClient takes as ``model``)."""
        return f"http://{self.host}:{self.port}"

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def script(self, *items: Item) -> ChatServer:
        """Queue answers for the next chat requests, in order."""
        with self._lock:
            self._queue.extend(items)
        return self

    def pending(self) -> int:
        """Scripted answers not consumed yet."""
        with self._lock:
            return len(self._queue)

    # -- lifecycle ------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        """The routes served; protocol servers that speak more add theirs."""
        return [
            Route("/v1/chat/completions", self._chat, methods=["POST"]),
            Route("/v1/models", self._models, methods=["GET"]),
            Route("/health", self._health, methods=["GET"]),
        ]

    def start(self) -> ChatServer:
        app = Starlette(routes=self.routes())
        config = uvicorn.Config(
            app, host=self.host, port=self.port, log_level="warning", access_log=False,
            lifespan="off",
        )  # fmt: skip
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="chat-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"chat server did not start on {self.url}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> ChatServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- handlers -------------------------------------------------------------------------

    async def _record(self, request: Request) -> Any:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.requests.append(
            RecordedRequest(request.method, request.url.path, headers, body, time.time())
        )
        return body

    def _next(self, body: dict[str, Any]) -> Item:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
        if self.responder is not None:
            return self.responder(body)
        return Fault(500, {"error": "chat server script exhausted", "error_type": "test"})

    async def _health(self, request: Request) -> Response:
        await self._record(request)
        return Response(status_code=200)

    async def _models(self, request: Request) -> Response:
        await self._record(request)
        return JSONResponse({"object": "list", "data": [{"id": self.model, "object": "model"}]})

    async def _answer(self, body: dict[str, Any]) -> Item:
        """The next scripted item, after its delay, counted as in flight meanwhile."""
        item = self._next(body)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if item.delay_s:
                await asyncio.sleep(item.delay_s)
        finally:
            self.in_flight -= 1
        return item

    async def _chat(self, request: Request) -> Response:
        body = await self._record(request)
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            error = {"message": "body must be a JSON object with 'messages'", "type": "invalid"}
            return JSONResponse({"error": error}, status_code=400)
        item = await self._answer(body)
        stream = bool(body.get("stream"))
        if isinstance(item, Fault) and (item.after_chunks is None or not stream):
            content = item.body if isinstance(item.body, str) else json.dumps(item.body)
            media = "text/plain" if isinstance(item.body, str) else "application/json"
            return Response(content, status_code=item.status, media_type=media,
                            headers=item.headers)  # fmt: skip
        if stream:
            return StreamingResponse(self._events(item, body), media_type="text/event-stream")
        return JSONResponse(self._completion(item, body))

    # -- payloads -------------------------------------------------------------------------

    def _base(self, body: dict[str, Any], kind: str) -> dict[str, Any]:
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
            "object": kind,
            "created": int(time.time()),
            "model": body.get("model") or self.model,
            "system_fingerprint": "chat-server",
        }

    @staticmethod
    def _usage(reply: Reply) -> dict[str, int]:
        completion = reply.completion_tokens
        if completion is None:
            completion = max(1, len(reply.content + (reply.reasoning or "")) // 4)
        return {
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": reply.prompt_tokens + completion,
        }

    def _completion(self, reply: Reply, body: dict[str, Any]) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": reply.content}
        if reply.reasoning is not None:
            message[reply.reasoning_field] = reply.reasoning
        choice = {"index": 0, "message": message, "finish_reason": reply.finish_reason,
                  "logprobs": None}  # fmt: skip
        return {**self._base(body, "chat.completion"), "choices": [choice],
                "usage": self._usage(reply)}  # fmt: skip

    async def _events(self, item: Item, body: dict[str, Any]) -> AsyncIterator[bytes]:
        base = self._base(body, "chat.completion.chunk")

        def event(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
            choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
            return f"data: {json.dumps({**base, 'choices': [choice], **extra})}\n\n".encode()

        yield event({"role": "assistant", "content": ""})
        if isinstance(item, Fault):
            size = max(1, len(item.partial) // max(1, item.after_chunks or 1))
            for i in range(item.after_chunks or 0):
                yield event({"content": item.partial[i * size : (i + 1) * size]})
                await asyncio.sleep(0)
            if item.disconnect:
                raise ConnectionAbortedError("chat server: scripted disconnect")
            error = item.body if isinstance(item.body, dict) else {"error": item.body}
            yield f"data: {json.dumps(error)}\n\n".encode()
            return
        reply = item
        if reply.reasoning is not None:
            field_name = reply.reasoning_field
            for i in range(0, len(reply.reasoning), reply.chunk_chars):
                yield event({field_name: reply.reasoning[i : i + reply.chunk_chars]})
        for i in range(0, len(reply.content), reply.chunk_chars):
            yield event({"content": reply.content[i : i + reply.chunk_chars]})
            await asyncio.sleep(0)
        options = body.get("stream_options") or {}
        extra = {"usage": self._usage(reply)} if options.get("include_usage") else {}
        yield event({}, reply.finish_reason, **extra)
        yield b"data: [DONE]\n\n"
