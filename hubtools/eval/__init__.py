"""Evaluate a model on the paper's benchmarks with hubtools' own client, run store and verifiers.

An eval is a run: every problem of every benchmark is a query, every sample an attempt
(``attempt`` 0..k-1), every verdict a verifier's. ``stage.evaluate`` fills the run and
``results`` turns it into results.json, results.md and per-problem files.
"""


def metric_path(name: str) -> str:
    """The folder to give ``evaluate.load`` for a hubtools metric (math, code, ifeval, gpqa)."""
    from hubtools.eval.metrics import metric_path as path

    return path(name)
