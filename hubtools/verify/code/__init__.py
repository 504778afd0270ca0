"""Code verification: model-written Python and C++ run against a query's tests in a sandbox.

`CodeVerifier` (registered for the code category) scores an answer by the pass
rate of its last code block; `sandbox.py` is the bubblewrap sandbox every run
goes through; `formats.py` turns each test format into one suite of cases and
`sources.py` turns the records of public code datasets into queries.
"""

from hubtools.verify.code.sandbox import Limits, RunResult, Sandbox, SandboxUnavailable
from hubtools.verify.code.verifier import CodeVerifier

__all__ = ["CodeVerifier", "Limits", "RunResult", "Sandbox", "SandboxUnavailable"]
