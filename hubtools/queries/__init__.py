"""The query stage: bring prompts into a run's query set.

``add`` loads a file as it is; ``pull`` streams Hub datasets into the run's pool,
``clean`` filters, deduplicates and decontaminates the pool into the query set, and
``export`` writes the query set (or what was removed) as JSONL.
"""

from hubtools.queries.add import add
from hubtools.queries.clean import clean
from hubtools.queries.export import export
from hubtools.queries.pull import pull

__all__ = ["add", "clean", "export", "pull"]
