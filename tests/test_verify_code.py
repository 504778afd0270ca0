"""The code verifier on real data: every test format's reference solutions pass, corruptions fail.

Data: ../shared/data/code (skipped where absent). Answers are verified in a real
process pool, as the verify stage runs them. The sandbox's own guarantees are
in test_sandbox_hostile.py; extraction and format details in test_verify_code_units.py.
"""

from __future__ import annotations

import ast
import json
import re
from concurrent.futures import ProcessPoolExecutor

import pytest
from conftest import shared_path
from verify_code_refs import (
    CODE_CONTESTS_CPP,
    CODE_CONTESTS_PY,
    CODEFORCES_CPP,
    CODEFORCES_PY,
    KODCODE_STYLE,
)

from hubtools.records import Category, Query
from hubtools.verify.base import _REGISTRY, SandboxConfig, Score, VerifyConfig
from hubtools.verify.code import CodeVerifier
from hubtools.verify.code.sources import load_queries, query_from_record, read_records

SAMPLE = 20
FUNCTION_FILES = [
    "humaneval/HumanEval.jsonl.gz",
    "prime/new_mbpp.json",
    "deepcoder/test_code_leetcode.json",
]
VERIFIER = CodeVerifier()

_NO_SANDBOX = VERIFIER.sandbox.unavailable_reason()
pytestmark = pytest.mark.skipif(
    _NO_SANDBOX is not None,
    reason=f"model code runs only in the sandbox: {_NO_SANDBOX} (apt-get install bubblewrap)",
)


def answer(code: str, language: str = "python") -> str:
    return f"Here is my solution.\n\n```{language}\n{code.strip()}\n```\n"


def _verify(pair: tuple[Query, str]) -> Score:
    return VERIFIER.verify(*pair)


@pytest.fixture(scope="module")
def pool():
    with ProcessPoolExecutor(max_workers=2) as executor:
        yield executor


def verify_many(pool, pairs: list[tuple[Query, str]]) -> list[Score]:
    return list(pool.map(_verify, pairs))


def sample(items: list, n: int = SAMPLE) -> list:
    step = max(1, len(items) // n)
    return items[::step][:n]


def gutted(program: str) -> str:
    """Every function returns None: a wrong program that still loads."""
    tree = ast.parse(program)
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            node.body = [ast.Return(ast.Constant(None))]
    return ast.unparse(tree)


def off_by_one(program: str) -> str:
    """The reference's output with its first number increased (or a stray line when none)."""
    return f"""
import contextlib, io, re, sys
buf = io.StringIO()
with contextlib.redirect_stdout(buf):
    exec(compile({program!r}, "reference", "exec"), {{"__name__": "__main__"}})
out = buf.getvalue()
changed = re.sub(r"-?\\d+", lambda m: str(int(m.group()) + 1), out, count=1)
sys.stdout.write(changed if changed != out else out + "\\nextra\\n")
"""


def queries(path: str, language: str = "python") -> list[Query]:
    return load_queries(shared_path("data", "code", *path.split("/")), language=language)


def failing(score: Score) -> list[dict]:
    return [t for t in score.details.get("tests", []) if t["status"] != "pass"]


# --- every reference solution passes its own tests ------------------------------------------


def _check_references(pool, qs: list[Query]) -> None:
    scores = verify_many(pool, [(q, answer(q.reference)) for q in qs])
    bad = [(q.meta.get("task_id"), s.details.get("error"), failing(s)[:1])
           for q, s in zip(qs, scores, strict=True) if s.value != 1.0]  # fmt: skip
    assert not bad


@pytest.mark.parametrize("path", FUNCTION_FILES)
def test_references_pass(pool, path):
    _check_references(pool, sample(queries(path)))


@pytest.mark.slow
@pytest.mark.parametrize("path", FUNCTION_FILES)
def test_every_reference_passes(pool, path):
    _check_references(pool, queries(path))


def leetcode_with_references() -> list[Query]:
    """PRIME's leetcode-test has no solutions; DeepCoder's LeetCode solves 74 of its problems."""
    solved: dict[str, list[dict]] = {}
    for record in read_records(shared_path("data", "code", "deepcoder", "test_code_leetcode.json")):
        for method in re.findall(r"def (\w+)\(\s*self", record["solutions"]):
            solved.setdefault(method, []).append(record)
    words = lambda s: " ".join(re.sub(r"[^a-z0-9]+", " ", s.lower()).split())  # noqa: E731
    matched = []
    for record in read_records(shared_path("data", "code", "prime", "leetcode-test.jsonl")):
        method = re.search(r"my_solution\.(\w+)\(", record["test"]).group(1)
        statement = words(record["prompt_sft"].split("Example 1")[0])  # the whole statement
        for candidate in solved.get(method, []):
            if statement in words(candidate["problem"]):
                query = query_from_record(record, source="prime/leetcode-test")
                query.reference = candidate["solutions"]
                matched.append(query)
                break
    return matched


def test_leetcode_script_references_pass(pool):
    matched = leetcode_with_references()
    assert len(matched) == 74
    _check_references(pool, sample(matched, 15))


@pytest.mark.slow
def test_every_leetcode_script_reference_passes(pool):
    _check_references(pool, leetcode_with_references())


STDIO_REFERENCES = [
    ("deepcoder/test_code_codeforces.json", "python", CODEFORCES_PY),
    ("deepcoder/test_code_code_contests.json", "python", CODE_CONTESTS_PY),
    ("deepcoder/test_code_codeforces.json", "cpp", CODEFORCES_CPP),
    ("deepcoder/test_code_code_contests.json", "cpp", CODE_CONTESTS_CPP),
]


@pytest.mark.parametrize("path,language,refs", STDIO_REFERENCES, ids=lambda v: str(v)[:24])
def test_stdio_references_pass(pool, path, language, refs):
    qs = queries(path, language)
    pairs = [(qs[i], answer(code, language)) for i, code in refs.items()]
    scores = verify_many(pool, pairs)
    assert [s.value for s in scores] == [1.0] * len(pairs), [failing(s) for s in scores]
    for score in scores:
        assert score.details["language"] == language and score.details["format"] == "stdio"
        if language == "cpp":
            assert score.details["compile"]["ok"]


def test_kodcode_style_pytest_modules_pass():
    for solution, test in KODCODE_STYLE:
        query = query_from_record({"question": "q", "solution": solution, "test": test},
                                  source="kodcode")  # fmt: skip
        score = VERIFIER.verify(query, answer(solution))
        assert score.value == 1.0, failing(score)
        assert score.details["format"] == "pytest"
        assert VERIFIER.verify(query, answer(gutted(solution))).value < 0.5


# --- corrupted versions fail ------------------------------------------------------------------


@pytest.mark.parametrize("path", FUNCTION_FILES)
def test_corrupted_references_fail(pool, path):
    qs = sample(queries(path))
    gut = verify_many(pool, [(q, answer(gutted(q.reference))) for q in qs])
    assert all(s.value < 1.0 for s in gut)
    assert sum(s.value for s in gut) / len(gut) < 0.1  # a None here and there is right
    broken = verify_many(pool, [(q, answer(q.reference + "\ndef broken(:\n")) for q in qs])
    assert all(s.value == 0.0 for s in broken)
    assert all("SyntaxError" in failing(s)[0]["message"] for s in broken)


def test_partly_right_program_scores_its_pass_rate():
    """MBPP task 2 has 3 asserts; a program right only on its first call passes 1 of them."""
    query = next(q for q in queries("prime/new_mbpp.json") if q.meta["task_id"] == 2)
    program = query.reference + (
        "\n_calls = []\n_right = similar_elements\n"
        "def similar_elements(a, b):\n"
        "    _calls.append(1)\n"
        "    return _right(a, b) if len(_calls) == 1 else ()\n"
    )
    score = VERIFIER.verify(query, answer(program))
    assert score.value == pytest.approx(1 / 3)
    assert [t["status"] for t in score.details["tests"]] == ["pass", "fail", "fail"]


@pytest.mark.parametrize("path,language,refs", STDIO_REFERENCES[:2], ids=["cf", "contests"])
def test_off_by_one_output_fails(pool, path, language, refs):
    qs = queries(path)
    scores = verify_many(pool, [(qs[i], answer(off_by_one(code))) for i, code in refs.items()])
    assert [s.value for s in scores] == [0.0] * len(refs)
    assert all(failing(s)[0]["status"] == "fail" for s in scores)


def test_cpp_corruptions_fail():
    query = queries("deepcoder/test_code_codeforces.json", "cpp")[0]
    right = CODEFORCES_CPP[0]
    wrong = right.replace("max(x, y) <<", "max(x, y) + 1 <<")
    score = VERIFIER.verify(query, answer(wrong, "cpp"))
    assert score.value == 0.0 and failing(score)[0]["status"] == "fail"
    assert "expected" in failing(score)[0]["message"]

    score = VERIFIER.verify(query, answer(right.replace("int t;", "int t"), "cpp"))
    assert score.value == 0.0 and not score.details["compile"]["ok"]
    assert "error" in score.details["compile"]["stderr"]
    assert failing(score)[0]["status"] == "compile_error"

    crash = right.replace("int t; cin >> t;", "int t; cin >> t; abort();")
    score = VERIFIER.verify(query, answer(crash, "c++"))
    assert score.value == 0.0 and failing(score)[0]["message"] == "signal:SIGABRT"

    quick = CodeVerifier(VerifyConfig(code=SandboxConfig(timeout_s=1, cpu_s=1)))
    spin = right.replace("int t; cin >> t;", "int t; cin >> t; for (volatile int i = 0;; i++);")
    score = quick.verify(query, answer(spin, "cpp"))
    assert score.value == 0.0 and failing(score)[0]["status"] == "timeout"
    assert score.details["time_s"] < 5


def test_cpp_uses_the_precompiled_header():
    query = queries("deepcoder/test_code_codeforces.json", "cpp")[0]
    with_pch = VERIFIER.verify(query, answer(CODEFORCES_CPP[0], "cpp"))
    without = CodeVerifier(pch=False).verify(query, answer(CODEFORCES_CPP[0], "cpp"))
    assert with_pch.value == without.value == 1.0
    assert with_pch.details["compile"]["pch"] and not without.details["compile"]["pch"]


# --- answers that game the harness score nothing -----------------------------------------------


@pytest.mark.parametrize(
    "hack",
    [
        "import sys\nsys.exit(0)",
        "import os\nos._exit(0)",
        "raise SystemExit(0)",
        # look-alike report lines without the nonce
        "import os\nfor i in range(10):\n    os.write(1, b'x %d pass 0.0 \\'\\'\\n' % i)",
        "import atexit, os\natexit.register(lambda: os._exit(0))\ndef has_close_elements(*a):\n"
        "    raise SystemExit(0)",
        # rewrite the harness's report on its way out
        "import os\n_write = os.write\n"
        "os.write = lambda fd, b: _write(fd, b.replace(b' fail ', b' pass '))\n"
        "def has_close_elements(*a):\n    return None",
    ],
    ids=["sys.exit", "os._exit", "SystemExit", "fake-lines", "exit-in-call", "patch-os-write"],
)
def test_exiting_early_is_not_passing(hack):
    query = queries("humaneval/HumanEval.jsonl.gz")[0]
    score = VERIFIER.verify(query, answer(hack))
    assert score.value == 0.0, score.details


# --- the verifier's contract -------------------------------------------------------------------


def test_registered_for_code_and_picklable():
    import pickle

    assert _REGISTRY[Category.CODE] is CodeVerifier
    verifier = _REGISTRY[Category.CODE](VerifyConfig())
    assert verifier.name == "code-sandbox"
    assert pickle.loads(pickle.dumps(verifier)).config == verifier.config


def test_answers_without_the_right_code_block():
    query = queries("humaneval/HumanEval.jsonl.gz")[0]
    ref = query.reference
    assert VERIFIER.verify(query, "I would loop over the pairs.").details["error"] == (
        "no ```python code block in the answer"
    )
    score = VERIFIER.verify(query, answer(ref, "cpp"))
    assert score.value == 0.0 and "```python" in score.details["error"]
    # the think part is never searched; the last python block is the program
    assert VERIFIER.verify(query, f"<think>{answer(ref)}</think>no code").value == 0.0
    assert VERIFIER.verify(query, answer("def f(): pass") + answer(ref)).value == 1.0
    assert VERIFIER.verify(query, answer(ref) + answer("x = 1")).value == 0.0


def test_queries_that_cannot_be_tested():
    base = dict(source="t", category="code")
    no_tests = Query.from_prompt("p", **base)
    assert VERIFIER.verify(no_tests, answer("x=1")).details["error"] == "the query has no tests"
    odd = Query.from_prompt("p", tests=[{"stdin": "1"}], **base)
    assert "expected input/output" in VERIFIER.verify(odd, answer("x=1")).details["error"]
    fortran = Query.from_prompt("p", tests=[{"input": "", "output": ""}], meta={"language": "f90"},
                                **base)  # fmt: skip
    assert "unsupported code language" in VERIFIER.verify(fortran, "```f90\n```").details["error"]
    cpp_asserts = Query.from_prompt("p", tests=[{"script": "assert f() == 1"}],
                                    meta={"language": "cpp"}, **base)  # fmt: skip
    score = VERIFIER.verify(cpp_asserts, answer("int main(){}", "cpp"))
    assert score.details["error"] == "C++ answers need stdin/stdout tests"


def test_at_most_max_tests_cases_run():
    record = read_records(shared_path("data", "code", "deepcoder", "test_code_code_contests.json"))[
        3
    ]
    assert len(record["tests"]["inputs"]) == 74
    query = query_from_record(record, source="code_contests")
    score = VERIFIER.verify(query, answer("print(0)"))
    assert score.details["total"] == 10 and len(score.details["tests"]) == 10
    three = CodeVerifier(VerifyConfig(code=SandboxConfig(max_tests=3)))
    assert three.verify(query, answer("print(0)")).details["total"] == 3


def test_details_are_json_and_bounded():
    query = queries("deepcoder/test_code_codeforces.json")[0]
    noisy = "import sys\nsys.stderr.write('e' * 100000)\nprint(1)"
    score = VERIFIER.verify(query, answer(noisy))
    assert score.value == 0.0
    assert len(json.dumps(score.details)) < 2000
    assert failing(score)[0]["stderr"] == "e" * 300
