"""`hubtools_gpqa`: an `evaluate` metric that scores with hubtools' own verifier.

The option letter an answer gives (\\boxed{C}, 'Answer: C', ...) against the reference letter,
as hubtools' `science` verifier scores GPQA-Diamond; two different letters score 0.

Load it offline with ``evaluate.load(hubtools.eval.metric_path("gpqa"))``.
"""

import evaluate

from hubtools.eval.metrics import gpqa_scores, metric_info, summary

_DESCRIPTION = __doc__
_INPUTS = """\
predictions: model outputs; references: the correct option letters (A-J). Returns accuracy (the
mean) and scores (per sample)."""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _INPUTS)
class HubtoolsGpqa(evaluate.Metric):
    def _info(self):
        return metric_info(_DESCRIPTION, _INPUTS)

    def _compute(self, predictions, references):
        return summary(gpqa_scores(predictions, references), "accuracy")
