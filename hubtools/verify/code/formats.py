"""Test formats: every shape of `Query.tests` becomes one `TestSuite` of numbered cases.

`Query.tests` holds a list of objects, each one of:

- ``{"input": str, "output": str}``: a stdin/stdout case (Codeforces, and
  ``{"inputs": [...], "outputs": [...]}`` as in code_contests, which is several);
- ``{"script": str}``: Python statements run after the program in its namespace;
  each top-level statement holding an ``assert`` is one case, with the statements
  since the previous case as its setup (MBPP asserts; LeetCode ``my_solution =
  Solution()`` scripts);
- ``{"check": str, "entry_point": str}``: a module defining ``check(candidate)``
  (HumanEval). The entry point may be an expression (``Solution().twoSum``), or
  come from a trailing ``check(...)`` call in the module (DeepCoder's LeetCode);
  each top-level statement of ``check`` that asserts is one case;
- ``{"pytest": str}``: a pytest module (KodCode), run as KodCode's runner runs it:
  after ``from solution import *``, so it may call the program's functions without
  importing them, or import them from ``solution`` itself; as in Python, ``import *``
  gives no ``_private`` name unless the program's ``__all__`` lists it. Each ``test_*``
  function (or ``Test*`` class method) of the module itself is one case.

Python objects may add ``"prelude": "leetcode"``: LeetCode's implicit imports
(``List``, ``Counter``, ``inf``, ``ListNode``...) run before the program.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import Any

PYTHON_KINDS = ("script", "check", "pytest")

LEETCODE_PRELUDE = """\
import bisect, collections, functools, heapq, itertools, math, operator, random, re, string
from bisect import *
from collections import *
from functools import *
from heapq import *
from itertools import *
from math import *
from operator import *
from string import *
from typing import *
from builtins import *  # undo the shadowing of pow, sum... by the star imports above
inf = float("inf")


class ListNode:
    def __init__(self, val=0, next=None):
        self.val = val
        self.next = next


class TreeNode:
    def __init__(self, val=0, left=None, right=None):
        self.val = val
        self.left = left
        self.right = right
"""
PRELUDES = {"": "", "leetcode": LEETCODE_PRELUDE}


@dataclass(frozen=True, slots=True)
class StdioCases:
    """Whole-program cases: feed `input`, compare standard output with `output`."""

    cases: tuple[tuple[str, str], ...]

    def __len__(self) -> int:
        return len(self.cases)

    def head(self, n: int) -> StdioCases:
        return StdioCases(self.cases[:n])


@dataclass(frozen=True, slots=True)
class PythonCases:
    """Function-level cases, run by the in-sandbox harness in one process.

    `setup` runs once after the program; for "script" and "check" each case is
    Python source, for "pytest" it is a test name (``test_x`` or ``TestY::test_x``).
    """

    kind: str
    cases: tuple[str, ...]
    setup: str = ""
    prelude: str = ""
    entry: str | None = None  # check: the expression passed as the candidate
    param: str = "candidate"  # check: the name of check()'s parameter

    def __len__(self) -> int:
        return len(self.cases)

    def head(self, n: int) -> PythonCases:
        return PythonCases(self.kind, self.cases[:n], self.setup, self.prelude, self.entry,
                           self.param)  # fmt: skip

    def spec(self) -> dict[str, Any]:
        """What the harness reads (JSON)."""
        return {"kind": self.kind, "cases": list(self.cases), "setup": self.setup,
                "prelude": self.prelude, "entry": self.entry, "param": self.param}  # fmt: skip


Group = StdioCases | PythonCases


@dataclass(frozen=True, slots=True)
class TestSuite:
    """A query's cases in order, in groups that each run the same way."""

    groups: tuple[Group, ...] = field(default_factory=tuple)

    def __len__(self) -> int:
        return sum(len(g) for g in self.groups)

    @property
    def format(self) -> str:
        kinds = dict.fromkeys("stdio" if isinstance(g, StdioCases) else g.kind for g in self.groups)
        return "+".join(kinds) or "none"

    def head(self, n: int) -> TestSuite:
        """The first n cases (the paper runs up to 10 per answer)."""
        kept: list[Group] = []
        for group in self.groups:
            if n <= 0:
                break
            kept.append(group.head(n))
            n -= len(kept[-1])
        return TestSuite(tuple(kept))


def suite_from_tests(tests: list[dict[str, Any]] | None) -> TestSuite:
    """The suite for `Query.tests`; ValueError names the object that has no known shape."""
    groups: list[Group] = []
    for n, test in enumerate(tests or [], 1):
        group = _group(test, n)
        if isinstance(group, StdioCases) and groups and isinstance(groups[-1], StdioCases):
            groups[-1] = StdioCases(groups[-1].cases + group.cases)
        elif len(group):
            groups.append(group)
    return TestSuite(tuple(groups))


def _group(test: dict[str, Any], n: int) -> Group:
    prelude = PRELUDES.get(test.get("prelude") or "")
    if prelude is None:
        raise ValueError(f"test {n}: unknown prelude {test['prelude']!r}; use 'leetcode'")
    if "input" in test and "output" in test:
        return StdioCases(((_text(test["input"]), _text(test["output"])),))
    if "inputs" in test and "outputs" in test:
        ins, outs = test["inputs"], test["outputs"]
        if len(ins) != len(outs):
            raise ValueError(f"test {n}: {len(ins)} inputs but {len(outs)} outputs")
        return StdioCases(tuple((_text(i), _text(o)) for i, o in zip(ins, outs, strict=True)))
    if "script" in test:
        return PythonCases("script", tuple(_assert_chunks(_parse(test["script"], n).body)),
                           prelude=prelude)  # fmt: skip
    if "check" in test:
        return _check_cases(test["check"], test.get("entry_point"), prelude, n)
    if "pytest" in test:
        return PythonCases("pytest", tuple(_pytest_names(_parse(test["pytest"], n))),
                           setup=test["pytest"], prelude=prelude)  # fmt: skip
    keys = ", ".join(sorted(test)) or "none"
    raise ValueError(
        f"test {n} has keys ({keys}); expected input/output, inputs/outputs, script, check "
        "(+ entry_point) or pytest"
    )


def _text(value: Any) -> str:
    return value if isinstance(value, str) else "\n".join(map(str, value))


def _parse(source: str, n: int) -> ast.Module:
    try:
        return ast.parse(source)
    except SyntaxError as e:
        raise ValueError(f"test {n} is not valid Python (line {e.lineno}: {e.msg})") from None


def _asserts(node: ast.AST) -> bool:
    """Whether running this statement checks something (asserts in nested defs do not count)."""
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda):
        return False
    return isinstance(node, ast.Assert) or any(_asserts(c) for c in ast.iter_child_nodes(node))


def _assert_chunks(body: list[ast.stmt]) -> list[str]:
    """One source chunk per asserting statement, each carrying the setup statements before it."""
    chunks: list[str] = []
    pending: list[ast.stmt] = []
    for stmt in body:
        pending.append(stmt)
        if _asserts(stmt):
            chunks.append("\n".join(ast.unparse(s) for s in pending))
            pending = []
    if pending:
        tail = "\n".join(ast.unparse(s) for s in pending)
        chunks = chunks[:-1] + [f"{chunks[-1]}\n{tail}"] if chunks else [tail]
    return chunks


def _check_cases(source: str, entry: str | None, prelude: str, n: int) -> PythonCases:
    module = _parse(source, n)
    body = list(module.body)
    last = body[-1] if body else None
    if (
        isinstance(last, ast.Expr) and isinstance(last.value, ast.Call)
        and isinstance(last.value.func, ast.Name) and last.value.func.id == "check"
        and len(last.value.args) == 1
    ):  # fmt: skip
        body.pop()  # `check(Solution().f)`: the harness makes that call, one case at a time
        entry = entry or ast.unparse(last.value.args[0])
    checks = [s for s in body if isinstance(s, ast.FunctionDef) and s.name == "check"]
    if not checks:
        raise ValueError(f"test {n} has no `def check(candidate)`")
    if not entry:
        raise ValueError(f"test {n}: a check(candidate) test needs an entry_point")
    check = checks[-1]
    params = check.args.posonlyargs + check.args.args
    if len(params) != 1:
        raise ValueError(f"test {n}: check() must take exactly one parameter")
    setup = "\n".join(ast.unparse(s) for s in body)
    return PythonCases("check", tuple(_assert_chunks(check.body)), setup, prelude, entry,
                       params[0].arg)  # fmt: skip


def _pytest_names(module: ast.Module) -> list[str]:
    names: list[str] = []
    for node in module.body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test"):
            names.append(node.name)
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            names += [f"{node.name}::{m.name}" for m in node.body
                      if isinstance(m, ast.FunctionDef) and m.name.startswith("test")]  # fmt: skip
    return list(dict.fromkeys(names))  # a redefined test runs once, as pytest would
