"""Perplexity from an SGLang server: ``input_token_logprobs`` of its native ``/generate``.

The request carries token ids (``input_ids``), so SGLang never re-tokenizes. SGLang
returns ``meta_info.input_token_logprobs`` for the tokens ``input_ids[logprob_start_len:]``
as ``[logprob, token_id, text]``, and the first of them is always ``None``: logits are
computed from ``logprob_start_len`` on, and the first token's log-prob would need the
logits of the position before it (``scheduler_output_processor_mixin``:
``[None] + input_token_logprobs[:-1]``). So the request starts one token early, at the
prompt's last token, and the response tokens are the entries after that ``None``.
SGLang caps its prefix-cache match at ``logprob_start_len``, so the prompt may come from
the cache while every scored token is computed.
"""

from __future__ import annotations

import math
from typing import Any

from hubtools.quality.backends._http import HTTPStatusError, JSONBackend, response_ids_mismatch
from hubtools.quality.backends.base import LogProbs, ScoreRequest, ScoringError


class SGLangBackend(JSONBackend):
    name = "sglang"

    def body(self, request: ScoreRequest) -> dict[str, Any]:
        return {
            "input_ids": [*request.prompt_ids, *request.response_ids],
            "sampling_params": {"max_new_tokens": 1, "temperature": 0},
            "return_logprob": True,
            "logprob_start_len": len(request.prompt_ids) - 1,
            "return_text_in_logprobs": False,
        }

    async def _request(self, request: ScoreRequest) -> LogProbs:
        if not request.prompt_ids:
            raise ScoringError("sglang cannot score a response without a prompt before it")
        answer = await self._post("/generate", self.body(request))
        if isinstance(answer, list) and answer:
            answer = answer[0]
        meta = answer.get("meta_info") if isinstance(answer, dict) else None
        if not isinstance(meta, dict):
            raise ScoringError(
                f"{self.endpoint} answered without `meta_info`: not an SGLang server "
                f"(its /generate): {answer!r:.200}"
            )
        finish = meta.get("finish_reason")
        if isinstance(finish, dict) and finish.get("type") == "abort":
            status = finish.get("status_code")
            raise HTTPStatusError(
                status if isinstance(status, int) else 503, str(finish.get("message") or finish)
            )
        entries = meta.get("input_token_logprobs")
        if not entries:
            raise ScoringError(
                f"SGLang at {self.endpoint} returned no `input_token_logprobs` "
                f"(does it honour return_logprob and logprob_start_len?)"
            )
        got = [entry[1] for entry in entries[1:]]
        if got != list(request.response_ids):
            raise response_ids_mismatch(f"SGLang at {self.endpoint}", got, request.response_ids)
        nll = 0.0
        for value, token_id, *_ in entries[1:]:
            if not isinstance(value, int | float) or math.isnan(value):
                raise ScoringError(
                    f"SGLang at {self.endpoint} returned no log-prob for token id {token_id}"
                )
            nll -= value
        return LogProbs(nll_sum=nll, tokens=len(request.response_ids))
