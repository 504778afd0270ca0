"""Evaluate a model on the paper's benchmarks with hubtools' own client, run store and verifiers.

An eval is a run: every problem of every benchmark is a query, every sample an attempt
(``attempt`` 0..k-1), every verdict a verifier's. ``stage.evaluate`` fills the run and
``results`` turns it into results.json, results.md and per-problem files.
"""
