"""Token n-grams shared by many responses (the paper's template filter), in bounded memory.

Every response is cut into tokens (``tokens``: words, single punctuation marks, single
CJK characters), every token n-gram is hashed to 64 bits, and the hashes are spilled to
``PARTITIONS`` files by their top bits together with the response's number. Each
partition is then counted with ``numpy.unique``, one over half of ``budget_bytes`` after
being split by its next hash bits into smaller files, so memory depends on
``budget_bytes`` and the batch size, never on how many responses there are. The spill
costs 12 bytes per (response, distinct n-gram) on disk.

Counting is by documents by default: a response contributes an n-gram once however often
it repeats it, so "occurs more than 20 times" means "in more than 20 responses" (a
response that loops on one sentence is not a template shared with others);
``count="occurrences"`` counts every occurrence instead.

Hashes: a token's is Python's ``hash`` (SipHash, seeded per process), an n-gram's a
polynomial over its tokens' hashes mod 2**64 taken from prefix sums, then mixed
(splitmix64). Two different n-grams share a hash with probability ~2**-64 per pair, and
a collision can only merge two counts; the seed makes the rare collision differ between
runs rather than repeat.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
TOKEN = re.compile(rf"[{_CJK}]|[^\W{_CJK}]+|[^\w\s]")
PARTITIONS = 256
_TOP = 8  # log2(PARTITIONS)
_PAIR = np.dtype([("h", "<u8"), ("d", "<u4")])
_BASE = np.uint64(0x9E3779B97F4A7C15)  # odd, so it has an inverse mod 2**64
_BASE_INV = np.uint64(pow(0x9E3779B97F4A7C15, -1, 2**64))
_BATCH_TOKENS = 1 << 19
_CHUNK = 1 << 20  # pairs read at a time from a partition being split (12 MB)


def tokens(text: str) -> list[str]:
    """Words, single punctuation marks and single CJK characters, case kept."""
    return TOKEN.findall(text)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: every output bit depends on every input bit."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def token_hashes(text: str) -> np.ndarray:
    found = TOKEN.findall(text)
    return np.fromiter(map(hash, found), dtype=np.int64, count=len(found)).view(np.uint64)


class _Powers:
    """BASE**i and BASE**-i mod 2**64, grown on demand."""

    def __init__(self) -> None:
        self.up = self.down = np.ones(1, dtype=np.uint64)

    def get(self, length: int) -> tuple[np.ndarray, np.ndarray]:
        if len(self.up) < length:
            size = max(length, 2 * len(self.up))
            self.up = np.concatenate(([np.uint64(1)], np.cumprod(np.full(size - 1, _BASE))))
            self.down = np.concatenate(([np.uint64(1)], np.cumprod(np.full(size - 1, _BASE_INV))))
        return self.up[:length], self.down[:length]


def ngram_hashes(
    token_arrays: list[np.ndarray], n: int, powers: _Powers
) -> tuple[np.ndarray, np.ndarray]:
    """``(hashes, doc)``: every n-gram of every array, and the array's position it came from."""
    lengths = np.fromiter((len(a) for a in token_arrays), dtype=np.int64, count=len(token_arrays))
    counts = np.maximum(lengths - n + 1, 0)
    total = int(counts.sum())
    if not total:
        return np.empty(0, np.uint64), np.empty(0, np.int64)
    flat = np.concatenate(token_arrays) if len(token_arrays) > 1 else token_arrays[0]
    up, down = powers.get(len(flat))
    with np.errstate(over="ignore"):
        prefix = np.empty(len(flat) + 1, dtype=np.uint64)
        prefix[0] = 0
        np.cumsum(flat * up, out=prefix[1:])
        starts = np.repeat(np.cumsum(lengths) - lengths, counts)
        starts += np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
        hashes = (prefix[starts + n] - prefix[starts]) * down[starts]
    return _mix(hashes), np.repeat(np.arange(len(token_arrays)), counts)


@dataclass
class TemplateCounts:
    """What ``count_templates`` found; ``flagged``: key -> largest count of its n-grams."""

    responses: int = 0
    ngrams: int = 0  # (response, n-gram) pairs counted
    spill_bytes: int = 0
    frequent: int = 0  # distinct n-grams above max_count
    flagged: dict[str, int] = field(default_factory=dict)


def ids_hasher(tokenizer: Any) -> Callable[[str], np.ndarray]:
    """Token hashes from a transformers tokenizer's ids (the ``tokenizer:`` option)."""

    def hashes(text: str) -> np.ndarray:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        return _mix(np.asarray(ids, dtype=np.uint64) + np.uint64(1))

    return hashes


def count_templates(
    texts: Iterable[tuple[str, str]],
    *,
    n: int = 20,
    max_count: int = 20,
    count: str = "documents",
    workdir: Path | str | None = None,
    budget_bytes: int = 16 * 1024**2,
    hasher: Callable[[str], np.ndarray] = token_hashes,
) -> TemplateCounts:
    """Keys of the ``(key, text)`` responses holding a token n-gram seen more than ``max_count``
    times (see the module docstring for what a time is). ``hasher``: text -> token hashes."""
    if count not in ("documents", "occurrences"):
        raise ValueError(f"count must be 'documents' or 'occurrences', not {count!r}")
    folder = Path(tempfile.mkdtemp(prefix=".template-", dir=workdir))
    try:
        return _count(texts, n, max_count, count == "documents", folder, budget_bytes, hasher)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _count(
    texts: Iterable[tuple[str, str]], n: int, max_count: int, per_doc: bool, folder: Path,
    budget_bytes: int, hasher: Callable[[str], np.ndarray],
) -> TemplateCounts:  # fmt: skip
    result = TemplateCounts()
    sinks = [open(folder / f"p{p:03d}.bin", "wb") for p in range(PARTITIONS)]  # noqa: SIM115
    powers = _Powers()
    try:
        with open(folder / "keys.txt", "w", encoding="utf-8") as keys:
            batch: list[np.ndarray] = []
            size = first = 0
            for key, text in texts:
                keys.write(f"{key}\n")
                batch.append(hasher(text))
                size += len(batch[-1])
                result.responses += 1
                if size >= _BATCH_TOKENS:
                    result.ngrams += _spill(batch, first, n, per_doc, sinks, powers)
                    first, batch, size = result.responses, [], 0
            result.ngrams += _spill(batch, first, n, per_doc, sinks, powers)
    finally:
        for sink in sinks:
            sink.close()
    result.spill_bytes = result.ngrams * _PAIR.itemsize
    docs, tops = [], []
    for p in range(PARTITIONS):
        path = folder / f"p{p:03d}.bin"
        d, c, frequent = _count_partition(path, max_count, budget_bytes)
        path.unlink(missing_ok=True)
        docs.append(d)
        tops.append(c)
        result.frequent += frequent
    flagged_docs = np.concatenate(docs)
    flagged_counts = np.concatenate(tops)
    if len(flagged_docs):
        order = np.lexsort((-flagged_counts.astype(np.int64), flagged_docs))
        flagged_docs, flagged_counts = flagged_docs[order], flagged_counts[order]
        first_of = np.ones(len(flagged_docs), dtype=bool)
        first_of[1:] = flagged_docs[1:] != flagged_docs[:-1]
        wanted = dict(
            zip(flagged_docs[first_of].tolist(), flagged_counts[first_of].tolist(), strict=True)
        )
        with open(folder / "keys.txt", encoding="utf-8") as keys:
            for i, line in enumerate(keys):
                if i in wanted:
                    result.flagged[line.rstrip("\n")] = int(wanted[i])
    return result


def _spill(batch, first, n, per_doc, sinks, powers) -> int:  # noqa: ANN001
    if not batch:
        return 0
    hashes, docs = ngram_hashes(batch, n, powers)
    docs += first
    if per_doc and len(hashes):  # one (doc, n-gram) pair however often the doc repeats it
        with np.errstate(over="ignore"):
            combined = hashes ^ _mix(docs.astype(np.uint64) + np.uint64(1))
        _, keep = np.unique(combined, return_index=True)
        hashes, docs = hashes[keep], docs[keep]
    pairs = np.empty(len(hashes), dtype=_PAIR)
    pairs["h"], pairs["d"] = hashes, docs
    part = (hashes >> np.uint64(64 - _TOP)).astype(np.intp)
    order = np.argsort(part, kind="stable")
    pairs = pairs[order]
    bounds = np.concatenate(([0], np.cumsum(np.bincount(part, minlength=PARTITIONS))))
    for p in range(PARTITIONS):
        if bounds[p + 1] > bounds[p]:
            pairs[bounds[p] : bounds[p + 1]].tofile(sinks[p])
    return len(pairs)


def _count_partition(path: Path, max_count: int, budget_bytes: int, used_bits: int = _TOP):  # noqa: ANN202
    """``(docs, counts, frequent)``: the flagged (doc, n-gram count) pairs of one partition.

    A partition over half the budget is first split by the next 4 hash bits into 16 files
    (one streaming pass, a chunk at a time), each counted the same way: memory stays
    within the budget, and every pair is read once per split level, not once per slice.
    """
    size = path.stat().st_size
    if not size:
        return np.empty(0, np.uint32), np.empty(0, np.int64), 0
    if 2 * size > budget_bytes and used_bits + 4 <= 64:
        subs = [path.with_name(f"{path.name}.{k:x}") for k in range(16)]
        shift = np.uint64(64 - used_bits - 4)
        files = [open(sub, "wb") for sub in subs]  # noqa: SIM115
        try:
            # Plain reads of a chunk at a time: a memory map's pages would count in the
            # process's RSS, up to the whole partition.
            with open(path, "rb") as source:
                while len(chunk := np.fromfile(source, dtype=_PAIR, count=_CHUNK)):
                    _split_chunk(chunk, shift, files)
        finally:
            for file in files:
                file.close()
        path.unlink()
        docs, counts, frequent = [], [], 0
        for sub in subs:
            d, c, f = _count_partition(sub, max_count, budget_bytes, used_bits + 4)
            sub.unlink(missing_ok=True)
            docs.append(d)
            counts.append(c)
            frequent += f
        return np.concatenate(docs), np.concatenate(counts), frequent
    pairs = np.fromfile(path, dtype=_PAIR)
    unique, inverse, n = np.unique(pairs["h"], return_inverse=True, return_counts=True)
    over = n > max_count
    if not over.any():
        return np.empty(0, np.uint32), np.empty(0, np.int64), 0
    hit = over[inverse]
    return pairs["d"][hit], n[inverse[hit]].astype(np.int64), int(over.sum())


def _split_chunk(chunk: np.ndarray, shift: np.uint64, files: list) -> None:
    key = ((chunk["h"] >> shift) & np.uint64(15)).astype(np.intp)
    order = np.argsort(key, kind="stable")
    bounds = np.concatenate(([0], np.cumsum(np.bincount(key, minlength=16))))
    chunk = chunk[order]
    for k in range(16):
        chunk[bounds[k] : bounds[k + 1]].tofile(files[k])
