"""Exact and near-duplicate detection over millions of queries, in numpy.

Near duplicates are found with MinHash and LSH banding, written here rather than taken
from datasketch because datasketch's ``MinHash`` hashes one shingle at a time in Python
and its ``MinHashLSH`` keeps a Python dict entry per band per key: at two million
queries that is hours of CPU and gigabytes of dicts (``bench/queries_clean.md``). Here:

- shingles are word 3-grams hashed to uint64 once per batch (``text.ngrams``); each
  permutation is a multiply-add-shift hash ``(a*x + b) >> 32`` (Dietzfelbinger's
  strongly universal family, exact in wrapping uint64 arithmetic, where ``(a*x+b) mod p``
  needs 128 bits) and the minimum per query is one ``np.minimum.reduceat``;
- bands are hashed to one uint64 each; buckets are runs of equal values after a stable
  ``argsort`` per band (the sort is the bucket dict, without a Python object per key);
- every bucket member is paired with the bucket's first and previous member, so a bucket
  of k queries gives < 2k candidate pairs, never k^2;
- a candidate is a duplicate when the signatures agree on >= ``threshold`` of their
  positions (the Jaccard estimate) AND the two queries have the same numbers and operators
  (``text.math_signatures``): "Compute 3 + 5" is never a duplicate of "Compute 4 + 5",
  however long the shared text;
- a query is removed when it duplicates an earlier query that is kept (greedy leaders in
  query order), so adding queries later never changes what was decided for earlier ones.

Short queries (fewer words than the shingle size) have a single shingle of all their
words: they are near duplicates only when their words are identical.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

import numpy as np

from hubtools.queries.text import Tokens, fmix64, ngrams

EMPTY = np.uint32(0xFFFFFFFF)


@dataclass(frozen=True, slots=True)
class MinHashParams:
    """Shingle size, LSH shape and the Jaccard estimate two near duplicates must reach.

    20 bands of 4 rows make pairs at Jaccard 0.7 candidates with probability 0.996 and
    pairs at 0.3 with 0.15; the signature check then decides.
    """

    ngram: int = 3
    bands: int = 20
    rows: int = 4
    threshold: float = 0.7
    seed: int = 1

    @property
    def permutations(self) -> int:
        return self.bands * self.rows

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


class MinHasher:
    """Signatures (uint32 per permutation) and band hashes of tokenised texts."""

    def __init__(self, params: MinHashParams):
        self.params = params
        rng = np.random.default_rng(params.seed)
        k = params.permutations
        self._a = rng.integers(1, 2**63, size=k, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        self._b = rng.integers(0, 2**63, size=k, dtype=np.uint64)
        self._band_salt = rng.integers(1, 2**63, size=(params.bands, params.rows), dtype=np.uint64)

    def signatures(self, tokens: Tokens) -> np.ndarray:
        """(texts, permutations) uint32; a text without words has all values ``EMPTY``."""
        grams, owner = ngrams(tokens, self.params.ngram)
        count = len(tokens.lengths)
        result = np.full((count, self.params.permutations), EMPTY, dtype=np.uint32)
        if not len(grams):
            return result
        keys = (grams >> np.uint64(32)) ^ (grams & np.uint64(0xFFFFFFFF))
        starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
        present = owner[starts]
        shift = np.uint64(32)
        values = np.empty_like(keys)
        mins = np.empty((self.params.permutations, len(starts)), dtype=np.uint64)
        with np.errstate(over="ignore"):
            for k in range(self.params.permutations):  # in place: half the memory traffic
                np.multiply(keys, self._a[k], out=values)
                np.add(values, self._b[k], out=values)
                np.right_shift(values, shift, out=values)
                np.minimum.reduceat(values, starts, out=mins[k])
        result[present] = mins.T
        return result

    def band_hashes(self, signatures: np.ndarray) -> np.ndarray:
        """(texts, bands) uint64: one hash per band of ``rows`` signature values."""
        p = self.params
        grouped = signatures.reshape(len(signatures), p.bands, p.rows).astype(np.uint64)
        with np.errstate(over="ignore"):
            mixed = (fmix64(grouped + np.uint64(1)) * self._band_salt).sum(axis=2, dtype=np.uint64)
        return fmix64(mixed)


def compact_signatures(signatures: np.ndarray) -> np.ndarray:
    """The low 16 bits of each value (b-bit MinHash): a chance agreement costs 2^-16."""
    return (signatures & np.uint32(0xFFFF)).astype(np.uint16)


def first_occurrences(keys: np.ndarray, eligible: np.ndarray) -> np.ndarray:
    """For each row, the index of the first eligible row with its key (itself if first);
    -1 where not eligible. Rows are in query order."""
    match = np.full(len(keys), -1, dtype=np.int64)
    rows = np.flatnonzero(eligible)
    if not len(rows):
        return match
    _, first, inverse = np.unique(keys[rows], return_index=True, return_inverse=True)
    match[rows] = rows[first[inverse]]
    return match


def candidate_pairs(bands: Iterable[np.ndarray], eligible: np.ndarray) -> np.ndarray:
    """(pairs, 2) int64 of row indices ``earlier, later`` that share a band bucket.

    ``bands`` yields one uint64 column (all rows, query order) per band, so only one
    band is in memory at a time.
    """
    rows = np.flatnonzero(eligible)
    count = np.int64(len(eligible))
    keys = np.empty(0, dtype=np.int64)  # earlier * count + later, sorted and unique
    for column in bands:
        values = column[rows]
        order = np.argsort(values, kind="stable")
        ordered = values[order]
        same = ordered[1:] == ordered[:-1]
        if not same.any():
            continue
        members = np.flatnonzero(same) + 1  # positions (in sorted order) with a predecessor
        starts = np.flatnonzero(np.r_[True, ~same])
        group_first = starts[np.searchsorted(starts, members, side="right") - 1]
        chain = members[(members - 1) != group_first]
        earlier = np.concatenate([rows[order[group_first]], rows[order[chain - 1]]])
        later = np.concatenate([rows[order[members]], rows[order[chain]]])
        keys = np.union1d(keys, earlier * count + later)  # one band's pairs at a time
    return np.stack([keys // count, keys % count], axis=1)


def verify_pairs(
    pairs: np.ndarray,
    signatures_of: Callable[[np.ndarray], np.ndarray],
    math: np.ndarray,
    threshold: float,
) -> tuple[np.ndarray, np.ndarray]:
    """The pairs that are near duplicates, and their Jaccard estimates.

    ``signatures_of(rows)`` returns the compact signatures of those rows (sorted, unique
    row indices in, one signature row each out), so only candidates are loaded.
    """
    if not len(pairs):
        return pairs, np.empty(0)
    same_math = math[pairs[:, 0]] == math[pairs[:, 1]]
    pairs = pairs[same_math]
    if not len(pairs):
        return pairs, np.empty(0)
    involved = np.unique(pairs)
    table = signatures_of(involved)
    left = table[np.searchsorted(involved, pairs[:, 0])]
    right = table[np.searchsorted(involved, pairs[:, 1])]
    similarity = (left == right).mean(axis=1)
    keep = similarity >= threshold
    return pairs[keep], similarity[keep]


def greedy_leaders(
    pairs: np.ndarray, similarity: np.ndarray, count: int
) -> tuple[np.ndarray, np.ndarray]:
    """``match[j]`` = the earliest kept row j duplicates (-1 if j is kept), with its score.

    Rows are decided in query order: j is removed when it duplicates a row that is kept.
    """
    match = np.full(count, -1, dtype=np.int64)
    score = np.zeros(count)
    if not len(pairs):
        return match, score
    order = np.lexsort((pairs[:, 0], pairs[:, 1]))
    for (earlier, later), value in zip(
        pairs[order].tolist(), similarity[order].tolist(), strict=True
    ):
        if match[later] == -1 and match[earlier] == -1:
            match[later], score[later] = earlier, value
    return match, score
