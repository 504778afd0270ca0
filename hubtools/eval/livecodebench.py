"""LiveCodeBench rows (``livecodebench/code_generation_lite``) as hubtools code queries.

A row holds ``public_test_cases`` (a JSON string of ``[{input, output, testtype}]``) and
``private_test_cases``: the same list as a JSON string, pickled, zlib-compressed and
base64-encoded (older rows hold the JSON string itself). ``testtype`` is ``stdin``
(whole programs, Codeforces/AtCoder) or ``functional`` (LeetCode: each input line is
one JSON argument of ``metadata["func_name"]``, the output one JSON value).

Safety. ``pickle.loads`` on downloaded data runs whatever the pickle names. The
payload here is a plain ``str``, which pickles without a single global, so
``_StrOnlyUnpickler.find_class`` refuses *every* global (and with it REDUCE, INST,
OBJ, NEWOBJ and the copyreg extensions, which all need one) and the result must be
a ``str``: a hostile row fails to decode instead of running code. The decompressed
size is capped as well (a zlib bomb fails too).

Grading follows LiveCodeBench's own runner: stdin cases compare standard output
line by line (hubtools' comparison: whitespace tokens, decimals within 1e-6);
functional cases call ``Solution().func_name(*args)`` on a fresh instance and compare
with ``==`` after turning a returned tuple into a list, as ``lcb_runner`` does. A
sample passes a problem only when every case passes (score 1.0): the eval must run
all of them, so LiveCodeBench queries are verified with ``SandboxConfig(max_tests=
ALL_TESTS)``, not the verify stage's default of 10 (``max_tests_for`` counts a row's).
"""

from __future__ import annotations

import base64
import io
import json
import pickle
import zlib
from datetime import date, datetime
from typing import Any

from hubtools.records import Category, Query

DATASET = "livecodebench/code_generation_lite"
RELEASE = "release_v5"
# The paper's window, "v5, 2024-10 to 2025-02", in LiveCodeBench's own convention: both
# ends are month starts and the end is excluded (2024-10-01 <= contest_date < 2025-02-01).
# That end is release_v5's: the repo's newer files (test6.jsonl, read by the test*.jsonl
# pattern) hold only later contests, so the window also keeps the problems to v5's.
WINDOW = ("2024-10", "2025-02")
ALL_TESTS = 1_000_000  # SandboxConfig.max_tests that runs every case of any problem
MAX_DECODED_BYTES = 1 << 30  # the largest v5 private test set is ~100 MB decoded

# LiveCodeBench's prompt for reasoning models (lcb_runner/prompts/code_generation.py;
# the same text as the prompts QwQ and DeepSeek-R1 were evaluated with).
INSTRUCTION = (
    "You will be given a question (problem specification) and will generate a correct "
    "Python program that matches the specification and passes all tests."
)
FORMAT_WITH_STARTER = (
    "You will use the following starter code to write the solution to the problem and "
    "enclose your code within delimiters."
)
FORMAT_STDIN = (
    "Read the inputs from stdin solve the problem and write the answer to stdout (do not "
    "directly test on the sample inputs). Enclose your code within delimiters as follows. "
    "Ensure that when the python program runs, it reads the inputs, runs the algorithm and "
    "writes output to STDOUT."
)


class UnsafePickleError(ValueError):
    """A private-test payload that is not a plain pickled string."""


class _StrOnlyUnpickler(pickle.Unpickler):
    """Loads pickles that name no global at all: the only kind a pickled ``str`` is."""

    def find_class(self, module: str, name: str) -> Any:
        raise UnsafePickleError(
            f"refusing to unpickle {module}.{name}: LiveCodeBench's private tests are a "
            "pickled string and need no global"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("refusing a persistent id in LiveCodeBench's private tests")


def decode_private(blob: str, *, max_bytes: int = MAX_DECODED_BYTES) -> list[dict[str, Any]]:
    """The private test cases of a row, decoded without executing anything."""
    if not blob:
        return []
    try:
        return _case_list(json.loads(blob))  # some rows hold the JSON itself
    except ValueError:
        pass
    try:
        packed = base64.b64decode(blob.encode("ascii"), validate=False)
        inflater = zlib.decompressobj()
        raw = inflater.decompress(packed, max_bytes)
    except (ValueError, zlib.error) as e:
        raise ValueError(f"private tests are not base64 of zlib data: {e}") from None
    if inflater.unconsumed_tail:
        raise UnsafePickleError(f"private tests decompress to more than {max_bytes} bytes")
    try:
        text = _StrOnlyUnpickler(io.BytesIO(raw)).load()
    except UnsafePickleError:
        raise
    except Exception as e:  # a truncated or garbled pickle: refuse it the same way
        raise UnsafePickleError(f"private tests are not a pickled string: {e}") from None
    if not isinstance(text, str):
        raise UnsafePickleError(f"private tests unpickle to {type(text).__name__}, not a str")
    return _case_list(json.loads(text))


def _case_list(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(
        isinstance(c, dict) and "input" in c and "output" in c for c in value
    ):
        raise ValueError("test cases must be a list of {input, output, testtype} objects")
    return value


def _json_field(row: dict[str, Any], key: str, default: Any) -> Any:
    value = row.get(key)
    if value is None or value == "":
        return default
    return json.loads(value) if isinstance(value, str) else value


def row_cases(row: dict[str, Any]) -> list[dict[str, Any]]:
    """Public then private cases of a row, as LiveCodeBench grades them."""
    return _case_list(_json_field(row, "public_test_cases", [])) + decode_private(
        row.get("private_test_cases") or ""
    )


def func_name(row: dict[str, Any]) -> str | None:
    return _json_field(row, "metadata", {}).get("func_name")


def lcb_tests(row: dict[str, Any]) -> list[dict[str, Any]]:
    """The row's cases in hubtools' test format (README, `code` queries).

    stdin cases become ``{"input", "output"}`` objects; functional cases become one
    ``{"check", "entry_point": "Solution().NAME", "prelude": "leetcode"}`` object whose
    every assert is one case.
    """
    cases = row_cases(row)
    tests: list[dict[str, Any]] = []
    functional = [c for c in cases if c.get("testtype") == "functional"]
    for case in cases:
        if case.get("testtype", "stdin") == "stdin":
            tests.append({"input": case["input"], "output": case["output"]})
    if functional:
        name = func_name(row)
        if not name:
            raise ValueError(f"{row.get('question_id')}: functional tests but no func_name")
        tests.append(_check_test(name, functional))
    return tests


_EQUAL = """\
def _lcb_equal(got, want):
    if isinstance(got, tuple):
        got = list(got)
    return got == want
"""


def _check_test(name: str, cases: list[dict[str, Any]]) -> dict[str, Any]:
    lines = [_EQUAL, "def check(candidate):"]
    for case in cases:
        args = [json.loads(line) for line in case["input"].split("\n") if line.strip()]
        want = json.loads(case["output"])
        lines.append(f"    assert _lcb_equal(candidate(*{args!r}), {want!r})")
    return {"check": "\n".join(lines) + "\n", "entry_point": f"Solution().{name}",
            "prelude": "leetcode"}  # fmt: skip


def max_tests_for(tests: list[dict[str, Any]]) -> int:
    """How many cases the verifier must run to grade the problem as LiveCodeBench does."""
    from hubtools.verify.code.formats import suite_from_tests

    return len(suite_from_tests(tests))


def lcb_prompt(row: dict[str, Any]) -> str:
    """LiveCodeBench's official prompt: stdin programs, or the starter code to complete."""
    starter = row.get("starter_code") or ""
    head = f"{INSTRUCTION}\n\nQuestion: {row['question_content']}\n\n"
    if starter:
        return f"{head}{FORMAT_WITH_STARTER}\n```python\n{starter}\n```\n\n"
    return f"{head}{FORMAT_STDIN}\n```python\n# YOUR CODE HERE\n```\n\n"


def _month_start(month: str) -> date:
    return datetime.strptime(month, "%Y-%m").date().replace(day=1)


def in_window(row: dict[str, Any], window: tuple[str, str] = WINDOW) -> bool:
    """Whether the row's ``contest_date`` is in ``window``: from its first month's start up to
    (not including) its second month's start, as LiveCodeBench's time windows are given."""
    start, end = _month_start(window[0]), _month_start(window[1])
    stamp = row["contest_date"]
    day = stamp.date() if isinstance(stamp, datetime) else date.fromisoformat(str(stamp)[:10])
    return start <= day < end


def lcb_query(row: dict[str, Any], *, system_prompt: str | None = None) -> Query:
    """A code query for one row: the official prompt, every test case, the row's ids."""
    messages = [{"role": "user", "content": lcb_prompt(row)}]
    if system_prompt:
        messages.insert(0, {"role": "system", "content": system_prompt})
    meta = {
        "language": "python", "problem_id": row["question_id"],
        "platform": row.get("platform"), "difficulty": row.get("difficulty"),
        "contest_date": str(row.get("contest_date")),
    }  # fmt: skip
    return Query.from_prompt(messages, source=DATASET, category=Category.CODE,
                             tests=lcb_tests(row), meta=meta)  # fmt: skip
