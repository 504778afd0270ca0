"""The contract of a scoring backend: token ids in, the response's log-likelihood out.

Rendering (chat template, tokenizer) happens once, in hubtools, for every backend: a
backend is given the prompt's and the response's token ids and returns the summed
negative log-likelihood of the response tokens, each given everything before it. So the
perplexity of an attempt, ``exp(nll_sum / tokens)``, is one definition whether a local
model, TGI's prefill log-probs, vLLM's ``prompt_logprobs`` or SGLang's
``input_token_logprobs`` computed it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from hubtools.errors import HubtoolsError


class ScoringError(HubtoolsError):
    """A backend cannot score (misconfigured server, missing log-probs, a model mismatch)."""


@dataclass(frozen=True, slots=True)
class ScoreRequest:
    """One response to score, rendered with the scoring model's chat template.

    ``prompt_ids``: the conversation up to the final assistant turn, with the generation
    prompt (``add_generation_prompt=True``); ``response_ids``: the rest of the rendering
    of the whole conversation, i.e. the assistant turn and its end-of-turn tokens;
    ``text``: the whole rendering as text, for servers that tokenize themselves (TGI),
    whose token ids must then equal ``prompt_ids + response_ids``.
    """

    prompt_ids: list[int]
    response_ids: list[int]
    text: str


@dataclass(frozen=True, slots=True)
class LogProbs:
    """``nll_sum``: minus the sum of the response tokens' log-probabilities; ``tokens``:
    how many response tokens that sum is over (``len(response_ids)``)."""

    nll_sum: float
    tokens: int

    @property
    def ppl(self) -> float | None:
        return math.exp(self.nll_sum / self.tokens) if self.tokens else None


class ScoringBackend(Protocol):
    """What ``hubtools score`` calls; one instance per stage run."""

    name: str  # "local", "tgi", "vllm" or "sglang": recorded in ResponseScore.backend
    model: str  # the scoring model's id as the backend knows it: recorded as the scorer

    async def score(self, requests: list[ScoreRequest]) -> list[LogProbs]:
        """Log-probs of each request, in order; raises ScoringError when it cannot."""
        ...

    async def aclose(self) -> None: ...
