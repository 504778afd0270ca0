"""`hubtools eval compare`: the paper's Table 1 shape from results.json files, as a user runs it.

The folders hold results.json written to the contract of hubtools/eval/results.py, with the
paper's own numbers (specs/paper.md, Table 1) for three students, so the rendered table can
be checked cell by cell against the paper.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from hubtools.eval.compare import compare
from hubtools.eval.settings import MATH_SUFFIX, PAPER_SYSTEM_PROMPT

ROOT = Path(__file__).resolve().parents[1]
DATASETS = {
    "aime_2024": ("HuggingFaceH4/aime_2024", "train", 30, 64),
    "aime_2025": ("yentinglin/aime_2025", "train", 30, 64),
    "math500": ("HuggingFaceH4/MATH-500", "test", 500, 4),
    "livecodebench": ("livecodebench/code_generation_lite", "test", 166, 16),
}
# The paper's Table 1: avg@k (%) and mean length for the AM / Qwen3 / R1-distilled students.
PAPER = {
    "AM-distilled": {"aime_2024": (84.3, 15273.8), "aime_2025": (72.2, 18199.2),
                     "math500": (98.4, 3495.7), "livecodebench": (65.9, 23426.9)},
    "Qwen3-distilled": {"aime_2024": (79.4, 13516.4), "aime_2025": (62.2, 16975.7),
                        "math500": (93.9, 6429.4), "livecodebench": (59.6, 13576.7)},
    "R1-distilled": {"aime_2024": (70.9, 11853.5), "aime_2025": (52.8, 13495.9),
                     "math500": (95.8, 3613.0), "livecodebench": (57.0, 30731.0)},
}  # fmt: skip


def benchmark(name: str, score: float, length: float, **changes) -> dict:
    dataset, split, problems, k = DATASETS[name]
    entry = {
        "dataset": dataset, "revision": "0" * 40, "split": split, "problems": problems,
        "samples_per_problem": k,
        "settings": {"temperature": 0.6, "top_p": 0.95, "max_new_tokens": 49152,
                     "system_prompt": PAPER_SYSTEM_PROMPT,
                     "suffix": MATH_SUFFIX if name != "livecodebench" else None},
        "avg_at_k": score / 100, "stderr": 0.012, "pass_at_k": {"1": score / 100},
        "mean_length": length, "median_length": length, "truncated_share": 0.0,
        "verifier": "math-verify" if name != "livecodebench" else "code-sandbox",
    }  # fmt: skip
    for key, value in changes.items():
        if key in entry["settings"]:
            entry["settings"][key] = value
        else:
            entry[key] = value
    return entry


def write_eval(folder: Path, model: str, benchmarks: dict[str, dict]) -> Path:
    folder.mkdir(parents=True)
    results = {"model": model, "endpoint": "http://127.0.0.1:8000/v1", "hubtools_version": "0",
               "created": "2025-05-20T00:00:00+00:00", "settings": {},
               "benchmarks": benchmarks}  # fmt: skip
    (folder / "results.json").write_text(json.dumps(results))
    return folder


def paper_evals(root: Path, **changes_for_r1) -> list[Path]:
    folders = []
    for model, rows in PAPER.items():
        extra = changes_for_r1 if model == "R1-distilled" else {}
        benches = {n: benchmark(n, s, length, **(extra if n == "math500" else {}))
                   for n, (s, length) in rows.items()}  # fmt: skip
        folders.append(write_eval(root / model, model, benches))
    return folders


def cells(markdown: str) -> dict[str, list[str]]:
    rows = [line.strip("|").split("|") for line in markdown.splitlines() if line.startswith("| ")]
    return {r[0].strip(): [c.strip() for c in r[1:]] for r in rows}


def test_paper_table_shape(tmp_path):
    result = compare(paper_evals(tmp_path), out=tmp_path / "table.md", figure=tmp_path / "t.png")
    table = cells(result.markdown)
    header = table.pop("benchmark")
    assert header[:3] == [f"{m} avg@k (%)" for m in PAPER]
    assert header[3:] == [f"{m} mean length" for m in PAPER]
    assert list(table) == ["AIME2024 (avg@64)", "AIME2025 (avg@64)", "MATH500 (avg@4)",
                           "LiveCodeBench (avg@16)"]  # fmt: skip
    for row, name in zip(table.values(), DATASETS, strict=True):
        scores = [f"{PAPER[m][name][0]:.1f} ± 1.2" for m in PAPER]
        lengths = [f"{PAPER[m][name][1]:.1f}" for m in PAPER]
        assert row == scores + lengths
    assert not result.mismatches and "†" not in result.markdown
    assert (tmp_path / "table.md").read_text() == result.markdown
    png = (tmp_path / "t.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_mismatched_settings_are_flagged(tmp_path):
    folders = paper_evals(tmp_path, samples_per_problem=1, temperature=1.0)
    result = compare(folders)
    assert result.mismatches == {
        "math500": ["samples_per_problem: 4 vs 4 vs 1", "temperature: 0.6 vs 0.6 vs 1.0"]
    }
    table = cells(result.markdown)
    assert "MATH500 (avg@1/4) †" in table
    assert "- MATH500: samples_per_problem: 4 vs 4 vs 1; temperature: 0.6 vs 0.6 vs 1.0" in (
        result.markdown
    )


def test_missing_benchmarks_and_same_model_twice(tmp_path):
    a = write_eval(tmp_path / "run-a", "student", {"math500": benchmark("math500", 90.0, 3000)})
    b = write_eval(tmp_path / "run-b", "student",
                   {"aime_2024": benchmark("aime_2024", 40.0, 9000)})  # fmt: skip
    result = compare([a, b])
    table = cells(result.markdown)
    assert table["benchmark"][:2] == ["student (run-a) avg@k (%)", "student (run-b) avg@k (%)"]
    assert table["AIME2024 (avg@64)"] == ["—", "40.0 ± 1.2", "—", "9000.0"]
    assert table["MATH500 (avg@4)"] == ["90.0 ± 1.2", "—", "3000.0", "—"]


def test_cli(tmp_path):
    folders = paper_evals(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-m", "hubtools", "eval", "compare", *map(str, folders), "--json",
         "--figure", str(tmp_path / "fig" / "compare.svg")],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["models"] == list(PAPER)
    assert data["benchmarks"]["math500"]["AM-distilled"]["avg_at_k"] == 98.4 / 100
    assert (tmp_path / "fig" / "compare.svg").read_text().lstrip().startswith("<?xml")


def test_partial_evals_are_marked_and_bad_numbers_refused(tmp_path):
    import pytest

    from hubtools.errors import InputFileError

    done = write_eval(tmp_path / "done", "a", {"math500": benchmark("math500", 90.0, 3000)})
    half = write_eval(tmp_path / "half", "b",
                      {"math500": benchmark("math500", 50.0, 3000, complete=False)})  # fmt: skip
    result = compare([done, half])
    assert "MATH500 (avg@4) ‡" in cells(result.markdown)
    assert "‡ not every sample was made or verified yet: b (MATH500)" in result.markdown
    bad = write_eval(tmp_path / "bad", "c",
                     {"math500": benchmark("math500", 90.0, 3000, mean_length=None)})  # fmt: skip
    with pytest.raises(InputFileError, match="mean_length is not a number"):
        compare([done, bad])
