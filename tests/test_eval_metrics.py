"""The `evaluate` metric modules: `evaluate.load(path).compute(...)` equals hubtools' verifiers.

The metrics are loaded in a fresh process with HF_HUB_OFFLINE=1, as a user without
network would; their per-sample scores are compared with the registered verifiers'
scores computed here on the same inputs: real MATH500 rows (their own solutions, and
the same solutions with a wrong boxed answer), real IFEval prompts, GPQA-style letters,
and the LiveCodeBench rows of test_eval_lcb.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import shared_path
from test_eval_lcb import (
    FUNC_RIGHT,
    FUNC_WRONG,
    STDIN_PUBLIC_ONLY,
    STDIN_RIGHT,
    functional_row,
    stdin_row,
)

from hubtools.eval import metric_path
from hubtools.eval.livecodebench import lcb_tests
from hubtools.eval.metrics import METRICS
from hubtools.records import Category, Query
from hubtools.verify.base import SandboxConfig, VerifyConfig, verifier_for
from hubtools.verify.code import CodeVerifier

ROOT = Path(__file__).resolve().parents[1]
MATH_ROWS = 20

RUN_METRICS = """
import json, sys
import evaluate
from hubtools.eval import metric_path
inputs = json.load(open(sys.argv[1]))
out = {}
for name, (predictions, references) in inputs.items():
    metric = evaluate.load(metric_path(name))
    out[name] = metric.compute(predictions=predictions, references=references)
print(json.dumps(out))
"""


def math_inputs() -> tuple[list[str], list[str]]:
    path = shared_path("data/benchmarks/math500.jsonl")
    rows = [json.loads(line) for line in path.read_text().splitlines()[:MATH_ROWS]]
    right = [f"<think>Let me work it out.</think>{r['solution']}" for r in rows]
    wrong = [f"{r['solution']}\n\nThe final answer is $\\boxed{{{r['answer']}+1}}$." for r in rows]
    return right + wrong, [r["answer"] for r in rows] * 2


def ifeval_inputs() -> tuple[list[str], list[str]]:
    path = shared_path("data/benchmarks/ifeval_input_data.jsonl")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows = [r for r in rows if r["instruction_id_list"] == ["change_case:english_lowercase"]][:4]
    answers = ["<think>Lower case only.</think>this answer is all lowercase, as asked.",
               "This One Is Not."]  # fmt: skip
    predictions = [a for _ in rows for a in answers]
    return predictions, [json.dumps(r) for r in rows for _ in answers]


def gpqa_inputs() -> tuple[list[str], list[str]]:
    predictions = ["<think>B or C? C.</think>The answer is \\boxed{C}", "Answer: A",
                   "\\boxed{B} or maybe \\boxed{D}", "(D) Plane"]  # fmt: skip
    return predictions, ["C", "B", "B", "D"]


def code_inputs() -> tuple[list[str], list[str]]:
    rows = [
        (stdin_row(), STDIN_RIGHT, STDIN_PUBLIC_ONLY),
        (functional_row(), FUNC_RIGHT, FUNC_WRONG),
    ]
    predictions = [answer for _, right, wrong in rows for answer in (right, wrong)]
    return predictions, [json.dumps(lcb_tests(row)) for row, _, _ in rows for _ in range(2)]


def verifier_scores(name: str, predictions: list[str], references: list[str]) -> list[float]:
    """What the eval's own verifiers say, given the same (think-stripped) answers."""
    from hubtools.reasoning import split_reasoning

    config = VerifyConfig(code=SandboxConfig(max_tests=1000))
    category = {"math": Category.MATH, "gpqa": Category.SCIENCE, "ifeval": Category.IF,
                "code": Category.CODE}[name]  # fmt: skip
    verifier = CodeVerifier(config) if name == "code" else verifier_for(category, config)
    scores = []
    for prediction, reference in zip(predictions, references, strict=True):
        answer = split_reasoning(prediction).answer or ""
        if name == "ifeval":
            row = json.loads(reference)
            constraints = {
                "instruction_id_list": row["instruction_id_list"],
                "kwargs": row["kwargs"],
            }
            query = Query.from_prompt(row["prompt"], source="t", category=category,
                                      constraints=constraints)  # fmt: skip
        elif name == "code":
            query = Query.from_prompt("p", source="t", category=category,
                                      tests=json.loads(reference))  # fmt: skip
        else:
            query = Query.from_prompt("p", source="t", category=category, reference=reference)
        scores.append(verifier.verify(query, answer).value)
    return scores


def test_metric_paths():
    for name in METRICS:
        folder = Path(metric_path(name))
        assert (folder / f"{name}.py").is_file()
        assert metric_path(name.removeprefix("hubtools_")) == str(folder)
    with pytest.raises(ValueError, match="unknown hubtools metric"):
        metric_path("bleu")


def run_offline(inputs: dict, tmp_path: Path) -> dict:
    """evaluate.load(...).compute(...) for each metric in a fresh process, HF_HUB_OFFLINE=1."""
    (tmp_path / "inputs.json").write_text(json.dumps(inputs))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "PYTHONPATH": str(ROOT)}  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-c", RUN_METRICS, str(tmp_path / "inputs.json")],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    for name, (predictions, references) in inputs.items():
        expected = verifier_scores(name, predictions, references)
        assert got[name]["scores"] == expected, name
        key = "strict_accuracy" if name == "ifeval" else "accuracy"
        assert got[name][key] == pytest.approx(sum(expected) / len(expected))
    return got


def test_math_and_gpqa_metrics_offline_match_the_verifiers(tmp_path):
    got = run_offline({"math": math_inputs(), "gpqa": gpqa_inputs()}, tmp_path)
    math = got["math"]["scores"]
    assert sum(math[:MATH_ROWS]) >= 0.9 * MATH_ROWS and sum(math[MATH_ROWS:]) == 0
    assert got["gpqa"]["scores"] == [1.0, 0.0, 0.0, 1.0]


@pytest.mark.slow
def test_ifeval_and_code_metrics_offline_match_the_verifiers(tmp_path):
    inputs = {"ifeval": ifeval_inputs()}
    if CodeVerifier().sandbox.unavailable_reason() is None:
        inputs["code"] = code_inputs()
    got = run_offline(inputs, tmp_path)
    assert got["ifeval"]["scores"][::2] == [1.0] * 4 and got["ifeval"]["scores"][1::2] == [0.0] * 4
    if "code" in got:
        assert got["code"]["scores"][0] == 1.0 and got["code"]["scores"][2] == 1.0
        assert got["code"]["scores"][1] < 1.0 and got["code"]["scores"][3] < 1.0
