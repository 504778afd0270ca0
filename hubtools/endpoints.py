"""Inference endpoints (teachers, judges): one safe way to build their client.

huggingface_hub's `AsyncInferenceClient` sends the user's saved Hugging Face
token to whatever URL it calls when no key is given (`None` and `""` alike).
A TGI/vLLM/SGLang server run by someone else must never receive it, so every
endpoint client in hubtools is built here: the endpoint's own key from the
environment variable the config names, the HF token only for Hugging Face's
own hosts, and otherwise the OpenAI-style placeholder key `EMPTY`.
"""

from __future__ import annotations

import os
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


def make_client(url: str, *, api_key_env: str | None = None, timeout: float | None = None):
    """An `AsyncInferenceClient` for one endpoint, with the right credential and no leaks."""
    from huggingface_hub import AsyncInferenceClient

    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise UsageError(f"endpoint {url!r} is not an http(s) URL, e.g. http://10.0.0.5:8080")
    return AsyncInferenceClient(
        base_url=url.rstrip("/"), api_key=endpoint_key(url, api_key_env), timeout=timeout
    )
