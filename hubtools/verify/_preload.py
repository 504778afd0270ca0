"""Imported once by the worker pool's forkserver, so forked workers start warm.

Loads the verifiers and the heavy libraries behind them (sympy and the LaTeX parser,
lm-eval's IFEval checkers, NLTK's Punkt model, langdetect's language profiles) and runs
one check of each kind before any worker is forked; without it every new worker pays
seconds of imports and lazy loading on its first answers. Failures are left for the
verifier to report when it runs, with its own message.
"""

from __future__ import annotations

import contextlib

import hubtools.verify.registry  # noqa: F401

with contextlib.suppress(Exception):
    from hubtools.verify.math import check_math

    check_math("1/2", r"\boxed{0.5}", 5)

with contextlib.suppress(Exception):
    from hubtools.verify.ifeval import check_constraints

    ids = ["language:response_language", "length_constraints:number_sentences"]
    kwargs = [{"language": "en"}, {"relation": "at least", "num_sentences": 1}]
    warm = {"instruction_id_list": ids, "kwargs": kwargs}
    check_constraints(warm, "Write two sentences.", "This is English. It has two sentences.")
