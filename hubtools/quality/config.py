"""The score config (run.yaml's ``score:`` section): which model measures perplexity, and how.

Two kinds of key. Those that shape the data (``FROZEN``: backend, model, gguf_file,
tokenizer, passed_only, threshold) are frozen in run.yaml by the first ``score``, like
every section, so every score of a run means the same. Those that only say where and how
fast to compute (endpoint, api_key_env, max_concurrency, max_batch_tokens, device,
dtype) may be written in run.yaml too, as defaults, and change per invocation: a
command-line value wins, and they are never compared with what is frozen.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hubtools.checks import is_int, is_number
from hubtools.errors import UsageError
from hubtools.records import PASS_THRESHOLD
from hubtools.teachers.config import _build

BACKENDS = ("local", "tgi", "vllm", "sglang")
DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "bfloat16", "float16", "float32")
FROZEN = ("backend", "model", "gguf_file", "tokenizer", "passed_only", "threshold")


@dataclass(slots=True)
class ScoreConfig:
    """``model``: a Hub id or a folder (local), or the served model's name (remote);
    ``tokenizer``: whose tokenizer counts think/answer tokens and, for remote backends,
    renders the chat template (default: ``model``)."""

    model: str | None = None
    backend: str = "local"
    gguf_file: str | None = None  # a GGUF file inside the model folder/repo (local only)
    tokenizer: str | None = None
    passed_only: bool = True  # score only attempts whose verdict passed `threshold`
    threshold: float = PASS_THRESHOLD
    # -- per invocation: where and how fast, never frozen
    endpoint: str | None = None  # base URL of a TGI, vLLM or SGLang server
    api_key_env: str | None = None  # env var holding the endpoint's key
    max_concurrency: int = 32  # requests in flight (remote backends)
    max_batch_tokens: int = 16384  # padded tokens per forward pass (local)
    device: str = "auto"  # auto: CUDA when present, else CPU
    dtype: str = "auto"  # auto: bfloat16 on CUDA, float32 on CPU

    @property
    def tokenizer_name(self) -> str:
        return self.tokenizer or self.model or ""

    def frozen(self) -> dict[str, Any]:
        """The keys run.yaml freezes, with their values (defaults filled in)."""
        return {key: getattr(self, key) for key in FROZEN}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def resolve(cls, section: Any, overrides: dict[str, Any], source: str = "score") -> ScoreConfig:
        """run.yaml's section (may be None) with the command line's ``overrides`` on top.

        A frozen key given on the command line must equal the frozen one: a run has one
        scorer, so a different one needs ``--force`` on a new run, not a silent mix.
        """
        if section is not None and not isinstance(section, dict):
            raise UsageError(f"{source} must be a mapping")
        stored = dict(section or {})
        given = {k: v for k, v in overrides.items() if v is not None}
        unknown = sorted(set(given) - {f.name for f in fields(cls)})
        if unknown:
            raise UsageError(f"unknown score setting(s) {', '.join(unknown)}")
        if section is not None:
            clash = [
                f"{k}: {stored.get(k)!r} in run.yaml, {given[k]!r} given"
                for k in FROZEN
                if k in given and given[k] != stored.get(k, getattr(cls(), k))
            ]
            if clash:
                raise UsageError(
                    f"this run scores with another config ({'; '.join(clash)}); its score: "
                    "section is frozen: drop the option, or score into a new run"
                )
        config = _build(cls, {**stored, **given}, source)
        config.validate(source)
        return config

    def validate(self, source: str = "score") -> None:
        if self.backend not in BACKENDS:
            raise UsageError(
                f"{source}: unknown backend {self.backend!r}; choose one of {', '.join(BACKENDS)}"
            )
        if not isinstance(self.model, str) or not self.model:
            raise UsageError(
                f"{source}: no scoring model: give --model (a Hub id or a folder for the "
                "local backend, the served model's name for a server)"
            )
        for key in ("gguf_file", "tokenizer", "endpoint", "api_key_env"):
            if getattr(self, key) is not None and not isinstance(getattr(self, key), str):
                raise UsageError(f"{source}: {key} must be a string")
        if not isinstance(self.passed_only, bool):
            raise UsageError(f"{source}: passed_only must be true or false")
        if not (is_number(self.threshold) and 0 <= self.threshold <= 1):
            raise UsageError(f"{source}: threshold must be a number in [0, 1]")
        if not (is_int(self.max_concurrency) and self.max_concurrency >= 1):
            raise UsageError(f"{source}: max_concurrency must be an integer >= 1")
        if not (is_int(self.max_batch_tokens) and self.max_batch_tokens >= 1):
            raise UsageError(f"{source}: max_batch_tokens must be an integer >= 1")
        if self.device not in DEVICES:
            raise UsageError(f"{source}: device must be one of {', '.join(DEVICES)}")
        if self.dtype not in DTYPES:
            raise UsageError(f"{source}: dtype must be one of {', '.join(DTYPES)}")
        if self.backend == "local":
            if self.endpoint is not None:
                raise UsageError(f"{source}: the local backend takes no endpoint")
            _check_local_path(self.model, "model", source)
            folder = Path(self.model).expanduser()
            if self.gguf_file and folder.is_dir() and not (folder / self.gguf_file).is_file():
                raise UsageError(f"{source}: gguf_file {self.gguf_file} is not in {self.model}")
            if not self.gguf_file and folder.is_dir() and not (folder / "config.json").is_file():
                ggufs = sorted(p.name for p in folder.glob("*.gguf"))
                hint = f"; give --gguf-file ({', '.join(ggufs[:3])})" if ggufs else ""
                raise UsageError(
                    f"{source}: {self.model} is not a transformers model folder (no config.json)"
                    + hint
                )
            if self.tokenizer is not None:
                _check_local_path(self.tokenizer, "tokenizer", source)
        else:
            if self.gguf_file is not None:
                raise UsageError(f"{source}: gguf_file is for the local backend")
            url = urlsplit(str(self.endpoint or ""))
            if url.scheme not in ("http", "https") or not url.hostname:
                raise UsageError(
                    f"{source}: backend {self.backend} needs --endpoint, an http(s) URL, "
                    f"got {self.endpoint!r}"
                )


def _check_local_path(name: str, key: str, source: str) -> None:
    """A value that looks like a path (not ``org/name``) must be an existing folder."""
    path = Path(name).expanduser()
    looks_local = name.startswith((".", "/", "~")) or name.count("/") > 1 or path.exists()
    if not looks_local:
        return  # a Hub id: loading it says whether it is cached or reachable
    if not path.exists():
        raise UsageError(f"{source}: {key} {name}: no such folder (nor a Hub id org/name)")
    if not path.is_dir():
        raise UsageError(f"{source}: {key} {name} is a file; give the model's folder")
