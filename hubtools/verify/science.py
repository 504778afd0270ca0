"""Science answers: multiple-choice letters, numeric answers, and free-form references.

The reference decides the check:

- a single option letter (``"C"``, ``"(C)"``): the letter the answer gives, found as
  ``\\boxed{C}`` (or the option with its text: ``\\boxed{\\text{(C) Plane}}``), "Answer: C",
  "The correct option is C", or an answer that is just ``C`` / ``(C)`` / ``(C) Plane``;
  two different letters in the same form are hedging and score 0;
- a short numeric or LaTeX expression (``"6.02 \\times 10^{23}"``, ``"\\frac{3}{4}"``):
  the math path (``math.py``: Math-Verify, strict extraction);
- anything else is free-form: with ``verify.judge`` configured, an LLM judge rates
  agreement with the reference (the paper's "similarity judged by an LLM"); without one,
  only a normalised exact match counts, and the details say so.
"""

from __future__ import annotations

import re
import string
from typing import Any

from hubtools.records import Category, Query
from hubtools.verify.base import Score, Verifier, VerifyConfig, register
from hubtools.verify.extract import choice_letters, stated_answer
from hubtools.verify.judge import REFERENCE, JudgeVerifier
from hubtools.verify.math import check_math

_CHOICE = re.compile(r"\s*\(?\s*(?P<letter>[A-J])\s*\)?\.?\s*", re.IGNORECASE)
_MATHY = re.compile(r"\d|\\[a-zA-Z]+")


def reference_kind(reference: str) -> str:
    """``"choice"``, ``"math"`` or ``"free"`` (see the module docstring)."""
    if _CHOICE.fullmatch(reference):
        return "choice"
    if len(reference.split()) <= 3 and _MATHY.search(reference):
        return "math"
    return "free"


def check_choice(reference: str, answer: str) -> Score:
    match = _CHOICE.fullmatch(reference)
    assert match is not None
    gold = match.group("letter").upper()
    letters = choice_letters(answer)
    details: dict[str, Any] = {"kind": "choice", "reference": gold}
    if not letters:
        details["reason"] = "no option letter found (box it or write 'Answer: X')"
        return Score(0.0, details)
    if len(letters) > 1:
        details.update(reason="hedging: several different options", extracted=letters)
        return Score(0.0, details)
    details["extracted"] = letters[0]
    return Score(1.0 if letters[0] == gold else 0.0, details)


def _normalise(text: str) -> str:
    text = text.casefold().translate(str.maketrans("", "", string.punctuation))
    return " ".join(text.split())


@register(Category.SCIENCE)
class ScienceVerifier(Verifier):
    """Letters and numbers are checked in worker processes; free-form goes to the judge."""

    name = "science"

    def __init__(self, config: VerifyConfig):
        self.timeout_s = config.math_timeout_s
        self.judge = JudgeVerifier(config, REFERENCE) if config.judge is not None else None

    def is_async_for(self, query: Query) -> bool:
        """Whether this query's check runs on the event loop (the judge) or in a worker."""
        return (
            self.judge is not None
            and query.reference is not None
            and reference_kind(query.reference) == "free"
        )

    def verify(self, query: Query, answer: str) -> Score:
        if query.reference is None:
            return Score(0.0, {"error": "the query has no reference answer to verify against"})
        kind = reference_kind(query.reference)
        if kind == "choice":
            return check_choice(query.reference, answer)
        if kind == "math":
            score = check_math(query.reference, answer, self.timeout_s)
            return Score(score.value, {"kind": "math", **score.details})
        if self.judge is not None:
            return self.judge.verify(query, answer)
        stated = stated_answer(answer) or answer
        same = _normalise(stated) == _normalise(query.reference)
        details = {"kind": "free", "reason": "no judge configured (verify.judge): exact match only"}
        return Score(1.0 if same else 0.0, details)

    async def averify(self, query: Query, answer: str) -> Score:
        if self.judge is None or not self.is_async_for(query):
            return self.verify(query, answer)
        score = await self.judge.averify(query, answer)
        return Score(score.value, {"kind": "free", **score.details})

    async def aclose(self) -> None:
        if self.judge is not None:
            await self.judge.aclose()
