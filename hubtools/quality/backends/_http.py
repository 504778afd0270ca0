"""What the remote scoring backends share: requests in flight, retries, errors, one session.

Every request of a ``score()`` call is sent at once, at most ``max_concurrency`` in
flight per backend (continuous-batching servers are saturated by many independent
requests). Overload and transport trouble (429, 503, other 5xx, timeouts, resets) are
retried with the backoff generate uses (``hubtools.endpoints``); a 4xx about the request
is a ScoringError that carries the server's own message, since asking again gets the
same answer. Sessions and semaphores belong to one event loop, so they are (re)made in
the loop that calls ``score``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any
from urllib.parse import urlparse

from hubtools.endpoints import RETRY, STOP, Failure, backoff_delay, endpoint_key, status_failure
from hubtools.errors import UsageError
from hubtools.quality.backends.base import LogProbs, ScoreRequest, ScoringError


class HTTPStatusError(Exception):
    """An HTTP error answer: its status, the server's message and its headers."""

    def __init__(self, status: int, message: str, headers=None):
        super().__init__(f"HTTP {status}: {message}")
        self.status, self.message, self.headers = status, message, headers


def server_message(body: bytes | str) -> str:
    """The human part of an error body: TGI ``{"error": str}``, vLLM/SGLang
    ``{"error": {"message"}}`` or the older flat ``{"object": "error", "message"}``."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        data = json.loads(text)
    except ValueError:
        return text.strip()[:500] or "(empty body)"
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:500]
        if isinstance(error, str) and error:
            return error[:500]
        for key in ("message", "detail"):
            if data.get(key):
                return str(data[key])[:500]
    return text.strip()[:500]


class RemoteBackend:
    """The request loop of a remote backend; subclasses send one request (``_request``)."""

    name = "remote"

    def __init__(
        self, endpoint: str, *, model: str, api_key: str | None = None,
        max_concurrency: int = 32, timeout_s: float = 600, max_retries: int = 10,
    ):  # fmt: skip
        parsed = urlparse(endpoint)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise UsageError(
                f"{self.name} endpoint {endpoint!r} is not an http(s) URL, e.g. http://10.0.0.5:8000"
            )
        if max_concurrency < 1:
            raise UsageError(f"max_concurrency must be at least 1, not {max_concurrency}")
        self.endpoint, self.model = endpoint.rstrip("/"), model
        self.api_key = api_key
        self.max_concurrency, self.timeout_s = max_concurrency, timeout_s
        self.max_retries = max_retries
        self.retries = 0  # requests sent again after a transient failure
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots: asyncio.Semaphore | None = None

    # -- per event loop ---------------------------------------------------------------------
    def _bind(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop, self._slots = loop, asyncio.Semaphore(self.max_concurrency)
            self._open()

    def _open(self) -> None:
        """Create the loop's HTTP client(s)."""

    async def aclose(self) -> None:
        self._loop = self._slots = None

    # -- requests -------------------------------------------------------------------------
    async def score(self, requests: list[ScoreRequest]) -> list[LogProbs]:
        self._bind()
        if not requests:
            return []
        try:
            async with asyncio.TaskGroup() as group:  # the first ScoringError cancels the rest
                tasks = [
                    group.create_task(self._with_retries(i, r)) for i, r in enumerate(requests)
                ]
        except* ScoringError as errors:
            raise errors.exceptions[0] from None
        return [task.result() for task in tasks]

    async def _with_retries(self, index: int, request: ScoreRequest) -> LogProbs:
        for retry in itertools.count():
            async with self._slots:
                try:
                    return await self._request(request)
                except ScoringError:
                    raise
                except Exception as exc:  # _classify re-raises what is not an endpoint failure
                    failure = self._classify(exc)
            if failure.kind != RETRY:
                hint = " (check the endpoint URL, the model name and the API key)" * (
                    failure.kind == STOP
                )
                raise ScoringError(
                    f"{self.name} server {self.endpoint} refused request {index + 1}: "
                    f"{failure.message}{hint}"
                )
            if retry >= self.max_retries:
                raise ScoringError(
                    f"{self.name} server {self.endpoint} still failing after {retry} retries: "
                    f"{failure.message}"
                )
            self.retries += 1
            await asyncio.sleep(backoff_delay(min(retry, 7), failure))
        raise AssertionError("unreachable")

    async def _request(self, request: ScoreRequest) -> LogProbs:
        raise NotImplementedError

    def _classify(self, exc: BaseException) -> Failure:
        """What an exception of the aiohttp path means: retry, or give up and say why."""
        import aiohttp

        if isinstance(exc, HTTPStatusError):
            return status_failure(exc.status, exc.message, exc.headers)
        if isinstance(exc, aiohttp.ClientError | OSError | TimeoutError | ValueError):
            return Failure(RETRY, f"{type(exc).__name__}: {exc}"[:500])
        raise exc


class JSONBackend(RemoteBackend):
    """A backend that POSTs JSON with one aiohttp session (vLLM, SGLang).

    huggingface_hub's client has no ``/v1/completions`` and no SGLang ``/generate`` (it
    posts text, not token ids), so these two speak plain HTTP through aiohttp, the same
    HTTP stack hubtools' inference clients use (``hubtools.endpoints_transport``).
    """

    _session = None

    def _open(self) -> None:
        import aiohttp

        # A session left in another (finished) loop cannot be closed from this one; it
        # went with its loop.
        key = self.api_key or endpoint_key(self.endpoint, None)
        if key is None:  # a Hugging Face host: the user's own token, as huggingface_hub does
            from huggingface_hub import get_token

            key = get_token()
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        connector = aiohttp.TCPConnector(limit=self.max_concurrency, keepalive_timeout=4.0)
        self._session = aiohttp.ClientSession(
            connector=connector, headers=headers,
            timeout=aiohttp.ClientTimeout(total=self.timeout_s,
                                          sock_connect=min(30, self.timeout_s)),
        )  # fmt: skip

    async def _post(self, path: str, body: dict[str, Any]) -> Any:
        async with self._session.post(self.endpoint + path, json=body) as response:
            raw = await response.read()
            if response.status >= 400:
                raise HTTPStatusError(response.status, server_message(raw), response.headers)
            return json.loads(raw)  # a cut or garbled body is a ValueError: retried

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed:
            try:
                await session.close()
            except RuntimeError:  # its loop is gone
                pass
        await super().aclose()


def response_ids_mismatch(server: str, got: list[int], want: list[int]) -> ScoringError:
    """The error for token ids that differ from the scoring model's rendering."""
    if len(got) == len(want) + 1 and got[1:] == want:
        return ScoringError(
            f"{server} put a token (id {got[0]}) before the text: it adds its tokenizer's "
            f"special tokens (a BOS) to a rendering whose chat template already starts with "
            f"one. Score this model with the vllm or sglang backend, which take token ids"
        )
    at = next((i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b), None)
    where = (
        f"first difference at token {at}: server id {got[at]}, scoring model id {want[at]}"
        if at is not None
        else f"the server has {len(got)} tokens, the scoring model {len(want)}"
    )
    return ScoringError(
        f"{server}'s tokenizer differs from the scoring model's ({where}): serve the scoring "
        f"model (the same tokenizer) or set the scoring model to the one the server serves"
    )
