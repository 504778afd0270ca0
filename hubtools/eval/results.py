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

from __future__ import annotations

import json
import math
import os
import statistics
from collections.abc import Iterable
from pathlib import Path
from typing import Any

# A sample passes when its score is 1: the math answer is equivalent, every test passes,
# every IFEval instruction is followed (prompt-level strict accuracy), the letter is right.
PASS_SCORE = 1.0
CHARS_PER_TOKEN = 4  # the length of a sample whose endpoint reported no usage


def pass_at_k(n: int, c: int, k: int) -> float:
    """Chen et al. (2021)'s unbiased estimator: 1 - C(n-c, k) / C(n, k), for k <= n."""
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def ks_for(n: int) -> list[int]:
    """The k reported for n samples a problem: 1, 2, 4, ... up to n, and n itself."""
    ks = [k for k in (2**i for i in range(n.bit_length())) if k <= n]
    return ks + ([n] if n not in ks else [])


def sample_length(sample: dict[str, Any]) -> int | None:
    """Completion tokens from the endpoint's usage; else the text's characters / 4."""
    if sample.get("error"):
        return None
    if sample.get("completion_tokens") is not None:
        return int(sample["completion_tokens"])
    return math.ceil((sample.get("chars") or 0) / CHARS_PER_TOKEN)


def summarize(
    problems: list[tuple[str, str]], samples: Iterable[dict[str, Any]], k: int
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The metrics of one benchmark and its per-problem lines.

    ``problems``: (query_id, problem id) in benchmark order; ``samples``: stored attempts
    below ``k`` (``AttemptStore.iter_samples``). A sample counts once it has a verdict or
    an error (a rejected request counts as a failed sample with no length).

    - ``avg_at_k``: the mean over problems of each problem's pass rate c_i / n_i (with
      n_i = k for every problem it is pass@1 averaged over all k samples, the paper's avg@k);
    - ``stderr``: its standard error across problems, sqrt(s^2 / N) with s^2 the sample
      variance (n - 1) of the N per-problem pass rates: the uncertainty of the mean over
      the benchmark's problems, which includes the sampling noise within each problem;
    - ``pass_at_k``: Chen et al.'s unbiased estimator averaged over problems, for each k
      of ``ks_for`` the fewest samples any problem has;
    - lengths: mean and median over samples (``sample_length``); ``truncated_share``: the
      share of samples that stopped at max_new_tokens (finish_reason "length").
    """
    by_query: dict[str, dict[int, dict[str, Any]]] = {}
    for sample in samples:
        if sample.get("score") is None and not sample.get("error"):
            continue  # made, not yet verified: the next run verifies it
        by_query.setdefault(sample["query_id"], {})[sample["attempt"]] = sample
    lines, rates, lengths, truncated, counted, verifiers = [], [], [], 0, 0, set()
    for query_id, problem_id in problems:
        made = [by_query.get(query_id, {})[a] for a in sorted(by_query.get(query_id, {}))]
        scores = [float(s["score"] or 0.0) if not s.get("error") else 0.0 for s in made]
        passes = sum(score >= PASS_SCORE for score in scores)
        sizes = [sample_length(s) for s in made]
        cut = sum(s.get("finish_reason") == "length" for s in made)
        verifiers.update(s["verifier"] for s in made if s.get("verifier"))
        lines.append({
            "problem_id": problem_id, "query_id": query_id, "samples": len(made),
            "passes": passes, "pass_rate": passes / len(made) if made else None,
            "scores": scores, "lengths": sizes, "truncated": cut,
            "errors": sum(bool(s.get("error")) for s in made),
        })  # fmt: skip
        if made:
            rates.append(passes / len(made))
        lengths += [size for size in sizes if size is not None]
        truncated += cut
        counted += len(made)
    fewest = min((line["samples"] for line in lines), default=0)
    at_k = {}
    if fewest:
        for kk in ks_for(fewest):
            values = [pass_at_k(line["samples"], line["passes"], kk) for line in lines]
            at_k[str(kk)] = sum(values) / len(values)
    summary = {
        "problems": len(problems),
        "samples_per_problem": k,
        "samples": counted,
        "complete": fewest >= k,
        "avg_at_k": sum(rates) / len(rates) if rates else 0.0,
        "stderr": (statistics.variance(rates) / len(rates)) ** 0.5 if len(rates) > 1 else 0.0,
        "pass_at_k": at_k,
        "mean_length": statistics.fmean(lengths) if lengths else 0.0,
        "median_length": float(statistics.median(lengths)) if lengths else 0.0,
        "truncated_share": truncated / counted if counted else 0.0,
        "verifier": ",".join(sorted(verifiers)),
    }
    return summary, lines


def markdown(results: dict[str, Any]) -> str:
    """results.md: one row per benchmark."""
    head = (
        f"# {results['model']}\n\nhubtools {results['hubtools_version']}, {results['created']}\n\n"
        "| benchmark | problems | samples | avg@k (%) | ± stderr | pass@k (%) | mean length "
        "| median length | truncated (%) |\n|---|---|---|---|---|---|---|---|---|\n"
    )
    rows = []
    for name, b in results["benchmarks"].items():
        top = max(b["pass_at_k"], key=int) if b["pass_at_k"] else None
        at_k = f"{100 * b['pass_at_k'][top]:.1f} (k={top})" if top else "-"
        rows.append(
            f"| {name} | {b['problems']} | {b['samples_per_problem']} | "
            f"{100 * b['avg_at_k']:.1f} | {100 * b['stderr']:.1f} | {at_k} | "
            f"{b['mean_length']:.1f} | {b['median_length']:.1f} | "
            f"{100 * b['truncated_share']:.1f} |"
        )
    return head + "\n".join(rows) + "\n"


def write(out: Path, results: dict[str, Any], problems: dict[str, list[dict[str, Any]]]) -> None:
    """results.json, results.md and problems/NAME.jsonl, each replaced whole (never half)."""
    (out / "problems").mkdir(parents=True, exist_ok=True)
    for name, lines in problems.items():
        _replace(out / "problems" / f"{name}.jsonl", "".join(json.dumps(x) + "\n" for x in lines))
    _replace(out / "results.md", markdown(results))
    _replace(out / "results.json", json.dumps(results, indent=2) + "\n")


def read(out: Path) -> dict[str, Any]:
    return json.loads((Path(out) / "results.json").read_text())


def _replace(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())
    os.replace(tmp, path)
