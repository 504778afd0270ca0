"""The code verifier's parts: code-block extraction, output comparison, test formats, sources."""

from __future__ import annotations

import pytest
from conftest import shared_path

from hubtools.errors import UsageError
from hubtools.records import Category, Query
from hubtools.verify.base import SandboxConfig, VerifyConfig
from hubtools.verify.code import CodeVerifier
from hubtools.verify.code.extract import code_blocks, extract_program, language_of
from hubtools.verify.code.formats import (
    LEETCODE_PRELUDE,
    PythonCases,
    StdioCases,
    suite_from_tests,
)
from hubtools.verify.code.results import compare_output
from hubtools.verify.code.sources import query_from_record, read_records

# --- extraction ------------------------------------------------------------------------------


def test_last_block_of_the_language_wins():
    text = "```python\ndraft()\n```\ntext\n```cpp\nint main(){}\n```\n```py\nfinal()\n```\n"
    assert extract_program(text, "python") == "final()\n"
    assert extract_program(text, "c++") == "int main(){}\n"
    assert extract_program("```\nuntagged()\n```", "python") is None
    assert extract_program("no code at all", "python") is None
    assert extract_program("```python\n\n```", "python") is None  # an empty block is no program


@pytest.mark.parametrize("tag", ["python", "py", "Python3", "PY", "{.python}", "python title=a"])
def test_python_tags(tag):
    assert extract_program(f"```{tag}\nx = 1\n```", "python") == "x = 1\n"


@pytest.mark.parametrize("tag", ["cpp", "c++", "C++", "cc", "cxx", "cpp17"])
def test_cpp_tags(tag):
    assert extract_program(f"```{tag}\nint x;\n```", "cpp") == "int x;\n"


def test_commonmark_fences():
    # a longer fence may contain a shorter one; tildes work; an unclosed block runs to the end
    text = "````python\ns = '''\n```\n'''\n````\n"
    assert extract_program(text, "python") == "s = '''\n```\n'''\n"
    assert extract_program("~~~python\nx = 1\n~~~\n", "python") == "x = 1\n"
    assert extract_program("```python\nx = 1\ny = 2", "python") == "x = 1\ny = 2\n"
    # a fence indented by up to 3 spaces strips that much from its lines; 4 is not a fence
    assert extract_program("  ```python\n  x = 1\n    y\n  ```", "python") == "x = 1\n  y\n"
    assert code_blocks("    ```python\n    x = 1\n    ```") == []
    # a backtick fence's info string may not contain backticks (inline code, not a fence)
    assert code_blocks("```python `x` ```\nfoo\n") == []


def test_think_part_is_never_searched():
    text = "<think>\n```python\nthought()\n```\n</think>\nThe answer:\n```python\nanswer()\n```"
    assert extract_program(text, "python") == "answer()\n"
    assert extract_program("<think>\n```python\nthought()\n```\n</think>\nno", "python") is None


def test_language_names():
    assert language_of("Python") == "python" and language_of("C++") == "cpp"
    with pytest.raises(ValueError, match="unsupported code language 'rust'"):
        language_of("rust")


# --- output comparison -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "got,expected",
    [
        ("1 2\n3\n", "1 2\n3"),
        ("1  2 \n3\n\n\n", "1 2\n3\n"),
        ("\n1\t2\r\n3", "1 2\n3"),
        ("5 2 1 3 4", "5 2 1 3 4 \n"),
        ("0.3333333", "0.333333333"),
        ("1e-7", "0.0"),
        ("2.0000001", "2.0"),
    ],
)
def test_outputs_that_match(got, expected):
    assert compare_output(got, expected) is None


@pytest.mark.parametrize(
    "got,expected,why",
    [
        ("1 3\n", "1 2\n", "line 1: expected '1 2', got '1 3'"),
        ("1\n2\n", "1\n", "expected 1 lines, got 2"),
        ("1 2", "12", "line 1"),
        ("1.0", "1", "line 1"),  # integers compare exactly
        ("0.334", "0.333", "line 1"),
        ("YES", "yes", "line 1"),
        ("nan", "0.5", "line 1"),
        ("1\n\n2", "1\n2", "line 2"),  # blank lines inside the output count
    ],
)
def test_outputs_that_differ(got, expected, why):
    assert why in compare_output(got, expected)


# --- test formats ------------------------------------------------------------------------------


def test_stdio_shapes_merge_into_one_group():
    suite = suite_from_tests([{"input": "1", "output": "2"},
                              {"inputs": ["3", "5"], "outputs": ["4", "6"]}])  # fmt: skip
    assert suite.groups == (StdioCases((("1", "2"), ("3", "4"), ("5", "6"))),)
    assert len(suite) == 3 and suite.format == "stdio"
    assert suite.head(2).groups == (StdioCases((("1", "2"), ("3", "4"))),)
    with pytest.raises(ValueError, match="2 inputs but 1 outputs"):
        suite_from_tests([{"inputs": ["1", "2"], "outputs": ["1"]}])


def test_script_cases_carry_their_setup():
    script = "my = Solution()\n\nx = {'a': 1}\nassert my.f(**x) == 1\n\nx = {'a': 2}\n"
    script += "assert my.f(**x) == 2\nprint('done')\n"
    (group,) = suite_from_tests([{"script": script, "prelude": "leetcode"}]).groups
    assert group.kind == "script" and group.prelude == LEETCODE_PRELUDE
    assert group.cases == (
        "my = Solution()\nx = {'a': 1}\nassert my.f(**x) == 1",
        "x = {'a': 2}\nassert my.f(**x) == 2\nprint('done')",
    )
    (plain,) = suite_from_tests([{"script": "import math\nx = 1"}]).groups
    assert plain.cases == ("import math\nx = 1",)  # no assert at all: the script is one case


def test_check_cases_from_humaneval_and_deepcoder_shapes():
    module = (
        "METADATA = {}\n\ndef check(candidate):\n    import math\n"
        "    assert candidate(1) == 2\n    for i in range(3):\n        assert candidate(i) > i\n"
        "    def helper(x):\n        assert x\n    assert helper(candidate(0))\n"
    )
    (group,) = suite_from_tests([{"check": module, "entry_point": "inc"}]).groups
    assert (group.kind, group.entry, group.param) == ("check", "inc", "candidate")
    assert group.cases[0] == "import math\nassert candidate(1) == 2"
    assert group.cases[1].startswith("for i in range(3):")
    assert group.cases[2].startswith("def helper(x):") and len(group.cases) == 3
    assert "METADATA = {}" in group.setup and "def check(candidate):" in group.setup

    deepcoder = "def check(fn):\n    assert fn(1) == 1\n\n\ncheck(Solution().f)"
    (group,) = suite_from_tests([{"check": deepcoder, "prelude": "leetcode"}]).groups
    assert (group.entry, group.param, group.cases) == ("Solution().f", "fn", ("assert fn(1) == 1",))
    assert "check(Solution().f)" not in group.setup
    with pytest.raises(ValueError, match="needs an entry_point"):
        suite_from_tests([{"check": "def check(c):\n    assert c"}])
    with pytest.raises(ValueError, match="no `def check"):
        suite_from_tests([{"check": "assert 1", "entry_point": "f"}])


def test_pytest_cases_are_test_functions_and_methods():
    module = (
        "from solution import f\nimport pytest\n\ndef helper(): pass\n\ndef test_a(): pass\n\n"
        "class TestB:\n    def test_c(self): pass\n    def other(self): pass\n\n"
        "def test_a(): pass\n"
    )
    (group,) = suite_from_tests([{"pytest": module}]).groups
    assert group == PythonCases("pytest", ("test_a", "TestB::test_c"), setup=module)


def test_bad_tests_say_what_is_wrong():
    with pytest.raises(ValueError, match=r"test 2 has keys \(stdin\)"):
        suite_from_tests([{"input": "", "output": ""}, {"stdin": "1"}])
    with pytest.raises(ValueError, match="test 1 is not valid Python"):
        suite_from_tests([{"script": "assert ("}])
    with pytest.raises(ValueError, match="unknown prelude 'java'"):
        suite_from_tests([{"script": "assert 1", "prelude": "java"}])
    assert len(suite_from_tests(None)) == 0


# --- sources: every data file's records become queries -----------------------------------------

FILES = {
    "humaneval/HumanEval.jsonl.gz": "check",
    "prime/new_mbpp.json": "script",
    "prime/leetcode-test.jsonl": "script",
    "deepcoder/test_code_leetcode.json": "check",
    "deepcoder/test_code_codeforces.json": "stdio",
    "deepcoder/test_code_code_contests.json": "stdio",
}


@pytest.mark.parametrize("path,kind", FILES.items())
def test_every_record_becomes_a_query(path, kind):
    records = read_records(shared_path("data", "code", *path.split("/")))
    queries = [query_from_record(r, source=path) for r in records]
    assert all(q.category is Category.CODE and q.meta["language"] == "python" for q in queries)
    assert {suite_from_tests(q.tests).format for q in queries} == {kind}
    assert all(len(suite_from_tests(q.tests)) > 0 for q in queries)
    assert Query.from_dict(queries[0].to_dict()) == queries[0]  # JSON-ready, round-trips


def test_stdio_queries_can_ask_for_cpp():
    record = read_records(shared_path("data", "code", "deepcoder", "test_code_codeforces.json"))[0]
    query = query_from_record(record, source="cf", language="c++")
    assert query.meta["language"] == "cpp" and "```cpp" in query.messages[-1]["content"]
    mbpp = read_records(shared_path("data", "code", "prime", "new_mbpp.json"))[0]
    with pytest.raises(ValueError, match="function-level tests need Python"):
        query_from_record(mbpp, source="mbpp", language="cpp")
    with pytest.raises(ValueError, match="unknown code record shape"):
        query_from_record({"title": "x"}, source="x")


# --- the harness: each case on its own ---------------------------------------------------------


def test_a_slow_case_times_out_alone():
    quick = CodeVerifier(VerifyConfig(code=SandboxConfig(timeout_s=1)))
    query = Query.from_prompt("p", source="t", category="code", tests=[{"script": (
        "assert f(1) == 1\nassert f(-1) == -1\nassert f(2) == 2"
    )}])  # fmt: skip
    program = (
        "def f(x):\n    while x < 0:\n        try:\n            pass\n"
        "        except Exception:\n            pass\n    return x\n"
    )
    score = quick.verify(query, f"```python\n{program}```")
    assert [t["status"] for t in score.details["tests"]] == ["pass", "timeout", "pass"]
    assert score.value == pytest.approx(2 / 3) and score.details["time_s"] < 4


def test_programs_that_print_or_read_stdin_still_report():
    query = Query.from_prompt("p", source="t", category="code",
                              tests=[{"script": "assert f() == 3"}])  # fmt: skip
    program = (
        "import sys\nprint('noise')\nsys.stdin.read()\ndef f():\n    print('x')\n    return 3\n"
    )
    assert CodeVerifier().verify(query, f"```python\n{program}```").value == 1.0


def test_the_sandbox_python_must_exist(monkeypatch):
    query = Query.from_prompt("p", source="t", category="code", tests=[{"input": "", "output": ""}])
    monkeypatch.setenv("HUBTOOLS_SANDBOX_PYTHON", "/nonexistent/python3")
    with pytest.raises(UsageError, match="sandbox Python /nonexistent/python3 not found"):
        CodeVerifier().verify(query, "```python\nprint()\n```")
    monkeypatch.delenv("HUBTOOLS_SANDBOX_PYTHON")
    assert CodeVerifier().verify(query, "```python\nprint()\n```").value == 1.0
