"""`hubtools_code`: an `evaluate` metric that scores with hubtools' own verifier.

The answer's last ```python block run against the problem's tests in hubtools' bubblewrap
sandbox, as the `code-sandbox` verifier does: the share of tests passed (1.0: all passed).

Load it offline with ``evaluate.load(hubtools.eval.metric_path("code"))``.
"""

import evaluate

from hubtools.eval.metrics import code_scores, metric_info, summary

_DESCRIPTION = __doc__
_INPUTS = """\
predictions: model outputs; references: JSON of each problem's tests in hubtools' format
([{input, output}], {inputs, outputs}, {check, entry_point}, {script}, {pytest});
hubtools.eval.livecodebench.lcb_tests turns LiveCodeBench rows into them. Returns accuracy (the
mean) and scores (per sample)."""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _INPUTS)
class HubtoolsCode(evaluate.Metric):
    def _info(self):
        return metric_info(_DESCRIPTION, _INPUTS)

    def _compute(
        self, predictions, references, max_tests: int = 1_000_000, language: str = "python"
    ):
        return summary(
            code_scores(predictions, references, max_tests=max_tests, language=language), "accuracy"
        )
