"""Benchmark rows from the Hub as queries: the prompt, the reference and the verifier's inputs.

The Hub ids, configs and splits are ``queries clean``'s table
(``hubtools.queries.decontaminate.KNOWN_BENCHMARKS``), read with ``datasets.load_dataset``
at one commit, recorded, so a resumed or extended eval reads the same problems.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from hubtools.errors import DataSourceError
from hubtools.records import Category, Query

CATEGORY = {
    "aime_2024": Category.MATH, "aime_2025": Category.MATH, "math500": Category.MATH,
    "livecodebench": Category.CODE, "gpqa_diamond": Category.SCIENCE, "ifeval": Category.IF,
}  # fmt: skip
# The problem's own id where the dataset has one; else its row number.
_ID_FIELDS = ("unique_id", "id", "question_id", "key", "Record ID")


@dataclass(slots=True)
class LoadedBenchmark:
    """One benchmark's problems as queries, read at ``revision``."""

    name: str
    dataset: str
    revision: str
    split: str
    queries: list[Query] = field(default_factory=list)


def spec_of(name: str) -> Any:
    from hubtools.queries.decontaminate import KNOWN_BENCHMARKS

    return KNOWN_BENCHMARKS[name]


def load(name: str, *, revision: str | None, suffix: str | None, limit: int | None):
    """The first ``limit`` problems of benchmark ``name`` at ``revision`` (default: now)."""
    from hubtools.queries.hubdata import open_spec, resolve_commit

    spec = spec_of(name)
    what = f"benchmark {name}"
    commit = revision or resolve_commit(spec.repo, spec.revision, what)
    rows = open_spec(spec, commit=commit, what=what)
    loaded = LoadedBenchmark(name, spec.repo, commit, spec.split)
    try:
        for query in _queries(name, rows, suffix):
            loaded.queries.append(query)
            if limit is not None and len(loaded.queries) >= limit:
                break
    except DataSourceError:
        raise
    except (KeyError, TypeError, ValueError) as err:
        raise DataSourceError(
            f"{what}: {spec.repo} has a row hubtools cannot read ({err})"
        ) from None
    except Exception as err:  # datasets' own errors while streaming: the data cannot be read
        raise DataSourceError(f"{what}: cannot read {spec.repo} ({err})") from None
    if not loaded.queries:
        raise DataSourceError(f"{what}: {spec.repo}@{commit[:12]} holds no problems")
    return loaded


def _queries(name: str, rows, suffix: str | None) -> Iterator[Query]:
    build = {"livecodebench": _lcb, "gpqa_diamond": _gpqa, "ifeval": _ifeval}.get(name, _math)
    for index, row in enumerate(rows):
        made = build(row)
        if made is None:  # outside LiveCodeBench's window
            continue
        prompt, extra = made
        if suffix:
            prompt = f"{prompt}\n{suffix}"
        problem_id = next((str(row[k]) for k in _ID_FIELDS if row.get(k) is not None), None)
        meta = {"benchmark": name, "problem_id": problem_id or str(index), "row": index}
        yield Query.from_prompt(prompt, source=name, category=CATEGORY[name], meta=meta, **extra)


def _math(row: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    answer = row["answer"]
    if not isinstance(answer, str):  # some copies store AIME answers as numbers
        answer = str(int(answer)) if float(answer).is_integer() else str(answer)
    return row["problem"], {"reference": answer}


def _gpqa(row: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The four options in an order fixed by the record (no answer always at A), letters A-D."""
    right = row["Correct Answer"].strip()
    options = [right] + [row[f"Incorrect Answer {i}"].strip() for i in (1, 2, 3)]
    seed = str(row.get("Record ID") or row["Question"])
    random.Random(seed).shuffle(options)
    letters = "ABCD"
    lines = "\n".join(f"{letter}) {text}" for letter, text in zip(letters, options, strict=True))
    prompt = f"{row['Question'].strip()}\n\n{lines}"
    return prompt, {"reference": letters[options.index(right)]}


def _ifeval(row: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    kwargs = []
    for item in row["kwargs"]:
        if isinstance(item, str):  # some copies keep each kwargs object as JSON text
            item = json.loads(item) if item.strip() else {}
        kwargs.append({k: v for k, v in (item or {}).items() if v is not None})
    constraints = {"instruction_id_list": list(row["instruction_id_list"]), "kwargs": kwargs}
    return row["prompt"], {"constraints": constraints}


def _lcb(row: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """LiveCodeBench's own prompt and every test case; None outside the paper's window."""
    from hubtools.eval.livecodebench import in_window, lcb_prompt, lcb_tests

    if row.get("contest_date") and not in_window(row):
        return None
    return lcb_prompt(row), {"tests": lcb_tests(row)}
