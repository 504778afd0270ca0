"""The verify stage: a 0..1 score for every answer, one verifier per category.

``verify`` (the CLI verb's function) and ``VerifyPool`` load on first use, so that
importing the interface stays cheap for the stages that only need ``Score``.
"""

from __future__ import annotations

from typing import Any

from hubtools.verify.base import (
    JudgeConfig,
    SandboxConfig,
    Score,
    Verifier,
    VerifyConfig,
    register,
    verifier_for,
)

__all__ = [
    "JudgeConfig",
    "SandboxConfig",
    "Score",
    "Verifier",
    "VerifyConfig",
    "VerifyPool",
    "VerifyResult",
    "register",
    "verifier_for",
    "verify",
]


def __getattr__(name: str) -> Any:
    if name in ("verify", "VerifyResult"):
        from hubtools.verify import stage

        return getattr(stage, name)
    if name == "VerifyPool":
        from hubtools.verify.pool import VerifyPool

        return VerifyPool
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
