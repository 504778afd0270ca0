"""Query filters (the paper's cleaning rules), each a small class named for what it drops.

A filter looks at a whole batch at once (Arrow's RE2 kernels: per-row Python regexes
cost minutes at two million queries) and answers a boolean per query: True = remove.
``explain`` says why for one removed query, so a removed row shows the offending text.
Patterns are written in the subset RE2 and Python's ``re`` share.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hubtools.plural import plural
from hubtools.records import Category


@dataclass(frozen=True, slots=True)
class FilterParams:
    """The knobs of the default filters; frozen in the run's ``clean:`` section."""

    min_words: int = 3
    max_chars: int = 16_000
    max_unusual_ratio: float = 0.1
    require_ground_truth: bool = True

    def to_dict(self) -> dict[str, float | int | bool]:
        return asdict(self)


@dataclass(slots=True)
class FilterBatch:
    """What filters see of a batch of queries (one entry per query)."""

    texts: pa.Array  # every turn as "role: content", as written
    lower: pa.Array  # NFKC, lower case
    words: np.ndarray  # word count (text.tokenize)
    categories: np.ndarray  # category values (str)
    has_reference: np.ndarray
    has_tests: np.ndarray
    has_constraints: np.ndarray


class QueryFilter:
    """Base: ``name`` is the funnel line; ``remove`` flags queries, ``explain`` says why."""

    name = ""

    def remove(self, batch: FilterBatch) -> np.ndarray:
        raise NotImplementedError

    def explain(self, text: str) -> str:
        return self.name


class RegexFilter(QueryFilter):
    """Removes queries whose lower-cased text matches ``pattern``."""

    pattern = ""

    def __init__(self) -> None:
        self._python = re.compile(self.pattern)

    def remove(self, batch: FilterBatch) -> np.ndarray:
        return _bools(pc.match_substring_regex(batch.lower, self.pattern))

    def explain(self, text: str) -> str:
        found = self._python.search(text.lower())
        return f"{self.name}: {found.group(0)[:80]!r}" if found else self.name


class EmptyQueryFilter(QueryFilter):
    """No letter or digit at all: nothing to answer ("?", "...", emoji only)."""

    name = "empty"

    def remove(self, batch: FilterBatch) -> np.ndarray:
        return batch.words == 0


class IncompleteQueryFilter(QueryFilter):
    """Too few words to be a question, or cut off where the question should follow
    (a prompt that ends with ':' announces text that is not there)."""

    name = "incomplete"

    def __init__(self, min_words: int):
        self.min_words = min_words

    def remove(self, batch: FilterBatch) -> np.ndarray:
        dangling = _bools(pc.match_substring_regex(batch.texts, r":\s*$"))
        return (batch.words < self.min_words) | dangling

    def explain(self, text: str) -> str:
        if text.rstrip().endswith(":"):
            return f"{self.name}: ends with ':' ({text.rstrip()[-60:]!r})"
        return f"{self.name}: fewer than {plural(self.min_words, 'word')}"


class MissingGroundTruthFilter(QueryFilter):
    """A query its category's verifier cannot score: math and science need a reference,
    code needs tests (the paper: every code query carries test cases), IF constraints."""

    name = "no ground truth"
    NEEDS = {
        Category.MATH.value: "reference",
        Category.SCIENCE.value: "reference",
        Category.CODE.value: "tests",
        Category.IF.value: "constraints",
    }

    def remove(self, batch: FilterBatch) -> np.ndarray:
        have = {
            "reference": batch.has_reference,
            "tests": batch.has_tests,
            "constraints": batch.has_constraints,
        }
        missing = np.zeros(len(batch.words), dtype=bool)
        for category, needed in self.NEEDS.items():
            missing |= (batch.categories == category) & ~have[needed]
        return missing

    def explain(self, text: str) -> str:
        return f"{self.name}: the category's verifier needs a reference, tests or constraints"


class UnusualUnicodeFilter(QueryFilter):
    """A high share of characters that are noise in a prompt: control and format
    characters, private use, U+FFFD, box drawing, and mojibake pairs such as 'Ã©'."""

    name = "unusual unicode"
    pattern = (
        r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"
        r"|[\x{200b}-\x{200f}\x{202a}-\x{202e}\x{2060}-\x{206f}\x{feff}]"
        r"|[\x{e000}-\x{f8ff}\x{f0000}-\x{10ffff}\x{fffd}\x{2500}-\x{259f}]"
        r"|[\x{c2}\x{c3}][\x{80}-\x{bf}]|\x{e2}\x{20ac}"
    )

    def __init__(self, max_ratio: float):
        self.max_ratio = max_ratio

    def _ratios(self, texts: pa.Array) -> np.ndarray:
        unusual = pc.count_substring_regex(texts, self.pattern).to_numpy(zero_copy_only=False)
        length = pc.utf8_length(texts).to_numpy(zero_copy_only=False)
        return unusual / np.maximum(length, 1)

    def remove(self, batch: FilterBatch) -> np.ndarray:
        return self._ratios(batch.texts) > self.max_ratio

    def explain(self, text: str) -> str:
        ratio = float(self._ratios(pa.array([text]))[0])
        return f"{self.name}: {ratio:.0%} of characters (limit {self.max_ratio:.0%})"


class UrlFilter(RegexFilter):
    """Links: the answer would depend on a page the model cannot see."""

    name = "url"
    pattern = r"\b(?:https?|ftp)://[^\s]+|\bwww\.[a-z0-9-]+\.[a-z]{2,}"


class TableFilter(RegexFilter):
    """Tables (Markdown, HTML, LaTeX tabular): the paper drops them; they rarely survive
    the flattening of a dataset into text."""

    name = "table"
    pattern = (
        r"(?m)^\s*\|?\s*:?-{3,}:?\s*(?:\|\s*:?-{3,}:?\s*)+\|?\s*$"
        r"|<table\b|\\begin\{tabular\}"
    )


class ImageReferenceFilter(RegexFilter):
    """A query that refers to an image it does not carry (AM-Thinking-v1's rule)."""

    name = "image reference"
    pattern = (
        r"!\[[^\]]*\]\(|<img\b|<image>|\[image\]|\\includegraphics"
        r"|\b[a-z0-9_-]+\.(?:png|jpe?g|gif|svg|webp)\b"
        r"|\b(?:shown|depicted|illustrated|pictured)\s+(?:in|on)\s+the\s+"
        r"(?:figure|image|diagram|picture|graph|photo)"
        r"|\b(?:see|in)\s+the\s+(?:figure|image|diagram|picture|photo)\s+(?:below|above)"
        r"|\b(?:figure|image|diagram|picture|photo)\s+(?:below|above)\b"
    )


class TooLongFilter(QueryFilter):
    """Prompts longer than ``max_chars`` (about a quarter as many tokens): they crowd out
    the answer in the 32k training context."""

    name = "too long"

    def __init__(self, max_chars: int):
        self.max_chars = max_chars

    def remove(self, batch: FilterBatch) -> np.ndarray:
        return pc.utf8_length(batch.texts).to_numpy(zero_copy_only=False) > self.max_chars

    def explain(self, text: str) -> str:
        return f"{self.name}: {plural(len(text), 'character')} (limit {self.max_chars:,})"


def default_filters(params: FilterParams) -> list[QueryFilter]:
    """The filters in funnel order; a query is counted under the first that removes it."""
    filters: list[QueryFilter] = [EmptyQueryFilter(), IncompleteQueryFilter(params.min_words)]
    if params.require_ground_truth:
        filters.append(MissingGroundTruthFilter())
    filters += [
        UnusualUnicodeFilter(params.max_unusual_ratio),
        UrlFilter(),
        TableFilter(),
        ImageReferenceFilter(),
        TooLongFilter(params.max_chars),
    ]
    return filters


def first_removal(filters: list[QueryFilter], batch: FilterBatch) -> np.ndarray:
    """Per query, the index of the first filter that removes it, or -1."""
    result = np.full(len(batch.words), -1, dtype=np.int16)
    for index, query_filter in enumerate(filters):
        undecided = result == -1
        if not undecided.any():
            break
        result[undecided & query_filter.remove(batch)] = index
    return result


def _bools(array: pa.Array) -> np.ndarray:
    return array.fill_null(False).to_numpy(zero_copy_only=False)
