"""The generate config (run.yaml): which teachers, how to sample, when to stop.

Defaults follow the paper (arXiv 2505.14464): temperature 0.6, top_p 0.95, a
query re-asked until its answer scores >= 0.9. Validation happens here, once,
with messages that name the key to fix.
"""

from __future__ import annotations

import re
from dataclasses import MISSING, Field, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from hubtools.checks import is_int, is_number
from hubtools.errors import UsageError
from hubtools.records import PASS_THRESHOLD

PROTOCOLS = ("chat", "tgi")  # OpenAI-style /v1/chat/completions, or TGI's native /generate
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(slots=True)
class Sampling:
    temperature: float = 0.6
    top_p: float = 0.95
    max_tokens: int = 32768
    stop: list[str] | None = None
    extra_body: dict[str, Any] | None = None  # e.g. {"chat_template_kwargs": {...}}


@dataclass(slots=True)
class TeacherConfig:
    name: str  # teacher id in the run and the datasets
    endpoint: str  # base URL of a TGI, vLLM or SGLang server
    model: str  # served model name sent with each request
    api_key_env: str | None = None  # env var holding the endpoint's own key
    max_concurrency: int = 256
    protocol: str = "chat"
    chat_template: str | None = None  # tokenizer whose template renders prompts for `tgi`
    # One JSON answer per request by default: streaming costs client CPU for every token,
    # which at thousands of long answers in flight is more than two cores can give.
    stream: bool = False
    request_timeout_s: float = 3600.0  # longest wait for bytes (a whole answer, unless stream)
    sampling: Sampling | None = None  # overrides the run-wide sampling


@dataclass(slots=True)
class GenerateConfig:
    teachers: list[TeacherConfig]
    sampling: Sampling = field(default_factory=Sampling)
    system_prompt: str | None = None
    max_attempts: int = 8
    threshold: float = PASS_THRESHOLD
    max_retries: int = 8  # transport retries of one request before the endpoint counts as down
    down_after_s: float = 600.0  # an endpoint failing this long is reported and left alone
    # Eval's sampling mode: exactly max_attempts samples per query, passed or not, all of
    # them in flight together (avg@k needs every sample; generate stops at the first pass).
    sample_all: bool = False

    def sampling_for(self, teacher: TeacherConfig) -> Sampling:
        return teacher.sampling or self.sampling

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def load(cls, path: Path) -> GenerateConfig:
        try:
            data = yaml.safe_load(Path(path).read_text())
        except FileNotFoundError:
            raise UsageError(f"config file {path} not found") from None
        except (OSError, UnicodeDecodeError) as e:  # a directory, no permission, binary
            reason = getattr(e, "strerror", None) or "not UTF-8 text"
            raise UsageError(f"cannot read the config file {path} ({reason})") from None
        except yaml.YAMLError as e:
            raise UsageError(f"{path} is not valid YAML: {' '.join(str(e).split())}") from None
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: Any, source: str = "config") -> GenerateConfig:
        if not isinstance(data, dict):
            raise UsageError(f"{source}: expected a mapping with a 'teachers' list")
        data = {k: v for k, v in data.items() if k in {f.name for f in fields(cls)}}
        teachers = data.pop("teachers", None)
        if not isinstance(teachers, list) or not teachers:
            raise UsageError(f"{source}: 'teachers' must be a non-empty list")
        sampling = _build(Sampling, data.pop("sampling", None) or {}, f"{source}: sampling")
        parsed = []
        for i, t in enumerate(teachers):
            where = f"{source}: teachers[{i}]"
            if not isinstance(t, dict):
                raise UsageError(f"{where} must be a mapping")
            t = dict(t)
            if t.get("sampling") is not None:
                t["sampling"] = _build(Sampling, t["sampling"], f"{where}.sampling")
            parsed.append(_build(TeacherConfig, t, where))
        config = _build(cls, {**data, "teachers": parsed, "sampling": sampling}, source)
        config._validate(source)
        return config

    def _validate(self, source: str) -> None:
        names = [t.name for t in self.teachers]
        if len(set(names)) != len(names):
            raise UsageError(f"{source}: teacher names must be unique, got {names}")
        for t in self.teachers:
            where = f"{source}: teacher {t.name!r}"
            if not isinstance(t.name, str) or not _NAME_RE.match(t.name):
                raise UsageError(f"{where}: name must be letters, digits, '.', '_' or '-'")
            url = urlsplit(str(t.endpoint))
            if url.scheme not in ("http", "https") or not url.hostname:
                raise UsageError(f"{where}: endpoint must be an http(s) URL, got {t.endpoint!r}")
            if not isinstance(t.model, str) or not t.model:
                raise UsageError(f"{where}: model must be the served model's name")
            if t.protocol not in PROTOCOLS:
                raise UsageError(f"{where}: protocol must be one of {PROTOCOLS}")
            if t.protocol == "tgi" and not t.chat_template:
                raise UsageError(
                    f"{where}: protocol 'tgi' sends raw prompts: set chat_template to the "
                    "tokenizer (repo id or path) whose chat template renders them"
                )
            for key in ("api_key_env", "chat_template"):
                if getattr(t, key) is not None and not isinstance(getattr(t, key), str):
                    raise UsageError(f"{where}: {key} must be a string")
            if not isinstance(t.stream, bool):
                raise UsageError(f"{where}: stream must be true or false, got {t.stream!r}")
            if not (is_int(t.max_concurrency) and t.max_concurrency >= 1):
                raise UsageError(f"{where}: max_concurrency must be an integer >= 1")
            if not (is_number(t.request_timeout_s) and t.request_timeout_s > 0):
                raise UsageError(f"{where}: request_timeout_s must be a number > 0")
            s = self.sampling_for(t)
            if not (
                is_number(s.top_p) and is_number(s.temperature) and is_int(s.max_tokens)
            ) or not (0 < s.top_p <= 1 and s.temperature >= 0 and s.max_tokens >= 1):
                raise UsageError(
                    f"{where}: sampling needs 0 < top_p <= 1, temperature >= 0, max_tokens >= 1"
                )
            if s.stop is not None and not (
                isinstance(s.stop, list) and all(isinstance(x, str) for x in s.stop)
            ):
                raise UsageError(f"{where}: sampling.stop must be a list of strings")
            if s.extra_body is not None and not isinstance(s.extra_body, dict):
                raise UsageError(f"{where}: sampling.extra_body must be a mapping")
        if self.system_prompt is not None and not isinstance(self.system_prompt, str):
            raise UsageError(f"{source}: system_prompt must be a string")
        if not (is_int(self.max_attempts) and self.max_attempts >= 1):
            raise UsageError(f"{source}: max_attempts must be an integer >= 1")
        if not (is_number(self.threshold) and 0 <= self.threshold <= 1):
            raise UsageError(f"{source}: threshold must be a number in [0, 1]")
        if not (is_int(self.max_retries) and self.max_retries >= 0):
            raise UsageError(f"{source}: max_retries must be an integer >= 0")
        if not (is_number(self.down_after_s) and self.down_after_s >= 0):
            raise UsageError(f"{source}: down_after_s must be a number >= 0")
        if not isinstance(self.sample_all, bool):
            raise UsageError(f"{source}: sample_all must be true or false")


def _build(cls, data: Any, where: str):
    if not isinstance(data, dict):
        raise UsageError(f"{where} must be a mapping")
    known = {f.name for f in fields(cls)}
    unknown = sorted(map(str, set(data) - known))
    if unknown:
        keys = "key" if len(unknown) == 1 else "keys"
        raise UsageError(f"{where}: unknown {keys} {', '.join(unknown)}; known: {sorted(known)}")
    missing = [f.name for f in fields(cls) if f.name not in data and _required(f)]
    if missing:
        keys = "key" if len(missing) == 1 else "keys"
        raise UsageError(f"{where}: missing required {keys} {', '.join(missing)}")
    return cls(**data)


def _required(f: Field) -> bool:
    return f.default is MISSING and f.default_factory is MISSING
