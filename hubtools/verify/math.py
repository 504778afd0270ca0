"""Math answers: Math-Verify on a strictly extracted final answer; binary score.

The reference is parsed first, as Math-Verify recommends: wrapped in ``$...$`` (LaTeX
is only recognised inside delimiters; a bare ``\\sqrt{51}`` parses to nothing),
falling back to ``\\boxed{...}``, then to the bare text. Parsed references are cached
per worker, since every teacher's every attempt at a query shares one.

The answer side is stricter than Math-Verify's own extraction (see ``extract.py``):
only ``\\boxed{...}`` or an explicit final-answer statement counts, and several
*different* boxed answers are hedging and score 0 (the same value boxed twice, even
written differently, is fine).

Threads. Math-Verify bounds every parse and comparison with ``signal.alarm`` (integer
seconds), which only works in a process's main thread. ``verify`` therefore refuses to
run in any other thread, loudly, rather than silently running without a timeout
(a pathological expression can keep sympy busy for hours). Call it from worker
processes through ``hubtools.verify.pool`` (``VerifyPool.verify_async`` from asyncio).

Behaviour on Math-Verify's known pitfalls, pinned by tests/test_verify_math.py:
percentages (``10\\%`` equals ``10`` and ``0.1``), rounding (floats are compared after
rounding to 6 decimals, so ``0.333333`` equals ``\\frac13``), equations (``x=5`` equals
``5``), units in ``\\text{}`` are dropped, and an open interval ``(1,2)`` is not the
point ``(1,2)`` unless written the same way.
"""

from __future__ import annotations

import functools
import re
import threading
import time
from typing import Any

from hubtools.errors import UsageError
from hubtools.records import Category, Query
from hubtools.verify.base import Score, Verifier, VerifyConfig, register
from hubtools.verify.extract import boxed, stated_answer

_MAX_SHOWN = 200  # characters of an extracted answer kept in details
# LaTeX already inside math delimiters (an escaped \$ is a dollar sign, not a delimiter).
_DELIMITED = re.compile(r"(?<!\\)\$|\\\(|\\\[|\\boxed")


class MathThreadError(RuntimeError):
    """Math-Verify's signal-based timeouts need the main thread of a process."""


def require_main_thread() -> None:
    if threading.current_thread() is not threading.main_thread():
        raise MathThreadError(
            "math verification needs the main thread of a process (Math-Verify times out "
            "with SIGALRM); run it through hubtools.verify.pool.VerifyPool, not in a thread"
        )


@functools.cache
def _mv() -> Any:
    """Math-Verify, imported on first use (it pulls in sympy and the ANTLR LaTeX parser)."""
    import math_verify

    return math_verify


def _extraction_config() -> list[Any]:
    mv = _mv()
    return [mv.LatexExtractionConfig(), mv.ExprExtractionConfig()]


@functools.lru_cache(maxsize=4096)
def parse_reference(reference: str, timeout_s: int) -> tuple[Any, ...]:
    """The reference as Math-Verify values: ``$ref$`` first, then ``\\boxed{ref}``, then bare."""
    mv = _mv()
    reference = reference.strip()
    if _DELIMITED.search(reference):
        forms = [reference]
    else:
        forms = [f"${reference}$", f"\\boxed{{{reference}}}", reference]
    for form in forms:
        parsed = mv.parse(form, extraction_config=_extraction_config(), parsing_timeout=timeout_s)
        if parsed:
            return tuple(parsed)
    return ()


def parse_answer(value: str, timeout_s: int) -> list[Any]:
    """An extracted answer string as Math-Verify values (LaTeX and plain expressions)."""
    mv = _mv()
    if _DELIMITED.search(value):
        text = value
    else:
        text = f"${value}$"
    parsed = mv.parse(text, extraction_config=_extraction_config(), parsing_timeout=timeout_s)
    if not parsed:
        parsed = mv.parse(
            f"\\boxed{{{value}}}", extraction_config=_extraction_config(), parsing_timeout=timeout_s
        )
    return parsed


def equivalent(gold: Any, target: Any, timeout_s: int) -> bool:
    return bool(_mv().verify(list(gold), list(target), timeout_seconds=timeout_s))


def check_math(reference: str, answer: str, timeout_s: int) -> Score:
    """Score ``answer`` against ``reference``: 1.0 if its final answer is equivalent, else 0.0."""
    require_main_thread()
    gold = parse_reference(reference, timeout_s)
    if not gold:
        return Score(0.0, {"error": f"cannot parse the reference {reference[:_MAX_SHOWN]!r}"})
    boxes = boxed(answer)
    if boxes:
        form, candidates = "boxed", boxes
    elif (statement := stated_answer(answer)) is not None:
        form, candidates = "statement", [statement]
    else:
        return Score(
            0.0,
            {"reason": "no final answer: box it (\\boxed{...}) or state 'The final answer is ...'"},
        )
    values = [parse_answer(c, timeout_s) for c in _distinct(candidates)]
    details: dict[str, Any] = {"form": form, "extracted": candidates[-1][:_MAX_SHOWN]}
    if len(values) > 1:
        first = values[0]
        if not all(v and first and equivalent(first, v, timeout_s) for v in values[1:]):
            details["reason"] = "hedging: several different boxed answers"
            details["boxed"] = [c[:_MAX_SHOWN] for c in _distinct(candidates)]
            return Score(0.0, details)
    target = values[-1]
    if not target:
        details["reason"] = "the final answer does not parse as math"
        return Score(0.0, details)
    details["parsed"] = str(target[0])[:_MAX_SHOWN]
    started = time.monotonic()
    correct = equivalent(gold, target, timeout_s)
    if not correct:
        timed_out = time.monotonic() - started >= timeout_s  # Math-Verify says False on timeout
        details["reason"] = (
            f"comparison timed out after {timeout_s}s" if timed_out
            else "not equivalent to the reference"
        )  # fmt: skip
    return Score(1.0 if correct else 0.0, details)


def _distinct(items: list[str]) -> list[str]:
    return list(dict.fromkeys(" ".join(item.split()) for item in items))


@register(Category.MATH)
class MathVerifier(Verifier):
    """Binary correctness against the reference with Math-Verify (the paper's math verifier)."""

    name = "math-verify"

    def __init__(self, config: VerifyConfig):
        timeout = config.math_timeout_s
        if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 1:
            raise UsageError(
                f"verify.math_timeout_s must be a whole number of seconds >= 1, got {timeout!r} "
                "(Math-Verify's timeouts use signal.alarm)"
            )
        self.timeout_s = timeout

    def verify(self, query: Query, answer: str) -> Score:
        if query.reference is None:
            return Score(0.0, {"error": "the query has no reference answer to verify against"})
        return check_math(query.reference, answer, self.timeout_s)
