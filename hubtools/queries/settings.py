"""The settings of ``queries clean``: what shapes the query set, frozen in ``run.yaml``.

They live in the run's ``clean:`` section, written by the first ``clean`` and compared
by every later one (a different value is refused with the key that differs), so every
shard of a run, and every re-run, cleans the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from hubtools.errors import UsageError
from hubtools.queries.decontaminate import (
    DEFAULT_BENCHMARKS,
    DEFAULT_EMBEDDING_MODEL,
    BenchmarkSpec,
)
from hubtools.queries.dedup import MinHashParams
from hubtools.queries.filters import FilterParams

SECTION = "clean"


@dataclass(frozen=True, slots=True)
class CleanSettings:
    filters: FilterParams = field(default_factory=FilterParams)
    minhash: MinHashParams = field(default_factory=MinHashParams)
    benchmarks: tuple[BenchmarkSpec, ...] = DEFAULT_BENCHMARKS
    ngram: int = 8
    min_overlap: float = 0.5
    embeddings: bool = False
    embedding_model: str = DEFAULT_EMBEDDING_MODEL
    embedding_threshold: float = 0.9

    def to_dict(self) -> dict[str, Any]:
        return {
            "filters": self.filters.to_dict(),
            "minhash": self.minhash.to_dict(),
            "benchmarks": [b.to_dict() for b in self.benchmarks],
            "decontamination": {
                "ngram": self.ngram,
                "min_overlap": self.min_overlap,
                "embeddings": self.embeddings,
                "embedding_model": self.embedding_model,
                "embedding_threshold": self.embedding_threshold,
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CleanSettings:
        try:
            decon = dict(data.get("decontamination") or {})
            return cls(
                filters=FilterParams(**(data.get("filters") or {})),
                minhash=MinHashParams(**(data.get("minhash") or {})),
                benchmarks=tuple(
                    BenchmarkSpec.from_dict(b)
                    for b in data.get("benchmarks", [b.to_dict() for b in DEFAULT_BENCHMARKS])
                ),
                **decon,
            )
        except TypeError as err:
            raise UsageError(f"bad '{SECTION}:' section in run.yaml: {err}") from None

    def with_options(
        self,
        *,
        benchmarks: tuple[BenchmarkSpec, ...] | None = None,
        embeddings: bool | None = None,
        embedding_model: str | None = None,
        embedding_threshold: float | None = None,
    ) -> CleanSettings:
        """These settings with the command line's choices (None = not given)."""
        changes: dict[str, Any] = {}
        if benchmarks is not None:
            changes["benchmarks"] = benchmarks
        if embeddings is not None:
            changes["embeddings"] = embeddings
        if embedding_model is not None:
            changes["embedding_model"] = embedding_model
        if embedding_threshold is not None:
            changes["embedding_threshold"] = embedding_threshold
        return replace(self, **changes)
