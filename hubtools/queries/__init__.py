"""The query stage: bring prompts into a run's query set."""

from hubtools.queries.add import add

__all__ = ["add"]
