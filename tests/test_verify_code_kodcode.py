"""KodCode-style pytest modules: tests that call the solution without importing it.

KodCode's own runner (KodCode-AI/kodcode, pipeline/step2.2_gen_unit_tests.py) writes
each test file as ``from solution import *`` followed by the stored test module, so
many stored modules never import the functions they call. The harness gives them the
same names. There is no KodCode file in ../shared/data, so the real problems there
(MBPP, HumanEval, PRIME's LeetCode) are rewritten in that shape (verify_code_refs.py):
their reference solutions must pass and wrong programs fail. Needs bubblewrap.
"""

from __future__ import annotations

import ast
import gzip
import json
import subprocess
from concurrent.futures import ProcessPoolExecutor

import pytest
from conftest import shared_path
from test_verify_code import answer, failing, gutted, leetcode_with_references, sample
from verify_code_refs import kodcode_humaneval, kodcode_leetcode, kodcode_mbpp

from hubtools.records import Category, Query
from hubtools.verify.base import Score
from hubtools.verify.code import CodeVerifier
from hubtools.verify.code.python import DEFAULT_PYTHON
from hubtools.verify.code.sources import read_records

VERIFIER = CodeVerifier()
_NO_SANDBOX = VERIFIER.sandbox.unavailable_reason()
pytestmark = pytest.mark.skipif(
    _NO_SANDBOX is not None,
    reason=f"model code runs only in the sandbox: {_NO_SANDBOX} (apt-get install bubblewrap)",
)


def kodcode_query(solution: str, module: str, prelude: str = "", **meta) -> Query:
    """A query as KodCode ships one: a `solution` and a pytest `test` module."""
    test = {"pytest": module, **({"prelude": prelude} if prelude else {})}
    return Query.from_prompt("q", source="kodcode", category=Category.CODE, reference=solution,
                             tests=[test], meta={"language": "python", **meta})  # fmt: skip


def kodcode_problems() -> list[Query]:
    """Every real problem with a reference solution, its tests as a KodCode-style module."""
    code = ("data", "code")
    mbpp = read_records(shared_path(*code, "prime", "new_mbpp.json"))
    with gzip.open(shared_path(*code, "humaneval", "HumanEval.jsonl.gz"), "rt") as fh:
        humaneval = [json.loads(line) for line in fh]
    qs = [kodcode_query(r["code"], kodcode_mbpp(r), task_id=r["task_id"]) for r in mbpp]
    qs += [kodcode_query(r["prompt"] + r["canonical_solution"], kodcode_humaneval(r),
                         task_id=r["task_id"]) for r in humaneval]  # fmt: skip
    for q in leetcode_with_references():
        module = kodcode_leetcode(q.tests[0]["script"])
        qs.append(kodcode_query(q.reference, module, "leetcode", task_id=q.meta["task_id"]))
    return qs


# MBPP 798's tests call `_sum`: `import *` skips names that start with an underscore (unless
# __all__ lists them), so KodCode's runner fails it too (test_private_names_follow_import_star).
PRIVATE = {798}


def _verify(pair: tuple[Query, str]) -> Score:
    return VERIFIER.verify(*pair)


@pytest.fixture(scope="module")
def problems() -> list[Query]:
    return kodcode_problems()


def verify_all(pairs: list[tuple[Query, str]]) -> list[Score]:
    with ProcessPoolExecutor(max_workers=2) as pool:
        return list(pool.map(_verify, pairs))


def test_the_modules_never_import_the_solution(problems):
    assert len(problems) == 399 + 164 + 74
    for q in problems:
        module = ast.parse(q.tests[0]["pytest"])
        imported = [n for n in ast.walk(module) if isinstance(n, ast.Import | ast.ImportFrom)]
        assert not [n for n in imported if "solution" in ast.unparse(n)]
        assert any(
            isinstance(n, ast.FunctionDef) and n.name.startswith("test_") for n in module.body
        )


def test_references_pass(problems):
    qs = [q for q in sample(problems, 40) if q.meta["task_id"] not in PRIVATE]
    scores = verify_all([(q, answer(q.reference)) for q in qs])
    bad = [(q.meta["task_id"], failing(s)[:1]) for q, s in zip(qs, scores, strict=True)
           if s.value != 1.0]  # fmt: skip
    assert not bad
    assert all(s.details["format"] == "pytest" for s in scores)


@pytest.mark.slow
def test_every_reference_passes(problems):
    scores = verify_all([(q, answer(q.reference)) for q in problems])
    bad = {q.meta["task_id"]: failing(s)[:1] for q, s in zip(problems, scores, strict=True)
           if s.value != 1.0}  # fmt: skip
    assert set(bad) == PRIVATE, bad


def test_wrong_solutions_fail(problems):
    qs = [q for q in sample(problems, 40) if q.meta["task_id"] not in PRIVATE]
    scores = verify_all([(q, answer(gutted(q.reference))) for q in qs])
    assert all(s.value < 1.0 for s in scores)
    assert sum(s.value for s in scores) / len(scores) < 0.1  # a None here and there is right


def mbpp(problems: list[Query], task_id: int) -> Query:
    return next(q for q in problems if q.meta["task_id"] == task_id)


def test_a_module_calls_what_it_never_imports():
    """The shape KodCode stores: no import at all, the solution's function called by name."""
    module = "def test_small():\n    assert add(2, 3) == 5\n\ndef test_zero():\n"
    module += "    assert add(0, 0) == 0\n"
    query = kodcode_query("", module)
    right = VERIFIER.verify(query, answer("def add(a, b):\n    return a + b"))
    assert right.value == 1.0, failing(right)
    wrong = VERIFIER.verify(query, answer("def add(a, b):\n    return a - b"))
    assert wrong.value == 0.5 and failing(wrong)[0]["status"] == "fail"
    missing = VERIFIER.verify(query, answer("def plus(a, b):\n    return a + b"))
    assert missing.value == 0.0
    assert "NameError: name 'add' is not defined" in failing(missing)[0]["message"]


@pytest.mark.parametrize(
    "head",
    ["from solution import add", "from solution import *", "import solution\nadd = solution.add"],
)
def test_modules_that_import_the_solution_still_work(head):
    query = kodcode_query("", f"{head}\n\ndef test_add():\n    assert add(2, 3) == 5\n")
    assert VERIFIER.verify(query, answer("def add(a, b):\n    return a + b")).value == 1.0
    assert VERIFIER.verify(query, answer("def add(a, b):\n    return a * b")).value == 0.0


def test_private_names_follow_import_star(problems):
    """`from solution import *` exports no `_name` unless __all__ lists it, as in Python."""
    query = mbpp(problems, 798)  # its tests call `_sum`
    plain = VERIFIER.verify(query, answer(query.reference))
    assert plain.value == 0.0
    assert "NameError: name '_sum' is not defined" in failing(plain)[0]["message"]
    listed = VERIFIER.verify(query, answer(query.reference + "\n__all__ = ['_sum']\n"))
    assert listed.value == 1.0, failing(listed)
    # __all__ limits the export: a public helper it leaves out is not in scope either
    module = "def test_a():\n    assert f() == 1\n\ndef test_b():\n    assert g() == 2\n"
    program = "__all__ = ['f']\ndef f():\n    return 1\ndef g():\n    return 2\n"
    score = VERIFIER.verify(kodcode_query("", module), answer(program))
    assert score.value == 0.5
    assert "NameError: name 'g' is not defined" in failing(score)[0]["message"]


def _sandbox_has(module: str) -> str | None:
    """Why the sandbox's Python cannot import `module`, judged on the host (None: it can)."""
    run = subprocess.run([DEFAULT_PYTHON, "-I", "-c", f"import {module}"], capture_output=True)
    if run.returncode:
        return f"{DEFAULT_PYTHON} has no {module} (apt-get install python3-{module})"
    return None


@pytest.mark.skipif(_sandbox_has("numpy") is not None, reason=str(_sandbox_has("numpy")))
def test_a_numpy_solution_passes(problems):
    """MBPP 8 (squares of a list) solved with numpy; BLAS held to one thread in the sandbox."""
    query = mbpp(problems, 8)
    program = (
        "import numpy as np\n\ndef square_nums(nums):\n    return (np.array(nums) ** 2).tolist()\n"
    )
    score = VERIFIER.verify(query, answer(program))
    assert score.value == 1.0, failing(score)
    blas = kodcode_query(
        "",
        """
import os

def test_linear_algebra():
    assert solve([[2, 0], [0, 4]], [2, 8]) == [1.0, 2.0]

def test_one_thread():
    assert os.environ["OPENBLAS_NUM_THREADS"] == "1"
""",
    )
    program = "import numpy as np\n\ndef solve(a, b):\n"
    program += "    return np.linalg.solve(np.array(a), np.array(b)).tolist()\n"
    score = VERIFIER.verify(blas, answer(program))
    assert score.value == 1.0, failing(score)
    wrong = program.replace("solve(np.array(a)", "solve(np.array(a).T * 2")
    assert VERIFIER.verify(blas, answer(wrong)).value == 0.5


@pytest.mark.skipif(_sandbox_has("pandas") is not None, reason=str(_sandbox_has("pandas")))
def test_a_pandas_solution_passes(problems):
    query = mbpp(problems, 8)
    program = (
        "import pandas as pd\n\ndef square_nums(nums):\n"
        "    return pd.Series(nums, dtype='int64').pow(2).tolist()\n"
    )
    score = VERIFIER.verify(query, answer(program))
    assert score.value == 1.0, failing(score)
