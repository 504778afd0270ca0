"""What a card reports: the funnel from queries to rows, and statistics of the rows.

Length statistics keep one number per row (an ``array`` of ints, 8 bytes a row), never
the rows, so a build of millions of rows stays small. Token counts are what the teacher
reported (``completion_tokens``); rows whose teacher reported none are counted apart.
"""

from __future__ import annotations

import json
import sqlite3
from array import array
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hubtools.errors import RunStoreError

FUNNEL_FILE = "funnel.json"


def _summary(values: array) -> dict[str, float] | None:
    if not len(values):
        return None
    data = np.frombuffer(values, dtype=np.float64 if values.typecode == "d" else np.int64)
    p10, p50, p90 = np.percentile(data, [10, 50, 90])
    return {
        "mean": float(data.mean()),
        "p10": float(p10),
        "median": float(p50),
        "p90": float(p90),
        "max": float(data.max()),
    }


@dataclass
class CategoryStats:
    rows: int = 0
    tokens: array = field(default_factory=lambda: array("q"))
    chars: array = field(default_factory=lambda: array("q"))
    ppl: array = field(default_factory=lambda: array("d"))

    def add(self, completion_tokens: int | None, chars: int, ppl: float | None) -> None:
        self.rows += 1
        self.chars.append(chars)
        if completion_tokens is not None:
            self.tokens.append(completion_tokens)
        if ppl is not None:
            self.ppl.append(ppl)

    def merged(self, other: CategoryStats) -> CategoryStats:
        return CategoryStats(
            self.rows + other.rows,
            self.tokens + other.tokens,
            self.chars + other.chars,
            self.ppl + other.ppl,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "tokens": int(sum(self.tokens)),
            "rows_with_tokens": len(self.tokens),
            "completion_tokens": _summary(self.tokens),
            "response_chars": _summary(self.chars),
            "ppl": _summary(self.ppl),
        }


@dataclass
class Funnel:
    """Queries in, removed by each cleaning filter, attempts, and passes per category."""

    queries_in: int | None
    filters: list[dict[str, Any]] | None  # [{"name", "removed"}], None when not recorded
    queries: dict[str, int]  # the run's query set, by category
    attempted: dict[str, int] = field(default_factory=dict)  # queries the teacher answered
    attempts: dict[str, int] = field(default_factory=dict)
    passed: dict[str, int] = field(default_factory=dict)
    kept: dict[str, int] = field(default_factory=dict)  # rows released (after --parallel)
    verifiers: dict[str, dict[str, int]] = field(default_factory=dict)
    quality: dict[str, Any] = field(default_factory=dict)  # ReleaseFilters.summary()
    scoring: dict[str, Any] = field(default_factory=dict)  # where ppl and token counts came from

    def pass_rate(self, category: str) -> float | None:
        attempted = self.attempted.get(category, 0)
        return self.passed.get(category, 0) / attempted if attempted else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_funnel_file(run_path: Path) -> tuple[int | None, list[dict[str, Any]] | None]:
    """``funnel.json`` as the queries stage records it (see README, "Release")."""
    path = run_path / FUNNEL_FILE
    if not path.exists():
        return None, None
    try:
        data = json.loads(path.read_text())
        filters = [{"name": str(f["name"]), "removed": int(f["removed"])} for f in data["filters"]]
        return int(data["queries_in"]), filters
    except (ValueError, KeyError, TypeError) as err:
        raise RunStoreError(
            f"{path} is not a funnel file ({type(err).__name__}: {err}); expected "
            '{"queries_in": N, "filters": [{"name": ..., "removed": N}, ...]}'
        ) from None


def teacher_funnel(
    store_path: Path, index_path: Path, teacher: str, threshold: float, queries: dict[str, int]
) -> dict[str, dict[str, Any]]:
    """Per category: queries attempted, attempts, queries passed, verifiers of the passes."""
    conn = sqlite3.connect(f"file:{store_path}?mode=ro", uri=True)
    try:
        conn.execute("ATTACH DATABASE ? AS idx", (str(index_path),))
        attempted, attempts = {}, {}
        for category, n_queries, n_attempts in conn.execute(
            "SELECT q.category, COUNT(DISTINCT a.query_id), COUNT(*) FROM attempts a"
            " JOIN idx.queries q USING (query_id) WHERE a.teacher = ? GROUP BY q.category",
            (teacher,),
        ):
            attempted[category], attempts[category] = n_queries, n_attempts
        passed: dict[str, int] = {}
        verifiers: dict[str, dict[str, int]] = {}
        for category, verifier, count in conn.execute(
            "SELECT q.category, v.verifier, COUNT(*) FROM verdicts v"
            " JOIN (SELECT query_id, MIN(attempt) AS attempt FROM verdicts"
            "       WHERE teacher = ? AND score >= ? GROUP BY query_id) f"
            "   ON v.query_id = f.query_id AND v.attempt = f.attempt AND v.teacher = ?"
            " JOIN idx.queries q ON q.query_id = v.query_id GROUP BY q.category, v.verifier",
            (teacher, threshold, teacher),
        ):
            passed[category] = passed.get(category, 0) + count
            verifiers.setdefault(category, {})[verifier] = count
    finally:
        conn.close()
    return {"attempted": attempted, "attempts": attempts, "passed": passed, "verifiers": verifiers}


VERIFIER_DESCRIPTIONS = {
    "math-verify": "Math-Verify equivalence of the final answer with the reference (1 or 0)",
    "code-sandbox": "the program run against the query's tests in a bubblewrap sandbox "
    "(share of tests passed)",
    "science": "option letter or number match, or an LLM judge for free-form references",
    "ifeval": "Google's IFEval checkers on the query's constraints (share followed, strict)",
    "llm-judge": "an LLM judge rating coherence, correctness and helpfulness (mean / 10)",
    "imported": "the score given with the answer in the imported file",
}


def describe_verifier(name: str) -> str:
    return VERIFIER_DESCRIPTIONS.get(name, name)


def size_category(rows: int) -> str:
    """The Hub's ``size_categories`` bucket for a row count."""
    bounds = [
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
        (10_000_000, "1M<n<10M"),
        (100_000_000, "10M<n<100M"),
    ]
    for bound, name in bounds:
        if rows < bound:
            return name
    return "100M<n<1B"
