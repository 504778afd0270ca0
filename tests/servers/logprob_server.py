"""Prompt log-probs as TGI, vLLM and SGLang serve them, computed by a real model in-process.

The protocol test servers for ``hubtools score``'s remote backends: each answers its
server's route with the log-probabilities a transformers model (given to the server)
assigns to the input tokens, in that server's format (specs/inference-protocols.md):

- ``flavor="tgi"``: ``POST /generate`` (and ``/``) with ``inputs`` text, tokenized here with
  ``add_special_tokens=True`` as TGI does; ``details.prefill`` is one ``{id, text, logprob}``
  per input token, the first with a null logprob. ``prefill_logprobs=False`` answers an
  empty ``prefill``, as TGI >= 3 does without ``--enable-prefill-logprobs``.
- ``flavor="vllm"``: ``POST /v1/completions`` with ``prompt`` token ids (or text) and
  ``prompt_logprobs: k``: ``choices[0].prompt_logprobs = [null, {"<id>": {logprob, rank,
  decoded_token}}, ...]``, the top-k alternatives listed before the actual token (so a
  client that trusts order picks the wrong one). An unknown ``model`` is a 404.
- ``flavor="sglang"``: ``POST /generate`` with ``input_ids``, ``return_logprob`` and
  ``logprob_start_len``: ``meta_info.input_token_logprobs`` covers
  ``input_ids[logprob_start_len:]`` as ``[logprob, id, null]``, the first entry's logprob
  ``None`` (as SGLang's scheduler builds it).

Scripted ``Fault`` items (``script(...)``) answer the next requests instead, to inject
429/503s; ``delay_s`` holds every answer so concurrency can be observed (``max_in_flight``).
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.servers.chat_server import ChatServer, Fault


class ModelScorer:
    """A causal LM and its tokenizer; log-probs of each input token given those before."""

    def __init__(self, path, gguf_file: str | None = None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        kw = {"gguf_file": gguf_file} if gguf_file else {}
        self.tokenizer = AutoTokenizer.from_pretrained(path, **kw)
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, **kw).eval()
        self._lock = threading.Lock()

    def logprobs(self, ids: list[int]) -> tuple[list[float | None], int]:
        """``[None, lp(ids[1]), ...]`` and the greedy next token after ``ids``."""
        import torch

        with self._lock, torch.inference_mode():
            logits = self.model(torch.tensor([ids])).logits[0].double()
            logp = torch.log_softmax(logits, dim=-1)
            picked = logp[:-1].gather(1, torch.tensor(ids[1:]).unsqueeze(1)).squeeze(1)
            return [None, *picked.tolist()], int(logp[-1].argmax())

    def top(self, ids: list[int], k: int) -> list[list[tuple[int, float]]]:
        """The k most likely tokens at each position after the first, with log-probs."""
        import torch

        with self._lock, torch.inference_mode():
            logp = torch.log_softmax(self.model(torch.tensor([ids])).logits[0].double(), -1)
            values, indices = logp[:-1].topk(k, dim=-1)
            return [
                list(zip(i.tolist(), v.tolist(), strict=True))
                for i, v in zip(indices, values, strict=True)
            ]

    def rank(self, ids: list[int]) -> list[int]:
        import torch

        with self._lock, torch.inference_mode():
            logp = torch.log_softmax(self.model(torch.tensor([ids])).logits[0].double(), -1)
            actual = logp[:-1].gather(1, torch.tensor(ids[1:]).unsqueeze(1))
            return (logp[:-1] > actual).sum(dim=1).add(1).tolist()


class LogprobServer(ChatServer):
    def __init__(
        self, scorer: ModelScorer, *, flavor: str, model: str = "scorer",
        prefill_logprobs: bool = True, delay_s: float = 0.0, **kw: Any,
    ):  # fmt: skip
        if flavor not in ("tgi", "vllm", "sglang"):
            raise ValueError(f"unknown flavor {flavor!r}")
        super().__init__(model=model, **kw)
        self.scorer, self.flavor = scorer, flavor
        self.prefill_logprobs, self.delay_s = prefill_logprobs, delay_s
        self.scored = 0  # requests answered with log-probs

    def routes(self) -> list[Route]:
        handler = {"tgi": self._tgi, "vllm": self._vllm, "sglang": self._sglang}[self.flavor]
        path = "/v1/completions" if self.flavor == "vllm" else "/generate"
        extra = [Route("/", handler, methods=["POST"])] if self.flavor == "tgi" else []
        return [*super().routes(), Route(path, handler, methods=["POST"]), *extra]

    # -- shared ---------------------------------------------------------------------------
    async def _admit(self, body: Any) -> Response | None:
        """A scripted fault's answer, or None to compute; counted in flight meanwhile."""
        with self._lock:
            item = self._queue.popleft() if self._queue else None
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            delay = item.delay_s if isinstance(item, Fault) else self.delay_s
            if delay:
                await asyncio.sleep(delay)
        finally:
            self.in_flight -= 1
        if isinstance(item, Fault):
            return JSONResponse(item.body, status_code=item.status, headers=item.headers)
        return None

    async def _compute(self, ids: list[int]):
        self.scored += 1
        return await asyncio.to_thread(self.scorer.logprobs, ids)

    def _text(self, token_id: int) -> str:
        return self.scorer.tokenizer.decode([token_id])

    # -- TGI ------------------------------------------------------------------------------
    async def _tgi(self, request: Request) -> Response:
        body = await self._record(request)
        if not isinstance(body, dict) or not isinstance(body.get("inputs"), str):
            return JSONResponse({"error": "inputs must be a string", "error_type": "validation"},
                                status_code=422)  # fmt: skip
        if (fault := await self._admit(body)) is not None:
            return fault
        params = body.get("parameters") or {}
        ids = self.scorer.tokenizer(body["inputs"], add_special_tokens=True)["input_ids"]
        logprobs, next_id = await self._compute(ids)
        prefill = []
        if params.get("decoder_input_details") and self.prefill_logprobs:
            prefill = [{"id": i, "text": self._text(i), "logprob": lp}
                       for i, lp in zip(ids, logprobs, strict=True)]  # fmt: skip
        token = {"id": next_id, "text": self._text(next_id), "logprob": -0.1, "special": False}
        details = {"finish_reason": "length", "generated_tokens": 1, "seed": None,
                   "prefill": prefill, "tokens": [token]}  # fmt: skip
        answer = {"generated_text": token["text"]}
        if params.get("details"):
            answer["details"] = details
        return JSONResponse(answer)

    # -- vLLM -----------------------------------------------------------------------------
    async def _vllm(self, request: Request) -> Response:
        body = await self._record(request)
        if not isinstance(body, dict) or body.get("prompt") in (None, "", []):
            return _openai_error(400, "prompt is required")
        if body.get("model") != self.model:
            return _openai_error(404, f"The model `{body.get('model')}` does not exist.")
        if (fault := await self._admit(body)) is not None:
            return fault
        prompt = body["prompt"]
        ids = prompt if isinstance(prompt, list) else self.scorer.tokenizer(prompt)["input_ids"]
        logprobs, next_id = await self._compute(ids)
        k = body.get("prompt_logprobs")
        positions = None
        if k is not None:
            ranks = await asyncio.to_thread(self.scorer.rank, ids)
            tops = await asyncio.to_thread(self.scorer.top, ids, k) if k else [[]] * len(ranks)
            positions = [None]
            for token_id, lp, rank, top in zip(ids[1:], logprobs[1:], ranks, tops, strict=True):
                entry = {str(t): {"logprob": v, "rank": r + 1, "decoded_token": self._text(t)}
                         for r, (t, v) in enumerate(top) if t != token_id}  # fmt: skip
                entry[str(token_id)] = {"logprob": lp, "rank": rank,
                                        "decoded_token": self._text(token_id)}  # fmt: skip
                positions.append(entry)
        choice = {"index": 0, "text": self._text(next_id), "logprobs": None,
                  "finish_reason": "length", "stop_reason": None,
                  "prompt_logprobs": positions}  # fmt: skip
        return JSONResponse({
            "id": f"cmpl-{uuid.uuid4().hex[:12]}", "object": "text_completion",
            "created": int(time.time()), "model": self.model, "choices": [choice],
            "usage": {"prompt_tokens": len(ids), "completion_tokens": 1,
                      "total_tokens": len(ids) + 1},
        })  # fmt: skip

    # -- SGLang ---------------------------------------------------------------------------
    async def _sglang(self, request: Request) -> Response:
        body = await self._record(request)
        if not isinstance(body, dict) or not isinstance(body.get("input_ids"), list):
            return _openai_error(400, "input_ids (a list of token ids) is required")
        ids = body["input_ids"]
        start = body.get("logprob_start_len", -1)
        if (fault := await self._admit(body)) is not None:
            return fault
        logprobs, next_id = await self._compute(ids)
        meta: dict[str, Any] = {
            "id": uuid.uuid4().hex, "finish_reason": {"type": "length", "length": 1},
            "prompt_tokens": len(ids), "completion_tokens": 1, "cached_tokens": 0,
        }  # fmt: skip
        if body.get("return_logprob"):
            start = len(ids) - 1 if start is None or start < 0 else start
            values = [None, *logprobs[start + 1 :]]  # the first token of the range: None
            meta["input_token_logprobs"] = [
                [v, t, None] for v, t in zip(values, ids[start:], strict=True)
            ]
            meta["output_token_logprobs"] = [[-0.1, next_id, None]]
        return JSONResponse({"text": self._text(next_id), "meta_info": meta})


def _openai_error(status: int, message: str) -> JSONResponse:
    kind = {400: "BadRequestError", 404: "NotFoundError"}.get(status, "Error")
    return JSONResponse({"error": {"message": message, "type": kind, "param": None,
                                   "code": status}}, status_code=status)  # fmt: skip
