"""A lean OpenAI-style chat server that behaves like a continuous-batching engine under load.

For bench/teachers_client.py: one process, plain asyncio protocols (no framework), so it can
hold thousands of keep-alive connections on one core without becoming the bottleneck.

The engine: a request joins the running batch at the next step; every ``step_ms`` the batch
advances one token for each request in it; a request's response is sent at the step where it
has produced ``tokens`` output tokens. Its latency is therefore ``tokens * step_ms`` whatever
the batch size (a GPU with room for the whole batch), and the best possible rate at ``n`` in
flight is ``n / (tokens * step_ms)``. Steps are scheduled on absolute times; a step that runs
late (the server's loop was busy) is counted, so the report can show whether the server kept
pace.

Answers: ``<think>`` filler of ``tokens`` words, then ``The answer is $\\boxed{X}$`` where X
solves the prompt ``What is A + B?`` (anything else gets 42), so a math verifier passes them.

Optional: ``--admit-limit M`` answers 429 (TGI's ``overloaded``) when M requests are already in
the batch; ``--fault-rate f`` makes that share of chat requests fail, evenly among 429, 503,
500 (part-way through the generation) and a connection reset (RST, part-way through).
``--stream-every k`` answers ``stream: true`` requests with one SSE event per k steps.

Routes: ``POST /v1/chat/completions``, ``GET /stats`` (JSON counters: active requests, done,
faults, steps and late steps, the server's own CPU time), ``GET /health``, ``GET /v1/models``.
Everything else is 404 (so a client probing TGI's ``/info`` sees a vLLM-like server).

    python bench/sim_server.py --port 8000 --step-ms 20 --tokens 500 [--fault-rate 0.05]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import resource
import signal
import socket
import struct
import time
from collections import defaultdict

_PROMPT = re.compile(rb"What is (\d+) \+ (\d+)\?")
_REASONS = {200: b"OK", 404: b"Not Found", 429: b"Too Many Requests", 500: b"Internal Server Error",
            503: b"Service Unavailable", 400: b"Bad Request"}  # fmt: skip


def _response(status: int, body: bytes, ctype: bytes = b"application/json", close=False) -> bytes:
    head = b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n%s\r\n" % (
        status, _REASONS.get(status, b"Status"), ctype, len(body),
        b"connection: close\r\n" if close else b"",
    )  # fmt: skip
    return head + body


class Engine:
    """The simulated batch: which request finishes at which step, and the counters."""

    def __init__(self, args: argparse.Namespace):
        self.step_s = args.step_ms / 1000
        self.tokens = args.tokens
        self.admit_limit = args.admit_limit
        self.fault_rate = args.fault_rate
        self.stream_every = max(1, args.stream_every)
        self.rng = random.Random(args.seed)
        self.step = 0
        self.active = 0
        self.finishing: dict[int, list] = defaultdict(list)  # step -> [(kind, conn, payload)]
        self.streams: dict[int, object] = {}  # id -> StreamState, advanced every stream_every
        self.counters = defaultdict(int)
        self.first_request: float | None = None
        self.late_steps = 0
        self.max_lag_s = 0.0
        spread = round(self.tokens * args.jitter)
        self.lengths = (max(13, self.tokens - spread), self.tokens + spread)
        self._next_id = 0
        self._tick_handle = None
        self._t0 = 0.0

    # -- the step clock --------------------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._t0 = loop.time()
        self._tick_handle = loop.call_at(self._t0 + self.step_s, self._tick)

    def _tick(self) -> None:
        self.step += 1
        due = self._t0 + self.step * self.step_s
        lag = self.loop.time() - due
        if lag > self.step_s:
            self.late_steps += 1
        self.max_lag_s = max(self.max_lag_s, lag)
        for kind, conn, payload in self.finishing.pop(self.step, ()):
            if kind == "done":
                self.active -= 1
                self.counters["completed"] += 1
                self.counters["tokens"] += payload[4]
                conn.send_completion(payload)
            elif kind == "fail":
                self.active -= 1
                conn.send_error(*payload)
            elif kind == "reset":
                self.active -= 1
                conn.reset()
        if self.streams and self.step % self.stream_every == 0:
            for state in list(self.streams.values()):
                state.advance(self.stream_every)
        # Schedule on absolute times; if far behind, skip ahead instead of bursting.
        nxt = self._t0 + (self.step + 1) * self.step_s
        self._tick_handle = self.loop.call_at(max(nxt, self.loop.time()), self._tick)

    # -- admission -------------------------------------------------------------------------
    def admit(self, conn: Connection, body: bytes) -> None:
        now = time.time()
        if self.first_request is None:
            self.first_request = now
        self.counters["requests"] += 1
        if self.admit_limit and self.active >= self.admit_limit:
            self.counters["rejected_429"] += 1
            conn.send_error(429, {"error": "Model is overloaded", "error_type": "overloaded"})
            return
        try:
            request = json.loads(body)
        except ValueError:
            conn.send_error(400, {"error": {"message": "body is not JSON", "type": "invalid"}})
            return
        fault = None
        if self.fault_rate and self.rng.random() < self.fault_rate:
            fault = self.rng.choice(("429", "503", "500", "reset"))
            self.counters[f"fault_{fault}"] += 1
            if fault == "429":
                conn.send_error(429, {"error": "Model is overloaded", "error_type": "overloaded"})
                return
            if fault == "503":
                conn.send_error(503, {"error": "unavailable", "error_type": "healthcheck"})
                return
        self.active += 1
        self.counters["admitted"] += 1
        self.counters["peak_active"] = max(self.counters["peak_active"], self.active)
        start = self.step + 1
        if fault is not None:  # 500 or reset part-way through the generation
            at = start + self.rng.randint(1, self.tokens)
            if fault == "500":
                error = {"error": "incomplete generation", "error_type": "incomplete_generation"}
                self.finishing[at].append(("fail", conn, (500, error)))
            else:
                self.finishing[at].append(("reset", conn, None))
            return
        match = _PROMPT.search(body)
        answer = int(match[1]) + int(match[2]) if match else 42
        model = request.get("model") or "sim"
        self._next_id += 1
        tokens = self.rng.randint(*self.lengths)
        payload = (self._next_id, model, answer, request.get("seed"), tokens)
        if request.get("stream"):
            conn.start_stream(self, payload)
        self.finishing[start + tokens - 1].append(("done", conn, payload))

    @staticmethod
    def content(answer: int, tokens: int) -> bytes:
        filler = b"tok " * (tokens - 12)  # 12 tokens for the tags and the final sentence
        return b"<think>\n" + filler + b"\n</think>\nThe answer is $\\\\boxed{%d}$." % answer

    def stats(self) -> dict:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "active": self.active, "step": self.step, "step_ms": self.step_s * 1000,
            "tokens_per_request": self.tokens, "late_steps": self.late_steps,
            "max_lag_ms": round(self.max_lag_s * 1000, 2), "first_request": self.first_request,
            "time": time.time(), "cpu_s": usage.ru_utime + usage.ru_stime,
            "connections": Connection.open_count, **self.counters,
        }  # fmt: skip


class Connection(asyncio.Protocol):
    """One HTTP/1.1 keep-alive connection; requests are answered in order."""

    open_count = 0
    engine: Engine

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.buffer = b""
        self.busy = False  # a chat request is in the batch: later requests wait their turn
        self.closed = False
        self.stream_id: int | None = None
        Connection.open_count += 1

    def connection_lost(self, exc) -> None:
        if not self.closed:
            self.closed = True
            Connection.open_count -= 1
        if self.stream_id is not None:
            self.engine.streams.pop(self.stream_id, None)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._process()

    def _process(self) -> None:
        while not self.busy and not self.closed:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end]
            lines = head.split(b"\r\n")
            try:
                method, target, _ = lines[0].split(b" ", 2)
            except ValueError:
                self.transport.write(_response(400, b"{}", close=True))
                self.transport.close()
                return
            length, close = 0, False
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"connection" and value.strip().lower() == b"close":
                    close = True
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            self.close_after = close
            self._dispatch(method, target.split(b"?", 1)[0], body)

    def _dispatch(self, method: bytes, path: bytes, body: bytes) -> None:
        if method == b"POST" and path == b"/v1/chat/completions":
            self.busy = True
            self.engine.admit(self, body)
        elif path == b"/stats":
            self._write(_response(200, json.dumps(self.engine.stats()).encode()))
        elif path == b"/health":
            self._write(_response(200, b""))
        elif path == b"/v1/models":
            body = {"object": "list", "data": [{"id": "sim", "object": "model"}]}
            self._write(_response(200, json.dumps(body).encode()))
        else:
            self._write(_response(404, b'{"error": "not found"}'))

    def _write(self, data: bytes) -> None:
        if self.closed:
            return
        self.transport.write(data)
        if self.close_after:
            self.closed = True
            Connection.open_count -= 1
            self.transport.close()

    def _done(self) -> None:
        self.busy = False
        if self.buffer and not self.closed:
            self._process()

    # -- answers -----------------------------------------------------------------------------
    def send_completion(self, payload) -> None:
        if self.stream_id is not None:
            return self._end_stream(payload)
        request_id, model, answer, seed, tokens = payload
        engine = self.engine
        if self.closed:
            engine.counters["abandoned"] += 1
            return
        content = engine.content(answer, tokens)
        body = (
            b'{"id":"chatcmpl-%d","object":"chat.completion","created":%d,"model":%s,'
            b'"system_fingerprint":"sim","choices":[{"index":0,"message":{"role":"assistant",'
            b'"content":"%s"},"finish_reason":"stop","logprobs":null}],"usage":{'
            b'"prompt_tokens":24,"completion_tokens":%d,"total_tokens":%d}}'
        ) % (request_id, int(time.time()), json.dumps(model).encode(), content.replace(
            b"\n", b"\\n"), tokens, tokens + 24)  # fmt: skip
        self._write(_response(200, body))
        self._done()

    def send_error(self, status: int, error: dict) -> None:
        if self.stream_id is not None:  # inside a 200 stream: an error event, as TGI does
            self.engine.streams.pop(self.stream_id, None)
            self.stream_id = None
            event = {"error": {"message": error.get("error"), "http_status_code": status}}
            self._write(b"%x\r\ndata: %s\n\n\r\n0\r\n\r\n" % (
                len(json.dumps(event)) + 8, json.dumps(event).encode()))  # fmt: skip
        else:
            self._write(_response(status, json.dumps(error).encode()))
        self._done()

    def reset(self) -> None:
        """Abort with a TCP RST (SO_LINGER 0), as a crashed or overloaded proxy would."""
        if self.closed:
            return
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.closed = True
        Connection.open_count -= 1
        self.transport.abort()

    # -- streaming (chunked SSE, one event per `stream_every` steps) --------------------------
    def start_stream(self, engine: Engine, payload) -> None:
        request_id, model, _, _, tokens = payload
        self.stream_id = request_id
        self.stream_tokens = tokens
        self.stream_model = json.dumps(model).encode()
        self.stream_sent = 0
        engine.streams[request_id] = self
        head = (
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        self.transport.write(head)

    def _event(self, delta: bytes, finish: bytes = b"null", usage: bytes = b"") -> None:
        data = (
            b'data: {"id":"chatcmpl-%d","object":"chat.completion.chunk","created":%d,'
            b'"model":%s,"choices":[{"index":0,"delta":%s,"finish_reason":%s}]%s}\n\n'
        ) % (self.stream_id, int(time.time()), self.stream_model, delta, finish, usage)
        self.transport.write(b"%x\r\n%s\r\n" % (len(data), data))

    def advance(self, steps: int) -> None:
        words = min(steps, self.stream_tokens - 12 - self.stream_sent)
        if words > 0:
            self.stream_sent += words
            text = (b"<think>\\n" if self.stream_sent == words else b"") + b"tok " * words
            self._event(b'{"content":"%s"}' % text)

    def _end_stream(self, payload) -> None:
        _, _, answer, _, tokens = payload
        engine = self.engine
        engine.streams.pop(self.stream_id, None)
        rest = max(0, tokens - 12 - self.stream_sent)
        tail = b"tok " * rest + b"\\n</think>\\nThe answer is $\\\\boxed{%d}$." % answer
        self._event(b'{"content":"%s"}' % tail)
        usage = b',"usage":{"prompt_tokens":24,"completion_tokens":%d,"total_tokens":%d}' % (
            tokens, tokens + 24)  # fmt: skip
        self._event(b"{}", b'"stop"', usage)
        done = b"data: [DONE]\n\n"
        self.transport.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(done), done))
        self.stream_id = None
        if self.close_after:
            self._write(b"")
        self._done()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--step-ms", type=float, default=20.0)
    parser.add_argument("--tokens", type=int, default=500, help="mean output tokens per request")
    parser.add_argument("--jitter", type=float, default=0.5, help="lengths uniform in +-this share")
    parser.add_argument("--admit-limit", type=int, default=0, help="429 past this many active")
    parser.add_argument("--fault-rate", type=float, default=0.0)
    parser.add_argument("--stream-every", type=int, default=25, help="steps per SSE event")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cpu", type=int, default=None, help="pin the server to this core")
    parser.add_argument("--ready-file", default=None, help="written once listening")
    args = parser.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        engine = Engine(args)
        Connection.engine = engine
        server = await loop.create_server(Connection, args.host, args.port, backlog=8192)
        engine.start(loop)
        if args.ready_file:
            with open(args.ready_file, "w") as f:
                f.write(str(server.sockets[0].getsockname()[1]))
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        await stop.wait()
        server.close()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
