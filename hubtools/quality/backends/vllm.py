"""Perplexity from a vLLM server: ``prompt_logprobs`` of ``/v1/completions`` over token ids.

The prompt is the scoring model's token ids (``prompt_ids + response_ids``), so vLLM
never re-tokenizes (nor can it tell a foreign tokenizer's ids: serve the scoring model).
``prompt_logprobs: 0`` asks for the log-prob of each prompt token only (no top-k
alternatives; within the server's default ``--max-logprobs`` of 20):
``choices[0].prompt_logprobs`` is ``[null, {"<token id>": {"logprob", "rank",
"decoded_token"}}, ...]``, one dict per position after the first, keyed by token id.
The entry is picked by the actual token id, never by order (with k > 0 a dict also holds
the top-k alternatives). vLLM computes these from the raw logits (its default
``--logprobs-mode raw_logprobs``), so sampling settings do not change them, and since
vllm-project/vllm#13949 such requests bypass the prefix cache instead of failing.
"""

from __future__ import annotations

import math
from typing import Any

from hubtools.quality.backends._http import JSONBackend
from hubtools.quality.backends.base import LogProbs, ScoreRequest, ScoringError


class VLLMBackend(JSONBackend):
    name = "vllm"

    def body(self, request: ScoreRequest) -> dict[str, Any]:
        return {
            "model": self.model,
            "prompt": [*request.prompt_ids, *request.response_ids],
            "max_tokens": 1,  # the log-probs come with the prefill; one token is the least
            "temperature": 0,
            "prompt_logprobs": 0,
        }

    async def _request(self, request: ScoreRequest) -> LogProbs:
        answer = await self._post("/v1/completions", self.body(request))
        ids = [*request.prompt_ids, *request.response_ids]
        choices = answer.get("choices") if isinstance(answer, dict) else None
        if not choices or not isinstance(choices[0], dict):
            raise ScoringError(f"vLLM at {self.endpoint} answered without choices: {answer!r:.200}")
        positions = choices[0].get("prompt_logprobs")
        if not positions:
            raise ScoringError(
                f"{self.endpoint} answered without `prompt_logprobs`: it is not a vLLM server "
                f"that returns them; for TGI use the tgi backend"
            )
        if len(positions) != len(ids):
            raise ScoringError(
                f"vLLM at {self.endpoint} returned {len(positions)} prompt log-probs for "
                f"{len(ids)} prompt tokens (was the prompt truncated?)"
            )
        nll = 0.0
        for position in range(len(request.prompt_ids), len(ids)):
            entry = positions[position] or {}
            token = entry.get(str(ids[position]))
            value = token.get("logprob") if isinstance(token, dict) else token
            if not isinstance(value, int | float) or math.isnan(value):
                raise ScoringError(
                    f"vLLM at {self.endpoint} returned no log-prob for token id {ids[position]} "
                    f"at position {position} (its entry holds ids {sorted(entry)[:5]})"
                )
            nll -= value
        return LogProbs(nll_sum=nll, tokens=len(request.response_ids))
