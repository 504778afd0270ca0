"""Inference endpoints (teachers, judges): one safe way to build their client.

huggingface_hub's `AsyncInferenceClient` sends the user's saved Hugging Face
token to whatever URL it calls when no key is given (`None` and `""` alike).
A TGI/vLLM/SGLang server run by someone else must never receive it, so every
endpoint client in hubtools is built here: the endpoint's own key from the
environment variable the config names, the HF token only for Hugging Face's
own hosts, and otherwise the OpenAI-style placeholder key `EMPTY`.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from urllib.parse import urlparse

from hubtools.errors import UsageError

NO_KEY = "EMPTY"  # what OpenAI-compatible servers without auth expect and ignore
_HF_HOSTS = ("huggingface.co", "hf.co", "endpoints.huggingface.cloud")


def is_hf_host(url: str) -> bool:
    host = (urlparse(url).hostname or "").lower()
    return any(host == h or host.endswith("." + h) for h in _HF_HOSTS)


def endpoint_key(url: str, api_key_env: str | None) -> str | None:
    """The credential to send to `url`; None lets the client use the HF token (HF hosts only)."""
    if api_key_env:
        key = os.environ.get(api_key_env)
        if not key:
            raise UsageError(
                f"the endpoint {url} needs its key in ${api_key_env}, which is not set: "
                f"export {api_key_env}=... or drop api_key_env from the config"
            )
        return key
    return None if is_hf_host(url) else NO_KEY


_pool_size = 0

# Connections per httpx pool. httpcore's pool walks all its connections (twice) for every
# request it sends and every response it releases, so one pool of 5,000 connections costs
# milliseconds of CPU per request and stalls the event loop (bench/teachers_client.md);
# `make_clients` spreads many requests over several small pools instead.
POOL_CONNECTIONS = 32

# Which HTTP/1.1 stack carries the AsyncInferenceClient's requests: "aiohttp" (the default,
# hubtools.endpoints_transport: a fraction of the CPU per request) or "httpx" (httpx2's own
# connection pool, huggingface_hub's default).
TRANSPORT_ENV = "HUBTOOLS_HTTP_TRANSPORT"


def _ensure_connection_pool(connections: int) -> None:
    """Let more requests be in flight than httpx's default pool (100 connections) allows.

    hubtools bounds concurrency itself (per-endpoint limiters), so the pool only has to
    be large enough; huggingface_hub builds each async client from this factory.
    """
    global _pool_size
    if connections <= _pool_size:
        return
    import httpx2
    from huggingface_hub import set_async_client_factory
    from huggingface_hub.utils import _http

    _pool_size = connections
    hooks = {
        "request": [h for h in [getattr(_http, "async_hf_request_event_hook", None)] if h],
        "response": [h for h in [getattr(_http, "async_hf_response_event_hook", None)] if h],
    }
    limits = httpx2.Limits(max_connections=connections, max_keepalive_connections=connections)
    ssl_context = None

    def factory() -> httpx2.AsyncClient:
        # One SSL context for all clients: building one loads the CA bundle (~20 ms of CPU),
        # and an endpoint with thousands of requests in flight has many clients. The
        # transport is chosen per client, so $HUBTOOLS_HTTP_TRANSPORT applies to new ones.
        nonlocal ssl_context
        if ssl_context is None:
            ssl_context = httpx2.create_ssl_context()
        if os.environ.get(TRANSPORT_ENV, "aiohttp").lower() == "httpx":
            return httpx2.AsyncClient(
                event_hooks=hooks, follow_redirects=True, timeout=None, limits=limits,
                verify=ssl_context,
            )  # fmt: skip
        from hubtools.endpoints_transport import AiohttpTransport

        transport = AiohttpTransport(max_connections=connections, ssl_context=ssl_context)
        return httpx2.AsyncClient(
            event_hooks=hooks, follow_redirects=True, timeout=None, transport=transport
        )

    set_async_client_factory(factory)
    _raise_open_files_limit(connections + 256)


def _raise_open_files_limit(wanted: int) -> None:
    """Each connection is a file descriptor; 1024 is a common soft limit."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, target), hard))


def make_client(
    url: str,
    *,
    api_key_env: str | None = None,
    timeout: float | None = None,
    max_connections: int = 100,
    api_key: str | None = None,
):
    """An `AsyncInferenceClient` for one endpoint, with the right credential and no leaks.

    `api_key`, when given, is the endpoint's own key (already read from wherever the
    caller keeps it); otherwise `api_key_env` names the variable that holds it."""
    from huggingface_hub import AsyncInferenceClient

    _ensure_connection_pool(max_connections)

    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise UsageError(f"endpoint {url!r} is not an http(s) URL, e.g. http://10.0.0.5:8080")
    return AsyncInferenceClient(
        base_url=url.rstrip("/"), api_key=api_key or endpoint_key(url, api_key_env),
        timeout=timeout,
    )  # fmt: skip


def make_clients(
    url: str,
    *,
    api_key_env: str | None = None,
    timeout: float | None = None,
    max_connections: int = 100,
    api_key: str | None = None,
) -> list:
    """Clients (`make_client`) for `max_connections` concurrent requests to one endpoint,
    one per `POOL_CONNECTIONS` of them: the caller sends at most that many through each."""
    count = -(-max(1, max_connections) // POOL_CONNECTIONS)
    per_client = min(max_connections, POOL_CONNECTIONS)
    clients = [
        make_client(
            url,
            api_key_env=api_key_env,
            timeout=timeout,
            max_connections=per_client + 16,
            api_key=api_key,
        )
        for _ in range(count)
    ]
    _raise_open_files_limit(max_connections + 256)
    return clients


# -- what a failed request means ----------------------------------------------------------
# Shared by every stage that calls endpoints (generate's teachers, score's remote backends):
# transient overload and transport trouble (429, 503, other 5xx, timeouts, resets, error
# events inside a 200 stream) are retried with exponential backoff and full jitter,
# honouring Retry-After. A 4xx about the request itself (422 validation, 400) is not
# retried: asking again gets the same answer. Auth and routing errors (401, 403, 404)
# mean the config is wrong.

RETRY, REJECT, STOP = "retry", "reject", "stop"


@dataclass(frozen=True, slots=True)
class Failure:
    kind: str  # RETRY | REJECT | STOP
    message: str
    status: int | None = None
    overload: bool = False  # the server said it is saturated: send less
    retry_after: float | None = None


def retry_after(headers) -> float | None:
    """Seconds the server asked us to wait (Retry-After: seconds or an HTTP date)."""
    value = headers.get("retry-after") if headers is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def status_failure(status: int, message: str, headers=None) -> Failure:
    """What an HTTP error status means, whichever client received it."""
    after = retry_after(headers)
    if status in (400, 413, 422):
        return Failure(REJECT, message, status)
    if status in (401, 403, 404, 405):
        return Failure(STOP, message, status)
    return Failure(RETRY, message, status, overload=status in (429, 503), retry_after=after)


def classify(exc: BaseException) -> Failure:
    """What an exception raised by huggingface_hub's inference client means."""
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError, InferenceTimeoutError, TextGenerationError
    from huggingface_hub.inference._common import OverloadedError, ValidationError

    text = f"{type(exc).__name__}: {exc}"[:500]
    if isinstance(exc, OverloadedError):
        return Failure(RETRY, text, 429, overload=True)
    if isinstance(exc, ValidationError):
        return Failure(REJECT, text, 422)
    if isinstance(exc, TextGenerationError):
        # Error events inside a 200 stream; OpenAI-style ones carry http_status_code.
        status = _embedded_status(exc)
        if status in (400, 422):
            return Failure(REJECT, text, status)
        return Failure(RETRY, text, status, overload=status in (429, 503))
    if isinstance(exc, HfHubHTTPError) and exc.response is not None:
        return status_failure(exc.response.status_code, text, exc.response.headers)
    if isinstance(
        exc, InferenceTimeoutError | httpx2.TransportError | OSError | asyncio.TimeoutError
    ):
        return Failure(RETRY, text)
    if isinstance(exc, ValueError):  # a malformed answer body, e.g. truncated JSON
        return Failure(RETRY, text)
    raise exc  # a bug of ours: let it surface


def _embedded_status(exc: BaseException) -> int | None:
    payload = exc.args[0] if exc.args else None
    if isinstance(payload, dict):
        status = payload.get("http_status_code") or payload.get("code")
        return status if isinstance(status, int) else None
    return None


def backoff_delay(retry: int, failure: Failure, base: float = 0.5, cap: float = 60.0) -> float:
    """Full-jitter exponential backoff; the server's Retry-After is a floor."""
    delay = random.uniform(0, min(cap, base * 2**retry))
    return max(delay, failure.retry_after or 0.0)
