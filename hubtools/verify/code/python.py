"""Python answers: function-level cases through the in-sandbox harness, stdio cases one run each.

The interpreter inside the sandbox is the system's `/usr/bin/python3` by default:
the sandbox shows /usr and nothing of $HOME, so a pyenv or venv Python there
would not exist. `HUBTOOLS_SANDBOX_PYTHON` (or `CodeVerifier(python=...)`)
picks another; one outside /usr has its installation prefix bound read-only.
Programs see the packages of that interpreter only (e.g. Debian's
python3-numpy, python3-pandas, python3-sortedcontainers), with numerical
libraries held to one thread (`THREADS`).
"""

from __future__ import annotations

import ast
import os
import secrets
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from hubtools.errors import UsageError
from hubtools.verify.base import SandboxConfig
from hubtools.verify.code.formats import PythonCases, StdioCases
from hubtools.verify.code.results import CaseResult, run_stdio
from hubtools.verify.code.sandbox import SANDBOX_UID, Box, Limits, Sandbox, reachable

DEFAULT_PYTHON = "/usr/bin/python3"
# One thread per BLAS/OpenMP pool: verification already runs a sandbox per core, and an
# OpenBLAS starting a thread per core would pass the sandbox's process limit (and exit).
THREADS = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
_PACKAGE = files("hubtools.verify.code")
_HARNESS = _PACKAGE.joinpath("harness.py").read_text()
_SHIM = _PACKAGE.joinpath("pytest_shim.py").read_text()


def sandbox_python(python: str | None = None) -> str:
    """The interpreter that runs answers: argument, else $HUBTOOLS_SANDBOX_PYTHON, else /usr's."""
    python = python or os.environ.get("HUBTOOLS_SANDBOX_PYTHON") or DEFAULT_PYTHON
    if not os.access(python, os.X_OK):
        raise UsageError(
            f"sandbox Python {python} not found; install python3 or set HUBTOOLS_SANDBOX_PYTHON"
        )
    return python


@dataclass(frozen=True, slots=True)
class PythonProgram:
    """An answer's program in its box: paths and the interpreter as the sandbox sees them."""

    box: Box
    interpreter: tuple[str, ...]
    program: str
    harness: str


class PythonRunner:
    """Writes the program into a box and runs each group of cases against it."""

    def __init__(self, sandbox: Sandbox, config: SandboxConfig, python: str):
        self.sandbox, self.config, self.python = sandbox, config, python

    def load(self, box: Box, program: str) -> PythonProgram:
        """Write the program, the harness and the pytest shim into the box."""
        (box.host / "shim").mkdir(mode=0o755)
        box.env.update(THREADS)
        box.write("shim/pytest.py", _SHIM)
        real = Path(self.python).resolve()
        python = self.python
        if self.sandbox.sandboxed and not real.is_relative_to("/usr"):
            prefix = real.parent.parent  # .../bin/python3.x -> the installation prefix
            if not reachable(real):
                raise UsageError(f"sandbox Python {real} is not readable by uid {SANDBOX_UID}")
            python = str(
                Path(self.sandbox.bind(box, str(prefix), prefix)) / real.relative_to(prefix)
            )
        return PythonProgram(box, (python, "-I", "-B"), box.write("solution.py", program),
                             box.write("harness.py", _HARNESS))  # fmt: skip

    def run_stdio(self, prog: PythonProgram, group: StdioCases) -> list[CaseResult]:
        argv = [*prog.interpreter, prog.program]
        return run_stdio(self.sandbox, prog.box, argv, group, self.config)

    def run_cases(self, prog: PythonProgram, group: PythonCases) -> list[CaseResult]:
        """All cases in one harness process; a case it never reported did not pass."""
        spec = dict(group.spec(), timeout=self.config.timeout_s)
        spec_path = prog.box.write(f"spec-{secrets.token_hex(4)}.py", ascii(spec))
        nonce = secrets.token_hex(16)
        limits = Limits.from_config(self.config, tests=len(group) + 1)
        argv = [*prog.interpreter, prog.harness, spec_path, prog.program]
        run = self.sandbox.run(prog.box, argv, limits, stdin=nonce.encode())
        reported: dict[int, CaseResult] = {}
        for line in run.stdout.decode("ascii", "replace").split("\n"):
            fields = line.split(" ", 4)
            if len(fields) != 5 or fields[0] != nonce:
                continue
            try:
                index, message = int(fields[1]), ast.literal_eval(fields[4])
                reported[index] = CaseResult(fields[2], float(fields[3]), str(message))
            except (ValueError, SyntaxError):
                continue
        status = run.status()
        missing = "timeout" if status == "timeout" else "error"
        note = f"no result: the run ended ({status})"
        results = [reported.get(i) or CaseResult(missing, 0.0, note) for i in range(len(group))]
        for result in results:
            if not result.passed:
                result.stderr = run.stderr
        return results
