"""Where log-probabilities come from: a local transformers model, or a TGI, vLLM or SGLang
server. Every backend answers the same question (``base.ScoringBackend``), so a score
means the same whichever computed it."""

from hubtools.quality.backends.base import LogProbs, ScoreRequest, ScoringBackend, ScoringError

__all__ = ["LogProbs", "ScoreRequest", "ScoringBackend", "ScoringError"]
