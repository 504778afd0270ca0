"""The code verifier: the answer's program against up to `max_tests` of the query's tests.

Score = passed / run, over the first `config.code.max_tests` cases (the paper runs up
to 10). The language is ``query.meta["language"]`` ("python" when absent; "cpp" and
its aliases for C++); the program is the answer's last code block tagged with it.
C++ answers are judged on stdin/stdout cases only, as in the paper.
"""

from __future__ import annotations

import time
from typing import Any

from hubtools.records import Category, Query
from hubtools.verify.base import Score, Verifier, VerifyConfig, register
from hubtools.verify.code.cpp import CppRunner
from hubtools.verify.code.extract import extract_program, language_of
from hubtools.verify.code.formats import PythonCases, StdioCases, TestSuite, suite_from_tests
from hubtools.verify.code.python import PythonRunner, sandbox_python
from hubtools.verify.code.results import CaseResult
from hubtools.verify.code.sandbox import Sandbox


@register(Category.CODE)
class CodeVerifier(Verifier):
    """Runs model-written Python or C++ in the bubblewrap sandbox (see `sandbox.py`)."""

    name = "code-sandbox"

    def __init__(
        self, config: VerifyConfig | None = None, *, python: str | None = None, pch: bool = True
    ):
        self.config = config or VerifyConfig()
        self.sandbox = Sandbox(self.config.code)
        self.python = python  # resolved when first needed: a verifier for C++ needs no Python
        self.pch = pch

    def suite(self, query: Query) -> TestSuite:
        """The query's cases that count: the first `max_tests` (ValueError for unknown shapes)."""
        return suite_from_tests(query.tests).head(self.config.code.max_tests)

    def verify(self, query: Query, answer: str) -> Score:
        try:
            language = language_of(query.meta.get("language", "python"))
            suite = self.suite(query)
        except ValueError as e:
            return Score(0.0, {"error": f"cannot test this query: {e}"})
        details: dict[str, Any] = {"language": language, "format": suite.format}
        if not len(suite):
            return Score(0.0, {**details, "error": "the query has no tests"})
        program = extract_program(answer or "", language)
        if program is None:
            fence = "```" + ("python" if language == "python" else "cpp")
            return Score(0.0, {**details, "error": f"no {fence} code block in the answer"})
        if language == "cpp" and any(isinstance(g, PythonCases) for g in suite.groups):
            return Score(0.0, {**details, "error": "C++ answers need stdin/stdout tests"})
        details["sandbox"] = "bwrap" if self.sandbox.sandboxed else "unsandboxed"
        start = time.monotonic()
        with self.sandbox.box() as box:
            if language == "cpp":
                runner = CppRunner(self.sandbox, self.config.code, self.pch)
                compiled = runner.compile(box, program)
                details["compile"] = compiled.to_dict()
                results = [r for g in suite.groups for r in runner.run_stdio(box, compiled, g)]
            else:
                results = self._run_python(box, program, suite)
        passed = sum(r.passed for r in results)
        details.update(
            passed=passed, total=len(results), time_s=round(time.monotonic() - start, 3),
            tests=[r.to_dict() for r in results],
        )  # fmt: skip
        return Score(passed / len(results), details)

    def _run_python(self, box, program: str, suite: TestSuite) -> list[CaseResult]:
        self.python = sandbox_python(self.python)
        runner = PythonRunner(self.sandbox, self.config.code, self.python)
        prog = runner.load(box, program)
        results: list[CaseResult] = []
        for group in suite.groups:
            if isinstance(group, StdioCases):
                results += runner.run_stdio(prog, group)
            else:
                results += runner.run_cases(prog, group)
        return results
