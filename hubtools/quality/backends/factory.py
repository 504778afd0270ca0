"""A ScoreConfig as a backend and the tokenizer that renders for it.

Remote backends are imported only when asked for, so the local path (and ``--help``)
never pays for an HTTP client it does not use.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from hubtools.errors import UsageError
from hubtools.quality.backends.base import ScoringBackend
from hubtools.quality.config import ScoreConfig

REMOTE = {"tgi": "TGIBackend", "vllm": "VLLMBackend", "sglang": "SGLangBackend"}


def open_backend(config: ScoreConfig) -> tuple[ScoringBackend, Any]:
    """``(backend, tokenizer)``; a model that cannot load is a UsageError, here, first."""
    if config.backend == "local":
        from hubtools.quality.backends.local import LocalBackend

        backend = LocalBackend(
            config.model, gguf_file=config.gguf_file, device=config.device,
            dtype=config.dtype, max_batch_tokens=config.max_batch_tokens,
        )  # fmt: skip
        tokenizer = backend.tokenizer if config.tokenizer is None else load_tokenizer(config)
        return backend, tokenizer
    module = importlib.import_module(f"hubtools.quality.backends.{config.backend}")
    cls = getattr(module, REMOTE[config.backend])
    api_key = None
    if config.api_key_env:
        api_key = os.environ.get(config.api_key_env)
        if not api_key:
            raise UsageError(f"api_key_env {config.api_key_env}: the variable is not set")
    tokenizer = load_tokenizer(config)
    backend = cls(
        config.endpoint, model=config.model, api_key=api_key,
        max_concurrency=config.max_concurrency,
    )  # fmt: skip
    return backend, tokenizer


def load_tokenizer(config: ScoreConfig) -> Any:
    """The tokenizer named by ``tokenizer:`` (default: the model's), or one UsageError line."""
    from transformers import AutoTokenizer
    from transformers.utils import logging

    logging.set_verbosity_error()
    name = config.tokenizer_name
    try:
        return AutoTokenizer.from_pretrained(name)
    except Exception as err:  # OSError (not found, offline), ValueError (no tokenizer files)
        reason = " ".join(str(err).split())[:300]
        raise UsageError(f"cannot load the tokenizer {name}: {reason}") from None
