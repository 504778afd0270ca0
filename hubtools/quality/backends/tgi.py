"""Perplexity from a TGI server: the prefill log-probs of ``/generate``.

TGI takes text, not token ids, so the request carries the whole rendering
(``ScoreRequest.text``) and the answer's prefill token ids are checked against the
scoring model's (``prompt_ids + response_ids``): a server with another tokenizer would
otherwise score other tokens without a word. ``max_new_tokens=1`` (TGI refuses 0) and
``decoder_input_details=True`` ask for one log-prob per input token; the first is null
(nothing precedes it). Since TGI 3.0 the prefill is computed only when the server runs
with ``--enable-prefill-logprobs`` (huggingface/text-generation-inference#3070): without
it ``prefill`` is ``[]`` and no error is raised, so an empty one is an error here.
"""

from __future__ import annotations

import math

from hubtools.endpoints import Failure, classify, make_clients
from hubtools.quality.backends._http import RemoteBackend, response_ids_mismatch
from hubtools.quality.backends.base import LogProbs, ScoreRequest, ScoringError

NO_PREFILL = (
    "TGI at {url} returned no prompt log-probs (an empty `prefill`): TGI >= 3.0 computes "
    "them only when launched with --enable-prefill-logprobs; restart the server with that "
    "flag (or score with the vllm or sglang backend)"
)


class TGIBackend(RemoteBackend):
    """``huggingface_hub.AsyncInferenceClient.text_generation`` against a TGI endpoint."""

    name = "tgi"

    def __init__(
        self, endpoint: str, *, model: str, api_key: str | None = None,
        max_concurrency: int = 32, timeout_s: float = 600, max_retries: int = 10,
    ):  # fmt: skip
        super().__init__(
            endpoint, model=model, api_key=api_key, max_concurrency=max_concurrency,
            timeout_s=timeout_s, max_retries=max_retries,
        )  # fmt: skip
        self._clients: list = []
        self._next = 0

    def _open(self) -> None:
        # Clients hold an aiohttp session of the loop they first ran in: new loop, new ones.
        self._clients = make_clients(
            self.endpoint, api_key=self.api_key, timeout=self.timeout_s,
            max_connections=self.max_concurrency,
        )  # fmt: skip

    def _client(self):
        self._next = (self._next + 1) % len(self._clients)
        return self._clients[self._next]

    async def _request(self, request: ScoreRequest) -> LogProbs:
        output = await self._client().text_generation(
            request.text, max_new_tokens=1, details=True, decoder_input_details=True
        )
        details = getattr(output, "details", None)
        if details is None:
            raise ScoringError(
                f"{self.endpoint} answered without `details`: it does not look like a TGI "
                f"server (use the vllm or sglang backend for those)"
            )
        prefill = details.prefill or []
        if not prefill:
            raise ScoringError(NO_PREFILL.format(url=self.endpoint))
        want = [*request.prompt_ids, *request.response_ids]
        got = [token.id for token in prefill]
        if got != want:
            raise response_ids_mismatch(f"TGI at {self.endpoint}", got, want)
        nll = 0.0
        for token in prefill[len(request.prompt_ids) :]:
            if token.logprob is None or math.isnan(token.logprob):
                raise ScoringError(
                    f"TGI at {self.endpoint} returned no log-prob for response token "
                    f"{token.id} ({token.text!r})"
                )
            nll -= token.logprob
        return LogProbs(nll_sum=nll, tokens=len(request.response_ids))

    def _classify(self, exc: BaseException) -> Failure:
        return classify(exc)

    async def aclose(self) -> None:
        clients, self._clients = self._clients, []
        for client in clients:
            try:
                await client.close()
            except RuntimeError:  # its loop is gone
                pass
        await super().aclose()
