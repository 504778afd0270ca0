"""An LLM judge behind an OpenAI-style endpoint: chat and general answers, free-form science.

The paper scores chat and general reasoning with a reward model on three axes
(Decision-Tree-Reward-Llama-3.1-8B: coherence, correctness, helpfulness) and takes a
normalised composite. Here any instruction model served by TGI, vLLM or SGLang plays
that part through the rubric below: it rates each axis 0-10 in a JSON object, and the
score is their mean / 10. Free-form science answers use the reference rubric (agreement
with the reference answer, 0-10).

The judge's verdict is parsed from its final answer (``<think>`` removed): the last JSON
object with the rubric's keys, else a "Score: 7/10" / "Rating: [[7]]" line. A verdict
that does not parse scores 0 with the raw text in the details; it is not an error.

The client is huggingface_hub's ``AsyncInferenceClient``, built by
``hubtools.endpoints.make_client`` exactly as for the teachers: the endpoint's own key
from the variable named by ``api_key_env``, the keyless placeholder ``EMPTY`` for
third-party servers without one, so the user's Hugging Face token never reaches a
judge that is not Hugging Face's.

Transport errors (connection failures, timeouts, 408/429/5xx) are retried with
exponential backoff; when retries run out the score is 0 with ``details["retryable"]``
set, which the stage does not store, so a later run asks again.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from typing import Any

import httpx2

from hubtools.endpoints import make_client
from hubtools.errors import UsageError
from hubtools.records import Category, Query
from hubtools.verify.base import Score, Verifier, VerifyConfig, register
from hubtools.verify.extract import final_answer

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
# What the client raises when the endpoint is unreachable, slow or answers an HTTP error
# (HfHubHTTPError and InferenceTimeoutError are httpx2 errors too); anything else is a bug.
TRANSPORT_ERRORS = (httpx2.HTTPError, OSError, asyncio.TimeoutError)
_RAW_SHOWN = 500


@dataclass(frozen=True)
class Rubric:
    """What the judge is asked and which JSON keys carry its 0-10 ratings."""

    name: str
    instructions: str
    keys: tuple[str, ...]


GENERAL = Rubric(
    name="coherence-correctness-helpfulness",
    keys=("coherence", "correctness", "helpfulness"),
    instructions="""\
You are a strict, impartial judge of an AI assistant's response to a conversation.
Rate the response on three axes, each an integer from 0 (worst) to 10 (best):
- coherence: clear, well organised, consistent; no contradictions or rambling.
- correctness: factually and logically right; follows the user's request; where a
  reference answer is given, agrees with it.
- helpfulness: actually solves the user's problem, at a useful level of detail.
Judge only the response, not the conversation before it. Do not reward length.
Reply with only a JSON object and nothing else, for example:
{"coherence": 8, "correctness": 6, "helpfulness": 7}""",
)

REFERENCE = Rubric(
    name="reference-agreement",
    keys=("score",),
    instructions="""\
You are a strict grader. Compare the final answer of a response with the reference
answer to the same question. Rate their agreement as an integer from 0 to 10:
10 = the same answer (wording, notation and equivalent units may differ),
5 = partly the same (some required parts missing or imprecise),
0 = different, contradictory or no answer.
Ignore the reasoning; grade only what the response gives as its answer.
Reply with only a JSON object and nothing else, for example: {"score": 10}""",
)


def render_prompt(rubric: Rubric, query: Query, answer: str) -> list[dict[str, str]]:
    """The judge's chat messages: the rubric as system turn, the case as user turn."""
    turns = "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in query.messages)
    parts = [f"## Conversation\n{turns}"]
    if query.reference:
        parts.append(f"## Reference answer\n{query.reference}")
    parts.append(f"## Response to judge\n{answer}")
    return [
        {"role": "system", "content": rubric.instructions},
        {"role": "user", "content": "\n\n".join(parts)},
    ]


_SCORE_LINE = re.compile(
    r"(?:score|rating|overall)\s*[:=]?\s*\**\s*\[*\s*(?P<value>\d+(?:\.\d+)?)\s*\]*"
    r"(?:\s*(?:/|out of)\s*(?P<scale>\d+))?",
    re.IGNORECASE,
)


def parse_verdict(text: str, rubric: Rubric) -> tuple[float, dict[str, Any]] | None:
    """``(score in [0, 1], ratings)`` from the judge's reply, or None when it gives none."""
    reply = final_answer(text)
    ratings = _json_ratings(reply, rubric.keys)
    if ratings is not None:
        return sum(ratings.values()) / (10 * len(ratings)), ratings
    matches = list(_SCORE_LINE.finditer(reply))
    if matches:
        match = matches[-1]
        value, scale = float(match.group("value")), float(match.group("scale") or 10)
        if scale > 0 and 0 <= value <= scale:
            return value / scale, {"score": value, "scale": scale}
    return None


def _json_ratings(text: str, keys: tuple[str, ...]) -> dict[str, float] | None:
    """The last JSON object in ``text`` holding every key as a number in 0-10."""
    decoder, found = json.JSONDecoder(), None
    for start in (m.start() for m in re.finditer(r"\{", text)):
        try:
            obj, _ = decoder.raw_decode(text, start)
        except ValueError:
            continue
        if not isinstance(obj, dict):
            continue
        try:
            ratings = {k: float(obj[k]) for k in keys}
        except (KeyError, TypeError, ValueError):
            continue
        if all(0 <= v <= 10 for v in ratings.values()):
            found = ratings
    return found


class JudgeVerifier(Verifier):
    """Scores an answer by asking an LLM judge (see the module docstring)."""

    name = "llm-judge"

    def __init__(
        self, config: VerifyConfig, rubric: Rubric = GENERAL, *, retries: int = 3,
        backoff_s: float = 0.25,
    ):  # fmt: skip
        if config.judge is None:
            raise UsageError(
                "chat and general answers need an LLM judge: set verify.judge "
                "(endpoint, model) in run.yaml, or --judge-endpoint/--judge-model"
            )
        self.judge, self.rubric = config.judge, rubric
        self.retries, self.backoff_s = retries, backoff_s
        self._client: Any = self._new_client()  # checks the URL and the key now, not mid-run
        self._limit: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _new_client(self) -> Any:
        return make_client(
            self.judge.endpoint, api_key_env=self.judge.api_key_env,
            timeout=self.judge.timeout_s, max_connections=max(1, self.judge.max_concurrency),
        )  # fmt: skip

    def _bind(self) -> tuple[Any, asyncio.Semaphore]:
        """A client and a concurrency limit for the running loop (both belong to one loop)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            if self._loop is not None or self._client is None:
                self._client = self._new_client()
            self._loop = loop
            self._limit = asyncio.Semaphore(max(1, self.judge.max_concurrency))
        assert self._limit is not None
        return self._client, self._limit

    async def aclose(self) -> None:
        if self._client is not None and self._loop is asyncio.get_running_loop():
            await self._client.close()
        if self._loop is not None:
            self._client = self._loop = self._limit = None

    async def averify(self, query: Query, answer: str) -> Score:
        client, limit = self._bind()
        messages = render_prompt(self.rubric, query, answer)
        details: dict[str, Any] = {"judge": self.judge.model, "rubric": self.rubric.name}
        async with limit:
            reply = await self._ask(client, messages, details)
        if reply is None:
            return Score(0.0, details)
        verdict = parse_verdict(reply, self.rubric)
        if verdict is None:
            details.update(error="unparseable verdict", raw=reply[:_RAW_SHOWN])
            return Score(0.0, details)
        score, ratings = verdict
        details["ratings"] = ratings
        return Score(min(1.0, max(0.0, score)), details)

    async def _ask(
        self, client: Any, messages: list[dict[str, str]], details: dict[str, Any]
    ) -> str | None:
        """The judge's reply text; None (with the error in ``details``) when it never came."""
        error = ""
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                out = await client.chat_completion(
                    messages, model=self.judge.model, temperature=self.judge.temperature,
                    max_tokens=self.judge.max_tokens,
                )  # fmt: skip
            except TRANSPORT_ERRORS as err:
                status = getattr(getattr(err, "response", None), "status_code", None)
                error = f"judge request failed: {_describe(err, status)}"
                if status is not None and status not in RETRY_STATUS:
                    details["error"] = error  # a request the endpoint will never accept
                    return None
                continue
            except ValueError as err:  # a 200 whose body is not a chat completion
                details["error"] = f"malformed judge response: {_describe(err, None)}"
                return None
            if attempt:
                details["retries"] = attempt
            if not out.choices:
                details["error"] = "the judge returned no choices"
                return None
            return out.choices[0].message.content or ""
        details.update(error=f"{error} (gave up after {self.retries + 1} tries)", retryable=True)
        return None

    def verify(self, query: Query, answer: str) -> Score:
        """Synchronous use outside an event loop (scripts); the stage calls ``averify``."""

        async def once() -> Score:
            try:
                return await self.averify(query, answer)
            finally:
                await self.aclose()

        return asyncio.run(once())


def _describe(err: Exception, status: int | None) -> str:
    text = " ".join(str(err).split())[:200] or type(err).__name__
    return f"HTTP {status}: {text}" if status else f"{type(err).__name__}: {text}"


@register(Category.CHAT, Category.GENERAL)
def _general_judge(config: VerifyConfig) -> JudgeVerifier:
    return JudgeVerifier(config, GENERAL)
