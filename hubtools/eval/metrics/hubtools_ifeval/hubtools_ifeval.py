"""`hubtools_ifeval`: an `evaluate` metric that scores with hubtools' own verifier.

Google's IFEval checkers (EleutherAI lm-eval's copy) as hubtools' `ifeval` verifier runs them:
the strict share of a prompt's instructions the answer follows.

Load it offline with ``evaluate.load(hubtools.eval.metric_path("ifeval"))``.
"""

import evaluate

from hubtools.eval.metrics import ifeval_scores, metric_info, summary

_DESCRIPTION = __doc__
_INPUTS = """\
predictions: model outputs; references: JSON of IFEval rows {prompt, instruction_id_list,
kwargs}. Returns strict_accuracy (the mean) and scores (per sample)."""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _INPUTS)
class HubtoolsIfeval(evaluate.Metric):
    def _info(self):
        return metric_info(_DESCRIPTION, _INPUTS)

    def _compute(self, predictions, references):
        return summary(ifeval_scores(predictions, references), "strict_accuracy")
