"""The per-query half of ``queries clean``: keys, filters and contamination of each query.

The pool is scanned in units of one Parquet row group (<= 10,000 queries) and one shard
(``shard_of(query_id, N)``); each unit's result is one file, written under a temp name
and renamed into place, so a killed scan resumes with the units it has not finished,
and shards run on different machines write different files. The global half (exact and
near dedup, which need every query) reads these files back (``clean.py``).

A unit's file holds per query: its position in the pool (``order``: part << 32 | row),
the first filter that removes it, the exact-text and numbers keys, the LSH band hashes,
the compact MinHash signature, and the benchmark problem it matches, if any.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hubtools.queries.decontaminate import (
    Benchmark,
    EmbeddingContamination,
    Matches,
    NgramContamination,
)
from hubtools.queries.dedup import MinHasher, compact_signatures
from hubtools.queries.filters import FilterBatch, default_filters, first_removal
from hubtools.queries.settings import CleanSettings
from hubtools.queries.text import (
    conversation_texts,
    exact_keys,
    lowered,
    math_signatures,
    tokenize,
)
from hubtools.run import shard_of

SCAN_DIR = Path("clean") / "scan"
READ_COLUMNS = ["query_id", "category", "source", "messages", "reference", "tests", "constraints"]
METHODS = ("", "ngram", "embedding")


@dataclass(frozen=True, slots=True)
class ScanUnit:
    """One row group of one pool part, restricted to one shard."""

    part: Path
    part_index: int
    row_group: int
    first_row: int  # index in the part of the row group's first row
    shard: tuple[int, int]

    def output(self, run: Path) -> Path:
        i, n = self.shard
        name = f"rg-{self.row_group:05d}-shard-{i:05d}-of-{n:05d}.parquet"
        return run / SCAN_DIR / self.part.stem / name


def scan_units(parts: list[Path], shard: tuple[int, int]) -> list[ScanUnit]:
    """Every unit of ``parts`` (the pool's, in order) for ``shard``."""
    units = []
    for part in parts:
        index = int(part.stem.removeprefix("part-"))
        metadata = pq.ParquetFile(part).metadata
        first = 0
        for group in range(metadata.num_row_groups):
            units.append(ScanUnit(part, index, group, first, shard))
            first += metadata.row_group(group).num_rows
    return units


def scan_schema(bands: int, permutations: int) -> pa.Schema:
    return pa.schema(
        [
            ("order", pa.int64()),
            ("query_id", pa.string()),
            ("source", pa.string()),
            ("filter", pa.int16()),
            ("filter_detail", pa.string()),
            ("exact", pa.uint64()),
            ("math", pa.uint64()),
            *[(band_column(b), pa.uint64()) for b in range(bands)],
            ("signature", pa.binary(2 * permutations)),
            ("contam_item", pa.int64()),
            ("contam_score", pa.float32()),
            ("contam_method", pa.int8()),
        ]
    )


def band_column(band: int) -> str:
    return f"band_{band:02d}"


class Scanner:
    """Everything a worker needs to scan units: filters, MinHash, contamination indexes."""

    def __init__(self, settings: CleanSettings, benchmarks: list[Benchmark]):
        self.settings = settings
        self.filters = default_filters(settings.filters)
        self.minhash = MinHasher(settings.minhash)
        problems = [p for b in benchmarks for p in b.problems]
        self.ngram = (
            NgramContamination(problems, n=settings.ngram, min_overlap=settings.min_overlap)
            if problems
            else None
        )
        self.embedding = (
            EmbeddingContamination(
                problems,
                model=settings.embedding_model,
                threshold=settings.embedding_threshold,
            )
            if problems and settings.embeddings
            else None
        )
        params = settings.minhash
        self.schema = scan_schema(params.bands, params.permutations)

    def scan(self, run: Path, unit: ScanUnit) -> int:
        """Scan ``unit`` into its file (atomically); returns the number of queries."""
        table = pq.ParquetFile(unit.part).read_row_group(unit.row_group, columns=READ_COLUMNS)
        i, n = unit.shard
        rows = np.arange(len(table), dtype=np.int64)
        if n > 1:
            ids = table["query_id"].to_pylist()
            rows = np.fromiter((shard_of(q, n) == i for q in ids), bool, len(ids)).nonzero()[0]
            table = table.take(rows)
        order = (np.int64(unit.part_index) << np.int64(32)) | (unit.first_row + rows)
        result = self.keys(table, order)
        dest = unit.output(run)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        pq.write_table(result, tmp)
        with open(tmp, "rb") as file:
            os.fsync(file.fileno())
        os.replace(tmp, dest)
        return len(table)

    def keys(self, table: pa.Table, order: np.ndarray) -> pa.Table:
        """The scan columns of ``table``'s queries."""
        messages = table["messages"].combine_chunks()
        content = conversation_texts(messages, roles=False)
        lower = lowered(content)
        tokens = tokenize(lower)
        batch = FilterBatch(
            texts=content,
            lower=lower,
            words=tokens.lengths,
            categories=np.asarray(table["category"].to_pylist(), dtype=object),
            has_reference=_present(table["reference"], ""),
            has_tests=_present(table["tests"], "[]"),
            has_constraints=_present(table["constraints"], ""),
        )
        removed = first_removal(self.filters, batch)
        texts = content.to_pylist()
        details = [
            None if f < 0 else self.filters[f].explain(texts[row])
            for row, f in enumerate(removed.tolist())
        ]
        signatures = self.minhash.signatures(tokens)
        bands = self.minhash.band_hashes(signatures)
        compact = compact_signatures(signatures)
        matches = self._contamination(tokens, messages, removed)
        columns = {
            "order": pa.array(order, pa.int64()),
            "query_id": table["query_id"],
            "source": table["source"],
            "filter": pa.array(removed, pa.int16()),
            "filter_detail": pa.array(details, pa.string()),
            "exact": pa.array(exact_keys(lowered(conversation_texts(messages))), pa.uint64()),
            "math": pa.array(math_signatures(lower, tokens), pa.uint64()),
        }
        for b in range(bands.shape[1]):
            columns[band_column(b)] = pa.array(bands[:, b], pa.uint64())
        columns["signature"] = pa.FixedSizeBinaryArray.from_buffers(
            self.schema.field("signature").type,
            len(compact),
            [None, pa.py_buffer(np.ascontiguousarray(compact).tobytes())],
        )
        columns["contam_item"] = pa.array(matches[0].item, pa.int64())
        columns["contam_score"] = pa.array(matches[0].score, pa.float32())
        columns["contam_method"] = pa.array(matches[1], pa.int8())
        return pa.table(columns, schema=self.schema)

    def _contamination(
        self, tokens, messages: pa.Array, removed: np.ndarray
    ) -> tuple[Matches, np.ndarray]:
        """Per query the matched problem (n-gram first, then embedding) and the method."""
        count = len(removed)
        found = self.ngram.find(tokens) if self.ngram else Matches.none(count)
        method = np.where(found.item >= 0, 1, 0).astype(np.int8)
        if self.embedding is not None:
            pending = (removed < 0) & (found.item < 0)
            last = _last_user_turns(messages).to_pylist()
            similar = self.embedding.find(
                [text if wanted else None for text, wanted in zip(last, pending, strict=True)]
            )
            hit = similar.item >= 0
            found.item[hit], found.score[hit] = similar.item[hit], similar.score[hit]
            method[hit] = 2
        return found, method


def _present(column: pa.ChunkedArray, empty: str) -> np.ndarray:
    valid = pc.is_valid(column)
    if empty:
        valid = pc.and_(valid, pc.not_equal(column, empty).fill_null(False))
    return valid.to_numpy(zero_copy_only=False)


def _last_user_turns(messages: pa.Array) -> pa.Array:
    last = messages.offsets.to_numpy()[1:] - 1
    return messages.flatten().take(pa.array(last - messages.offsets.to_numpy()[0])).field("content")
