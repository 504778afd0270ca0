"""Imported once by the worker pool's forkserver, so forked workers start warm.

Loads the verifiers and the heavy libraries behind them (sympy and the LaTeX parser,
lm-eval's IFEval checkers with their Punkt data) before any worker is forked; without
it every new worker pays seconds of imports on its first answer. Failures are left for
the verifier to report when it runs, with its own message.
"""

from __future__ import annotations

import contextlib

import hubtools.verify.registry  # noqa: F401

with contextlib.suppress(Exception):
    import math_verify  # noqa: F401

    from hubtools.verify.ifeval import _lm_eval

    _lm_eval()
