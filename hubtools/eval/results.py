"""The files an eval writes into ``--out``: what ``eval compare`` and ``--push-to-hub`` read.

``OUT/results.json``::

    {"model": str, "endpoint": str (never credentials), "hubtools_version": str,
     "created": ISO 8601 (UTC), "settings": {...the global settings...},
     "benchmarks": {NAME: {
        "dataset": Hub id, "revision": commit sha read, "split": str,
        "problems": int, "samples_per_problem": int,
        "settings": {"temperature", "top_p", "max_new_tokens", "system_prompt", "suffix"},
        "avg_at_k": float (pass@1 averaged over the samples, 0..1), "stderr": float,
        "pass_at_k": {"1": float, "k": float, ...},
        "mean_length": float (tokens), "median_length": float,
        "truncated_share": float, "verifier": str}}}

``OUT/results.md``: the same as a markdown table. ``OUT/problems/NAME.jsonl``: one line per
problem (problem id, samples, passes, lengths, truncated) for inspection.
"""
