"""TGI's native protocol on top of the chat server: `/generate`, `/generate_stream`, `/info`.

huggingface_hub's `text_generation` posts to the root URL with `"stream"` in the body,
which TGI routes to either of the two, as this server does.

Like TGI it admits at most `max_concurrent_requests` generations at once and answers
429 `overloaded` past that, advertises the limit in `/info`, keeps `<think>` inside
the generated text, and reports errors inside a 200 stream as `data: {error, error_type}`
events. Scripted `Reply`/`Fault` items and `responder` work as for chat requests; the
responder sees TGI's body (`inputs`, `parameters`).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.servers.chat_server import ChatServer, Fault, Reply

_FINISH = {"stop": "eos_token", "length": "length"}


class TGIServer(ChatServer):
    def __init__(self, *args: Any, max_concurrent_requests: int = 128, **kw: Any):
        super().__init__(*args, **kw)
        self.max_concurrent_requests = max_concurrent_requests
        self.overloaded = 0  # requests refused by admission control

    def routes(self) -> list[Route]:
        return [
            *super().routes(),
            Route("/", self._generate, methods=["POST"]),  # TGI's compat route, used by clients
            Route("/generate", self._generate, methods=["POST"]),
            Route("/generate_stream", self._generate, methods=["POST"]),
            Route("/info", self._info, methods=["GET"]),
        ]

    async def _info(self, request: Request) -> Response:
        await self._record(request)
        return JSONResponse({
            "model_id": self.model, "model_sha": None, "max_concurrent_requests":
            self.max_concurrent_requests, "max_best_of": 2, "max_stop_sequences": 4,
            "max_input_tokens": 4095, "max_total_tokens": 8192, "max_client_batch_size": 4,
            "version": "3.3.0-test",
        })  # fmt: skip

    async def _generate(self, request: Request) -> Response:
        body = await self._record(request)
        if not isinstance(body, dict) or not isinstance(body.get("inputs"), str):
            return JSONResponse({"error": "inputs must be a string", "error_type": "validation"},
                                status_code=422)  # fmt: skip
        if self.in_flight >= self.max_concurrent_requests:
            self.overloaded += 1
            return JSONResponse({"error": "Model is overloaded", "error_type": "overloaded"},
                                status_code=429)  # fmt: skip
        item = await self._answer(body)
        stream = request.url.path.endswith("_stream") or bool(body.get("stream"))
        if isinstance(item, Fault) and (item.after_chunks is None or not stream):
            return JSONResponse(item.body, status_code=item.status, headers=item.headers)
        if stream:
            return StreamingResponse(self._tgi_events(item, body), media_type="text/event-stream")
        return JSONResponse(self._tgi_output(item, body))

    @staticmethod
    def _details(reply: Reply, body: dict[str, Any]) -> dict[str, Any]:
        tokens = reply.completion_tokens or max(1, len(reply.content) // 4)
        seed = (body.get("parameters") or {}).get("seed")
        return {"finish_reason": _FINISH.get(reply.finish_reason, reply.finish_reason),
                "generated_tokens": tokens, "seed": seed, "prefill": [], "tokens": []}  # fmt: skip

    def _tgi_output(self, reply: Reply, body: dict[str, Any]) -> dict[str, Any]:
        return {"generated_text": reply.content, "details": self._details(reply, body)}

    async def _tgi_events(self, item: Reply | Fault, body: dict[str, Any]):
        def token(i: int, text: str) -> dict[str, Any]:
            return {"id": i, "text": text, "logprob": -0.1, "special": False}

        text = item.partial if isinstance(item, Fault) else item.content
        pieces = [text[i : i + 8] for i in range(0, len(text), 8)] or [""]
        if isinstance(item, Fault):
            pieces = pieces[: item.after_chunks or 0]
        for i, piece in enumerate(pieces[:-1] if isinstance(item, Reply) else pieces):
            yield f"data:{json.dumps({'index': i, 'token': token(i, piece)})}\n\n".encode()
            await asyncio.sleep(0)
        if isinstance(item, Fault):
            if item.disconnect:
                raise ConnectionAbortedError("tgi server: scripted disconnect")
            yield f"data:{json.dumps(item.body)}\n\n".encode()
            return
        last = {"index": len(pieces) - 1, "token": token(len(pieces) - 1, pieces[-1]),
                "generated_text": text, "details": self._details(item, body)}  # fmt: skip
        yield f"data:{json.dumps(last)}\n\n".encode()
