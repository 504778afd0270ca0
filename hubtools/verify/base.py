"""The verify stage's one interface: (Query, answer text) -> Score in [0, 1] with details.

A `Verifier` is a plain, picklable object whose `verify` runs in worker
processes (Math-Verify's timeouts use signals, model code runs in
subprocesses), so one stage can use every core. Verifiers that wait on the
network (LLM judges) implement `averify` instead and run on the event loop.
The stage wraps a Score into a `records.Verdict` for the run store.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from hubtools.errors import UsageError
from hubtools.records import Category, Query, Verdict


@dataclass(frozen=True, slots=True)
class Score:
    """A verifier's judgement of one answer; `details` say why (JSON-ready)."""

    value: float
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not (isinstance(self.value, int | float) and math.isfinite(self.value)):
            raise ValueError(f"score must be a finite number, got {self.value!r}")
        if not 0.0 <= self.value <= 1.0:
            raise ValueError(f"score must be in [0, 1], got {self.value}")

    def verdict(self, query_id: str, teacher: str, attempt: int, verifier: str) -> Verdict:
        return Verdict(query_id=query_id, teacher=teacher, attempt=attempt, verifier=verifier,
                       score=float(self.value), details=self.details)  # fmt: skip


@dataclass(slots=True)
class JudgeConfig:
    """An LLM judge behind an OpenAI-style /v1/chat/completions endpoint."""

    endpoint: str
    model: str
    api_key_env: str | None = None  # env var holding the endpoint's own key; never HF_TOKEN
    max_concurrency: int = 32
    timeout_s: float = 300.0
    temperature: float = 0.0
    max_tokens: int = 1024


@dataclass(slots=True)
class SandboxConfig:
    """Limits for running model-written code (see verify/code)."""

    allow_unsandboxed: bool = False  # refuse to run code without bubblewrap unless opted in
    timeout_s: float = 10.0  # wall clock per test run
    cpu_s: int = 10
    memory_mb: int = 1024
    max_tests: int = 10


@dataclass(slots=True)
class VerifyConfig:
    """Per-run verification settings (the `verify:` section of run.yaml)."""

    math_timeout_s: int = 5
    code: SandboxConfig = field(default_factory=SandboxConfig)
    judge: JudgeConfig | None = None  # chat and general; science free-form when set
    workers: int | None = None  # process pool size; default: every core

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> VerifyConfig:
        data = dict(data or {})
        try:
            code = SandboxConfig(**(data.pop("code", None) or {}))
            judge = data.pop("judge", None)
            return cls(code=code, judge=JudgeConfig(**judge) if judge else None, **data)
        except TypeError as e:
            raise UsageError(f"invalid verify config: {e}") from None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Verifier(ABC):
    """Scores answers of one or more categories."""

    name: ClassVar[str]  # recorded as Verdict.verifier, e.g. "math-verify"

    @abstractmethod
    def verify(self, query: Query, answer: str) -> Score:
        """Score `answer` (the teacher's final answer, think part removed) for `query`."""

    async def averify(self, query: Query, answer: str) -> Score:
        """Async entry point; network-bound verifiers override it, others never block here."""
        raise NotImplementedError(f"{self.name} runs in worker processes: use verify()")

    @property
    def is_async(self) -> bool:
        return type(self).averify is not Verifier.averify


_REGISTRY: dict[Category, Callable[[VerifyConfig], Verifier]] = {}


def register(*categories: Category) -> Callable:
    """Class decorator: the verifier for these categories, built from a VerifyConfig."""

    def wrap(factory: Callable[[VerifyConfig], Verifier]):
        for category in categories:
            _REGISTRY[Category(category)] = factory
        return factory

    return wrap


def verifier_for(category: Category | str, config: VerifyConfig | None = None) -> Verifier:
    """The verifier registered for a category, configured for this run."""
    import hubtools.verify.registry  # noqa: F401  (imports every verifier, filling _REGISTRY)

    category = Category.parse(category)
    if category not in _REGISTRY:
        raise UsageError(f"no verifier registered for category '{category.value}'")
    return _REGISTRY[category](config or VerifyConfig())
