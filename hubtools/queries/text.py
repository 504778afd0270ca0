"""Vectorised text keys for cleaning: normalised text, word tokens, n-gram hashes.

Everything here works on a whole batch at once (Arrow string kernels, numpy on the
token hashes), because per-row Python costs minutes at two million queries.

Digits survive every step. Peers that map every digit to 0 before hashing (datatrove's
MinHash normalisation) merge math problems that differ only in their numbers; here the
numbers are tokens like any word, and ``math_signatures`` keys the numbers and operators
of a query so that near-duplicate detection can insist they are equal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

_M1 = np.uint64(0xFF51AFD7ED558CCD)
_M2 = np.uint64(0xC4CEB9FE1A85EC53)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_S33 = np.uint64(33)

# A token is a run of letters and digits: punctuation, LaTeX braces and markup split words.
_NON_WORD = r"[^\pL\pN]+"
# Numbers and the operators that change a problem's meaning ('-' is left out: it is
# also a hyphen, and prose varies its use).
_NON_MATH = r"[^\pN+*/=<>^]+"


def fmix64(values: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser: spreads every input bit over the output."""
    with np.errstate(over="ignore"):
        values = values ^ (values >> _S33)
        values = values * _M1
        values = values ^ (values >> _S33)
        values = values * _M2
        return values ^ (values >> _S33)


def hash_strings(strings: pa.Array) -> np.ndarray:
    """A stable 64-bit hash (xxh3) of each string; null hashes to 0."""
    return np.fromiter(
        (0 if s is None else xxhash.xxh3_64_intdigest(s.encode()) for s in strings.to_pylist()),
        dtype=np.uint64,
        count=len(strings),
    )


def conversation_texts(messages: pa.Array, *, roles: bool = True) -> pa.Array:
    """One string per query, turns separated by newlines, each as ``role: content``
    (``roles=False``: the contents alone)."""
    messages = messages.combine_chunks() if isinstance(messages, pa.ChunkedArray) else messages
    turns = messages.flatten()
    labelled = turns.field("content")
    if roles:
        labelled = pc.binary_join_element_wise(turns.field("role"), labelled, ": ")
    offsets = messages.offsets
    if offsets[0].as_py():
        offsets = pc.subtract(offsets, offsets[0])
    as_lists = pa.ListArray.from_arrays(offsets, labelled)
    return pc.binary_join(as_lists, "\n")


def lowered(texts: pa.Array) -> pa.Array:
    """NFKC and lower case: the form every key below is computed from."""
    return pc.utf8_lower(pc.utf8_normalize(texts, "NFKC"))


def exact_keys(lower: pa.Array) -> np.ndarray:
    """Hash of the text with whitespace collapsed: equal for cosmetic variants only.

    Punctuation is kept on purpose: ``x-y`` and ``x+y`` are different problems.
    """
    collapsed = pc.utf8_trim_whitespace(pc.replace_substring_regex(lower, r"\s+", " "))
    return hash_strings(collapsed)


NUMBER_WORDS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy "
    "eighty ninety hundred thousand million billion half third quarter twice double triple "
    "first second fourth fifth sixth seventh eighth ninth tenth"
).split()

_NUMBER_WORD_HASHES = np.fromiter(
    (xxhash.xxh3_64_intdigest(w.encode()) for w in NUMBER_WORDS), dtype=np.uint64
)


def math_signatures(lower: pa.Array, tokens: Tokens) -> np.ndarray:
    """Hash of the sequence of numbers, number words and operators in each text.

    Spacing is ignored ("2+2" and "2 + 2" agree); "three boxes" and "four boxes" differ.
    ``tokens`` are ``tokenize(lower)``.
    """
    tight = pc.replace_substring_regex(lower, r"\s+", "")
    digits = hash_strings(
        pc.utf8_trim_whitespace(pc.replace_substring_regex(tight, _NON_MATH, " "))
    )
    return digits ^ _word_sequences(tokens, _NUMBER_WORD_HASHES)


def _word_sequences(tokens: Tokens, words: np.ndarray) -> np.ndarray:
    """Per text, an order-sensitive hash of its tokens that are in ``words`` (0 if none)."""
    count = len(tokens.lengths)
    picked = np.flatnonzero(np.isin(tokens.hashes, words))
    result = np.zeros(count, dtype=np.uint64)
    if not len(picked):
        return result
    owner = np.searchsorted(tokens.offsets, picked, side="right") - 1
    starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
    rank = np.arange(len(picked)) - np.repeat(starts, np.diff(np.r_[starts, len(picked)]))
    with np.errstate(over="ignore"):
        mixed = fmix64(tokens.hashes[picked] ^ (rank.astype(np.uint64) * _GOLDEN))
    result[owner[starts]] = np.add.reduceat(mixed, starts)
    return result


@dataclass(slots=True)
class Tokens:
    """Word tokens of a batch, flat: ``hashes[offsets[i]:offsets[i+1]]`` are text i's."""

    hashes: np.ndarray  # uint64
    offsets: np.ndarray  # int64, len = texts + 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


def tokenize(lower: pa.Array) -> Tokens:
    """Split into letter/digit runs and hash each distinct token once per batch."""
    spaced = pc.utf8_trim_whitespace(pc.replace_substring_regex(lower, _NON_WORD, " "))
    words = pc.utf8_split_whitespace(spaced)
    words = words.combine_chunks() if isinstance(words, pa.ChunkedArray) else words
    flat = words.flatten()
    encoded = flat.dictionary_encode()
    vocabulary = hash_strings(encoded.dictionary)
    hashes = vocabulary[encoded.indices.to_numpy(zero_copy_only=False)]
    offsets = words.offsets.to_numpy().astype(np.int64)
    offsets -= offsets[0]
    # An empty text splits into one empty word: drop those.
    real = pc.not_equal(flat, "").to_numpy(zero_copy_only=False)
    if not real.all():
        hashes = hashes[real]
        offsets = np.concatenate([[0], np.cumsum(real)])[offsets]
    return Tokens(hashes, offsets)


def ngrams(tokens: Tokens, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of every word n-gram, and the index of the text each belongs to.

    A text shorter than ``n`` words gets one n-gram of all its words, so short texts
    compare as whole token sequences (a one-word change is then a different text) and
    never end up with an empty set. Texts without words get nothing.
    """
    lengths = tokens.lengths
    count = len(lengths)
    owner = np.repeat(np.arange(count, dtype=np.int64), lengths)
    position = np.arange(len(tokens.hashes), dtype=np.int64)
    start, end = tokens.offsets[:-1][owner], tokens.offsets[1:][owner]
    valid = (position + n <= end) | ((position == start) & (lengths[owner] < n))
    first = np.flatnonzero(valid)
    owners, ends = owner[first], end[first]
    padded = np.concatenate([tokens.hashes, np.zeros(n, dtype=np.uint64)])
    grams = np.full(len(first), np.uint64(n), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in range(n):
            word = np.where(first + k < ends, padded[first + k], np.uint64(0))
            grams = grams * _GOLDEN + word
    return fmix64(grams), owners
