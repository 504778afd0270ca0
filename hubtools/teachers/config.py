"""The generate config (run.yaml): which teachers, how to sample, when to stop.

Defaults follow the paper (arXiv 2505.14464): temperature 0.6, top_p 0.95, a
query re-asked until its answer scores >= 0.9. Validation happens here, once,
with messages that name the key to fix.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

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
            if not str(t.endpoint).startswith(("http://", "https://")):
                raise UsageError(f"{where}: endpoint must be an http(s) URL, got {t.endpoint!r}")
            if t.protocol not in PROTOCOLS:
                raise UsageError(f"{where}: protocol must be one of {PROTOCOLS}")
            if t.protocol == "tgi" and not t.chat_template:
                raise UsageError(
                    f"{where}: protocol 'tgi' sends raw prompts: set chat_template to the "
                    "tokenizer (repo id or path) whose chat template renders them"
                )
            if not (isinstance(t.max_concurrency, int) and t.max_concurrency >= 1):
                raise UsageError(f"{where}: max_concurrency must be an integer >= 1")
            s = self.sampling_for(t)
            if not 0 < s.top_p <= 1 or s.temperature < 0 or s.max_tokens < 1:
                raise UsageError(
                    f"{where}: sampling needs 0 < top_p <= 1, temperature >= 0, max_tokens >= 1"
                )
        if not (isinstance(self.max_attempts, int) and self.max_attempts >= 1):
            raise UsageError(f"{source}: max_attempts must be an integer >= 1")
        if not 0 <= self.threshold <= 1:
            raise UsageError(f"{source}: threshold must be in [0, 1]")


def _build(cls, data: Any, where: str):
    if not isinstance(data, dict):
        raise UsageError(f"{where} must be a mapping")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise UsageError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
    try:
        return cls(**data)
    except TypeError as e:
        missing = str(e).split("argument", 1)[-1].strip(": ")
        raise UsageError(f"{where}: missing required key {missing}") from None
