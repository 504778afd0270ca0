"""``hubtools analyze``: the paper's teacher comparison (arXiv 2505.14464, Figures 2-5).

Over the queries every listed teacher passed, it measures per teacher and category the
instances, response tokens (think + answer) and perplexity, and writes the figures as
PNG, every number behind them in ``stats.json`` and the tables in ``report.md``.

Modules, one role each: ``collect`` reads the responses (from a run store or from
published releases) into numeric arrays, never texts; ``stats`` turns arrays into
numbers; ``figures`` draws them (matplotlib, Agg); ``report`` writes the markdown;
``stage`` is the verb.
"""

from hubtools.analysis.stage import AnalyzeResult, analyze, analyze_releases, analyze_run

__all__ = ["AnalyzeResult", "analyze", "analyze_releases", "analyze_run"]
