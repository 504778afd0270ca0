"""hubtools' verifiers as `evaluate` metrics: ``evaluate.load(metric_path("hubtools_math"))``.

Each module (``hubtools_<name>/hubtools_<name>.py``) is a thin ``evaluate.Metric`` whose
``_compute`` calls the functions below, which call the verifiers the eval scores with,
so a metric's scores are hubtools' scores. The modules load from this folder, offline
(``HF_HUB_OFFLINE=1``): nothing is fetched from the Hub.

Every metric returns the mean score (``accuracy``; IFEval: the strict share of
instructions followed) and the per-sample ``scores``; predictions are the model's whole
output, a ``<think>`` part is dropped first, as the eval does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CITATION = """@article{tian2025notallcorrect, title={Not All Correct Answers Are Equal: Why Your
Distillation Source Matters}, author={Tian, Xiaoyu and Ji, Yunjie and Wang, Haotian and Chen,
Shuaiting and Zhao, Sitong and Peng, Yiping and Zhao, Han and Li, Xiangang}, journal={arXiv
preprint arXiv:2505.14464}, year={2025}}"""
METRICS = ("hubtools_math", "hubtools_code", "hubtools_ifeval", "hubtools_gpqa")
HERE = Path(__file__).resolve().parent


def metric_path(name: str) -> str:
    """The folder ``evaluate.load`` takes for a metric (``math`` or ``hubtools_math``)."""
    full = name if name.startswith("hubtools_") else f"hubtools_{name}"
    if full not in METRICS:
        choices = ", ".join(m.removeprefix("hubtools_") for m in METRICS)
        raise ValueError(f"unknown hubtools metric {name!r}; use one of: {choices}")
    return str(HERE / full)


def metric_info(description: str, inputs: str) -> Any:
    """The ``evaluate.MetricInfo`` every hubtools metric shares: string predictions and
    references (JSON where a reference is structured), the paper's citation."""
    import datasets
    import evaluate

    features = {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
    return evaluate.MetricInfo(
        description=description,
        citation=CITATION,
        inputs_description=inputs,
        features=datasets.Features(features),
    )


def final_answer(prediction: str) -> str:
    """The answer without its reasoning (an unclosed <think> leaves no answer)."""
    from hubtools.reasoning import split_reasoning

    return split_reasoning(prediction).answer or ""


def summary(scores: list[float], key: str = "accuracy") -> dict[str, Any]:
    return {key: sum(scores) / len(scores) if scores else 0.0, "scores": scores}


def math_scores(predictions: list[str], references: list[str], timeout_s: int = 5) -> list[float]:
    """Math-Verify on the boxed/stated final answer (``MathVerifier``'s check)."""
    from hubtools.verify.math import check_math

    return [
        check_math(r, final_answer(p), timeout_s).value
        for p, r in zip(predictions, references, strict=True)
    ]


def gpqa_scores(predictions: list[str], references: list[str]) -> list[float]:
    """The option letter the answer gives against the reference letter (``ScienceVerifier``)."""
    from hubtools.verify.science import check_choice

    return [
        check_choice(r, final_answer(p)).value for p, r in zip(predictions, references, strict=True)
    ]


def _parse(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def ifeval_scores(predictions: list[str], references: list[Any]) -> list[float]:
    """References: IFEval rows (``prompt``, ``instruction_id_list``, ``kwargs``), JSON or dicts."""
    from hubtools.verify.ifeval import check_constraints

    out = []
    for prediction, reference in zip(predictions, references, strict=True):
        row = _parse(reference)
        constraints = {"instruction_id_list": row["instruction_id_list"], "kwargs": row["kwargs"]}
        out.append(
            check_constraints(constraints, row.get("prompt", ""), final_answer(prediction)).value
        )
    return out


def code_scores(
    predictions: list[str],
    references: list[Any],
    *,
    max_tests: int = 1_000_000,
    language: str = "python",
) -> list[float]:
    """References: each problem's tests in hubtools' format (README, `code` queries), JSON or
    lists. The share of tests passed in the sandbox (``CodeVerifier``)."""
    from hubtools.records import Category, Query
    from hubtools.verify.base import SandboxConfig, VerifyConfig
    from hubtools.verify.code import CodeVerifier

    verifier = CodeVerifier(VerifyConfig(code=SandboxConfig(max_tests=max_tests)))
    out = []
    for prediction, reference in zip(predictions, references, strict=True):
        query = Query.from_prompt("(evaluate metric)", source="evaluate", category=Category.CODE,
                                  tests=_parse(reference), meta={"language": language})  # fmt: skip
        out.append(verifier.verify(query, final_answer(prediction)).value)
    return out
