"""One teacher endpoint: a request per (query, attempt), and what its failures mean.

Requests go through huggingface_hub's `AsyncInferenceClient` (built by
`hubtools.endpoints`, so the HF token never reaches a third-party server):
`/v1/chat/completions` for TGI, vLLM and SGLang, or TGI's native `/generate`
with the chat template applied here. Every attempt carries its own seed, so a
re-ask is a new sample and a re-sent unfinished request is the same one.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass
from typing import Any

from hubtools.endpoints import POOL_CONNECTIONS, endpoint_key, make_client, make_clients
from hubtools.errors import UsageError
from hubtools.reasoning import field_reasoning, split_reasoning
from hubtools.records import Query
from hubtools.teachers.config import Sampling, TeacherConfig

# Streamed requests one AsyncInferenceClient serves before it is replaced (`_after_stream`).
STREAMS_PER_CLIENT = 128


def attempt_seed(query_id: str, teacher: str, attempt: int) -> int:
    """A stable 31-bit seed per (query, teacher, attempt): new attempts differ, resends repeat."""
    digest = hashlib.blake2b(f"{query_id}:{teacher}:{attempt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & 0x7FFFFFFF


@dataclass(slots=True)
class Completion:
    text: str
    think: str | None
    answer: str | None
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    model: str | None
    latency_s: float

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length" or (self.think is not None and self.answer is None)


class TeacherClient:
    def __init__(self, config: TeacherConfig, sampling: Sampling, system_prompt: str | None):
        self.config, self.sampling, self.system_prompt = config, sampling, system_prompt
        # Several small connection pools (see hubtools.endpoints.POOL_CONNECTIONS): a request
        # takes a free slot, and slot i goes through client i // POOL_CONNECTIONS, so no pool
        # holds more than POOL_CONNECTIONS requests. The lowest slots are reused first.
        self.clients = make_clients(
            config.endpoint, api_key_env=config.api_key_env, timeout=config.request_timeout_s,
            max_connections=config.max_concurrency,
        )  # fmt: skip
        self._free_slots = list(range(len(self.clients) * POOL_CONNECTIONS - 1, -1, -1))
        self._in_flight: dict[int, int] = {}  # id(client) -> its streams in flight
        self._streamed = [0] * len(self.clients)  # streamed requests of the current clients[i]
        self._retired: dict[int, Any] = {}  # replaced clients, closed once their requests end
        self._closing: set[asyncio.Task] = set()
        self._template = None

    def messages(self, query: Query) -> list[dict[str, str]]:
        turns = [dict(m) for m in query.messages]
        if self.system_prompt and turns[0]["role"] != "system":
            turns.insert(0, {"role": "system", "content": self.system_prompt})
        return turns

    def params(self, query: Query, attempt: int) -> dict[str, Any]:
        """Request parameters, recorded with each attempt."""
        s = self.sampling
        params = {
            "model": self.config.model, "temperature": s.temperature, "top_p": s.top_p,
            "max_tokens": s.max_tokens, "seed": attempt_seed(query.query_id, self.config.name,
                                                             attempt),
        }  # fmt: skip
        if s.stop:
            params["stop"] = list(s.stop)
        if s.extra_body:
            params["extra_body"] = dict(s.extra_body)
        return params

    async def max_concurrent_requests(self) -> int | None:
        """TGI's advertised admission limit (`/info`), to start below its 429 threshold."""
        import httpx2

        key = endpoint_key(self.config.endpoint, self.config.api_key_env)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        try:
            async with httpx2.AsyncClient(timeout=10) as http:
                response = await http.get(
                    f"{self.config.endpoint.rstrip('/')}/info", headers=headers
                )
            info = response.json() if response.status_code == 200 else None
        except (httpx2.HTTPError, ValueError):  # vLLM and SGLang have no /info: not an error
            return None
        value = info.get("max_concurrent_requests") if isinstance(info, dict) else None
        return value if isinstance(value, int) and value > 0 else None

    async def complete(self, query: Query, params: dict[str, Any]) -> Completion:
        # The client from the pool with the lowest free slot (inline: a context manager
        # per request is measurable CPU with thousands in flight).
        slot = self._free_slots.pop() if self._free_slots else None
        index = slot // POOL_CONNECTIONS if slot is not None else 0
        client = self.clients[index]
        streaming = self.config.stream
        if streaming:  # counted for _after_stream only: a whole answer leaves nothing held
            self._in_flight[id(client)] = self._in_flight.get(id(client), 0) + 1
        try:
            return await self._complete(client, query, params)
        finally:
            if slot is not None:
                self._free_slots.append(slot)
            if streaming:
                self._after_stream(index, client)

    def _after_stream(self, index: int, client) -> None:
        """Replace a client after STREAMS_PER_CLIENT streamed requests; close it once idle.

        AsyncInferenceClient keeps every streamed response's context on its exit stack until
        the client is closed (huggingface_hub 2.4), ~14 kB per request: a million streamed
        answers through one client would hold gigabytes. Closing and replacing the client
        bounds that; the requests still running on it finish first.
        """
        key = id(client)
        self._in_flight[key] -= 1
        if self.clients[index] is client:
            self._streamed[index] += 1
            if self._streamed[index] >= STREAMS_PER_CLIENT:
                self.clients[index] = self._new_client()
                self._streamed[index] = 0
                self._retired[key] = client
        if key in self._retired and self._in_flight[key] == 0:
            del self._retired[key], self._in_flight[key]
            task = asyncio.get_running_loop().create_task(client.close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    def _new_client(self):
        return make_client(
            self.config.endpoint, api_key_env=self.config.api_key_env,
            timeout=self.config.request_timeout_s,
            max_connections=min(self.config.max_concurrency, POOL_CONNECTIONS) + 16,
        )  # fmt: skip

    async def _complete(self, client, query: Query, params: dict[str, Any]) -> Completion:
        start = time.monotonic()
        if self.config.protocol == "tgi":
            return await self._generate(client, query, params, start)
        if self.config.stream:
            return await self._chat_stream(client, query, params, start)
        out = await client.chat_completion(self.messages(query), **params)
        choice = out.choices[0]
        message = choice.message
        content = message.content or ""
        split = split_reasoning(content, field_reasoning(message))
        usage = out.usage
        return Completion(
            text=content, think=split.think, answer=split.answer,
            finish_reason=choice.finish_reason,
            prompt_tokens=getattr(usage, "prompt_tokens", None),
            completion_tokens=getattr(usage, "completion_tokens", None),
            model=out.model, latency_s=time.monotonic() - start,
        )  # fmt: skip

    async def _chat_stream(self, client, query, params: dict[str, Any], start) -> Completion:
        content, reasoning, finish, model, usage, chunks = [], [], None, None, None, 0
        stream = await client.chat_completion(
            self.messages(query), stream=True, stream_options={"include_usage": True}, **params
        )
        async for chunk in stream:
            model = chunk.model or model
            if chunk.usage:
                usage = chunk.usage
            for choice in chunk.choices or []:
                delta = choice.delta
                if delta.content:
                    content.append(delta.content)
                    chunks += 1
                if piece := field_reasoning(delta):
                    reasoning.append(piece)
                    chunks += 1
                finish = choice.finish_reason or finish
        text = "".join(content)
        split = split_reasoning(text, "".join(reasoning) or None)
        return Completion(
            text=text, think=split.think, answer=split.answer, finish_reason=finish,
            prompt_tokens=getattr(usage, "prompt_tokens", None),
            completion_tokens=getattr(usage, "completion_tokens", None) or chunks,
            model=model, latency_s=time.monotonic() - start,
        )  # fmt: skip

    def _render(self, query: Query) -> str:
        if self._template is None:
            try:
                from transformers import AutoTokenizer
            except ImportError:
                raise UsageError(
                    "protocol 'tgi' renders prompts with transformers: pip install 'hubtools[tgi]'"
                ) from None
            self._template = AutoTokenizer.from_pretrained(self.config.chat_template)
        return self._template.apply_chat_template(
            self.messages(query), tokenize=False, add_generation_prompt=True
        )

    async def _generate(self, client, query, params: dict[str, Any], start) -> Completion:
        prompt = self._render(query)
        out = await client.text_generation(
            prompt, details=True, stream=self.config.stream, max_new_tokens=params["max_tokens"],
            temperature=params["temperature"] or None,
            top_p=params["top_p"] if params["top_p"] < 1 else None,
            do_sample=params["temperature"] > 0, seed=params["seed"], stop=params.get("stop"),
        )  # fmt: skip
        if self.config.stream:  # the last event carries the whole text and the details
            final = None
            async for event in out:
                final = event
            if final is None or final.details is None:
                raise ValueError("TGI stream ended without its final event")
            out = final
        details = out.details
        split = split_reasoning(out.generated_text)
        finish = {"eos_token": "stop", "stop_sequence": "stop"}.get(
            details.finish_reason, details.finish_reason
        )
        return Completion(
            text=out.generated_text, think=split.think, answer=split.answer, finish_reason=finish,
            prompt_tokens=None, completion_tokens=details.generated_tokens,
            model=self.config.model, latency_s=time.monotonic() - start,
        )  # fmt: skip
