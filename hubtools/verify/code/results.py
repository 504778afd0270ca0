"""One test's outcome, and the stdin/stdout cases that every language runs the same way."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from hubtools.verify.base import SandboxConfig
from hubtools.verify.code.formats import StdioCases
from hubtools.verify.code.sandbox import Box, Limits, Sandbox

MESSAGE_CHARS = 300  # per-test text kept in the details (stderr tails, diffs)
FLOAT_TOLERANCE = 1e-6  # absolute or relative, the usual judge rule for real-valued output


@dataclass(slots=True)
class CaseResult:
    """pass, fail (wrong output or assertion), error, timeout, output_limit or compile_error."""

    status: str
    time_s: float = 0.0
    message: str = ""
    stderr: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"status": self.status, "time_s": round(self.time_s, 4)}
        if self.message:
            data["message"] = self.message[-MESSAGE_CHARS:]
        if self.stderr:
            data["stderr"] = self.stderr[-MESSAGE_CHARS:]
        return data


def _lines(text: str) -> list[str]:
    """Whitespace-normalised lines, leading and trailing blank lines dropped."""
    lines = [" ".join(line.split()) for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    while lines and not lines[0]:
        lines.pop(0)
    return lines


def _number(token: str) -> float | None:
    try:
        value = float(token)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _same_token(got: str, expected: str) -> bool:
    """Exact, or within FLOAT_TOLERANCE where the expected token is a decimal number."""
    if got == expected:
        return True
    if not any(c in expected for c in ".eE"):
        return False  # integers and words compare exactly: "1.0" is not "1"
    a, b = _number(got), _number(expected)
    return a is not None and b is not None and abs(a - b) <= FLOAT_TOLERANCE * max(1.0, abs(b))


def compare_output(got: str, expected: str) -> str | None:
    """None when the outputs match line by line, else where they first differ."""
    got_lines, want_lines = _lines(got), _lines(expected)
    for n, (g, w) in enumerate(zip(got_lines, want_lines, strict=False), 1):
        gt, wt = g.split(), w.split()
        if len(gt) != len(wt) or not all(map(_same_token, gt, wt)):
            return f"line {n}: expected {w[:100]!r}, got {g[:100]!r}"
    if len(got_lines) != len(want_lines):
        return f"expected {len(want_lines)} lines, got {len(got_lines)}"
    return None


def run_stdio(
    sandbox: Sandbox, box: Box, argv: list[str], group: StdioCases, config: SandboxConfig
) -> list[CaseResult]:
    """One sandboxed run per case: stdin in, stdout compared."""
    results = []
    for stdin, expected in group.cases:
        cap = max(1 << 20, 4 * len(expected.encode()))
        run = sandbox.run(box, argv, Limits.from_config(config, stdout_bytes=cap),
                          stdin=stdin.encode())  # fmt: skip
        status = run.status()
        if status != "ok":
            kind = status if status in ("timeout", "output_limit") else "error"
            results.append(CaseResult(kind, run.wall_s, status, run.stderr))
            continue
        diff = compare_output(run.stdout.decode("utf-8", "replace"), expected)
        results.append(CaseResult("fail" if diff else "pass", run.wall_s, diff or "", run.stderr))
    return results
