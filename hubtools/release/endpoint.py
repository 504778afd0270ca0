"""Which Hub a publish talks to, decided before huggingface_hub is imported.

huggingface_hub and datasets read ``HF_ENDPOINT`` and ``HF_HUB_DISABLE_XET`` once, at
import. A local Hub does not speak Xet, so a process that talks to one must have Xet
disabled from the start. ``prepare`` sets the environment when nothing imported the
clients yet; when they were imported for another endpoint (or with Xet on for a local
Hub), the publish runs in a fresh ``python -m hubtools publish`` process instead.
This module imports neither client.
"""

from __future__ import annotations

import json
import os
from urllib.error import URLError
from urllib.parse import urlsplit
from urllib.request import urlopen

from hubtools.hub.serve import LOCAL_ENV, clients_imported

HF_HOSTS = ("huggingface.co", "hf.co")


def is_local_hub(endpoint: str) -> bool:
    """A hubtools local Hub answers ``/healthz``; huggingface.co is never one."""
    host = urlsplit(endpoint).hostname or ""
    if host in HF_HOSTS or host.endswith(tuple(f".{h}" for h in HF_HOSTS)):
        return False
    try:
        with urlopen(f"{endpoint.rstrip('/')}/healthz", timeout=3) as resp:
            return resp.status == 200 and json.load(resp).get("status") == "ok"
    except (URLError, OSError, ValueError):
        return False


def wanted_env(endpoint: str | None) -> dict[str, str]:
    """The variables the clients must be imported with for ``endpoint`` (None: as set)."""
    target = endpoint or os.environ.get("HF_ENDPOINT")
    env = {"HF_ENDPOINT": endpoint} if endpoint else {}
    if target and is_local_hub(target):
        env.update(LOCAL_ENV)
    return env


def prepare(endpoint: str | None) -> bool:
    """Configure this process for ``endpoint``; False when it cannot (clients imported)."""
    env = wanted_env(endpoint)
    if not clients_imported():
        os.environ.update(env)
        return True
    from huggingface_hub import constants

    if "HF_ENDPOINT" in env and constants.ENDPOINT.rstrip("/") != env["HF_ENDPOINT"].rstrip("/"):
        return False
    return not (env.get("HF_HUB_DISABLE_XET") and not constants.HF_HUB_DISABLE_XET)


def endpoint_now() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT
