"""What an endpoint failure means for the request: retry, record, or stop the teacher.

Transient overload and transport trouble (429, 503, other 5xx, timeouts,
resets, error events inside a 200 stream) are retried with exponential
backoff and full jitter, honouring Retry-After. A 4xx about the request
itself (422 validation, 400) is recorded as the attempt's error and not
retried: asking again gets the same answer. Auth and routing errors (401,
403, 404) mean the config is wrong, so the teacher stops and says so.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

import httpx2
from huggingface_hub.errors import HfHubHTTPError, InferenceTimeoutError, TextGenerationError
from huggingface_hub.inference._common import OverloadedError, ValidationError

RETRY, REJECT, STOP = "retry", "reject", "stop"


@dataclass(frozen=True, slots=True)
class Failure:
    kind: str  # RETRY | REJECT | STOP
    message: str
    status: int | None = None
    overload: bool = False  # the server said it is saturated: send less
    retry_after: float | None = None


def _retry_after(headers) -> float | None:
    value = headers.get("retry-after") if headers is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            import time

            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def classify(exc: BaseException) -> Failure:
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
        status = exc.response.status_code
        after = _retry_after(exc.response.headers)
        if status in (400, 413, 422):
            return Failure(REJECT, text, status)
        if status in (401, 403, 404, 405):
            return Failure(STOP, text, status)
        return Failure(RETRY, text, status, overload=status in (429, 503), retry_after=after)
    if isinstance(
        exc, InferenceTimeoutError | httpx2.TransportError | OSError | asyncio.TimeoutError
    ):
        return Failure(RETRY, text)
    if isinstance(exc, ValueError):  # a malformed answer body, e.g. truncated JSON
        return Failure(RETRY, text)
    raise exc  # a bug of ours: let it surface


def _embedded_status(exc: TextGenerationError) -> int | None:
    payload = exc.args[0] if exc.args else None
    if isinstance(payload, dict):
        status = payload.get("http_status_code") or payload.get("code")
        return status if isinstance(status, int) else None
    return None


def backoff_delay(retry: int, failure: Failure, base: float = 0.5, cap: float = 60.0) -> float:
    """Full-jitter exponential backoff; the server's Retry-After is a floor."""
    delay = random.uniform(0, min(cap, base * 2**retry))
    return max(delay, failure.retry_after or 0.0)
