"""`hubtools_math`: an `evaluate` metric that scores with hubtools' own verifier.

Math-Verify on the final answer (\\boxed{...} or a stated final answer), as hubtools' `math-
verify` verifier scores AIME and MATH500: 1 when equivalent to the reference, else 0; several
different boxed answers score 0.

Load it offline with ``evaluate.load(hubtools.eval.metric_path("math"))``.
"""

import evaluate

from hubtools.eval.metrics import math_scores, metric_info, summary

_DESCRIPTION = __doc__
_INPUTS = """\
predictions: model outputs (a <think> part is dropped); references: the reference answers
(LaTeX or plain). Returns accuracy (the mean) and scores (per sample)."""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _INPUTS)
class HubtoolsMath(evaluate.Metric):
    def _info(self):
        return metric_info(_DESCRIPTION, _INPUTS)

    def _compute(self, predictions, references, timeout_s: int = 5):
        return summary(math_scores(predictions, references, timeout_s), "accuracy")
