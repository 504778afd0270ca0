"""The global half of ``queries clean``: decide, for every query of the pool, whether it
stays, from the scan files (``scan.py``).

Only the columns a step needs are in memory: the small per-query keys for all queries,
one LSH band column at a time, and the signatures of candidate pairs only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from hubtools.errors import RunStoreError
from hubtools.plural import plural
from hubtools.queries.dedup import candidate_pairs, first_occurrences, greedy_leaders, verify_pairs
from hubtools.queries.filters import default_filters
from hubtools.queries.scan import ScanUnit, band_column, scan_schema
from hubtools.queries.settings import CleanSettings

EXACT, NEAR, CONTAMINATION = "exact dedup", "near dedup", "decontamination"
_BASE = ["order", "source", "filter", "filter_detail", "exact", "math", "contam_item"]
_BASE += ["contam_score", "contam_method"]


@dataclass(slots=True)
class ScanTable:
    """The scan files read back, rows sorted by their position in the pool."""

    files: list[Path]
    perm: np.ndarray  # sorted position -> row of the concatenated files
    starts: np.ndarray  # first concatenated row of each file
    columns: dict[str, np.ndarray]
    sources: list[str]

    def column(self, name: str) -> np.ndarray:
        """One column of every file, in sorted order (read now, not kept)."""
        parts = [pq.read_table(f, columns=[name])[name].to_numpy() for f in self.files]
        return np.concatenate(parts)[self.perm] if parts else np.empty(0)

    def rows_of(self, name: str, positions: np.ndarray) -> list[Any]:
        """Values of ``name`` at sorted ``positions`` (ascending), reading only their files."""
        flat = self.perm[positions]
        which = np.searchsorted(self.starts, flat, side="right") - 1
        out: list[Any] = [None] * len(positions)
        for f in np.unique(which):
            mine = np.flatnonzero(which == f)
            table = pq.read_table(self.files[f], columns=[name])[name]
            values = table.take(pa.array(flat[mine] - self.starts[f])).to_pylist()
            for slot, value in zip(mine.tolist(), values, strict=True):
                out[slot] = value
        return out


def read_scan(run: Path, units: list[ScanUnit]) -> ScanTable:
    files = [u.output(run) for u in units]
    missing = [f for f in files if not f.exists()]
    if missing:
        are = "is" if len(missing) == 1 else "are"
        units = plural(len(missing), "scan unit")
        raise RunStoreError(f"{units} {are} missing (e.g. {missing[0]})")
    tables = [pq.read_table(f, columns=_BASE) for f in files]
    sizes = np.array([len(t) for t in tables], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    empty = scan_schema(1, 1).empty_table().select(_BASE)
    table = pa.concat_tables(tables) if tables else empty
    order = table["order"].to_numpy()
    perm = np.argsort(order, kind="stable")
    encoded = pc.dictionary_encode(table["source"]).combine_chunks()
    columns = {
        name: table[name].to_numpy(zero_copy_only=False)[perm]
        for name in _BASE
        if name not in ("source", "filter_detail")
    }
    columns["source"] = encoded.indices.to_numpy(zero_copy_only=False)[perm]
    columns["filter_detail"] = np.asarray(table["filter_detail"].to_pylist(), dtype=object)[perm]
    return ScanTable(files, perm, starts, columns, encoded.dictionary.to_pylist())


@dataclass(slots=True)
class Decisions:
    """Per query (in pool order): why it goes, and what it duplicates."""

    reason: np.ndarray  # -1 kept, else a step index into ``names``
    match: np.ndarray  # sorted position of the matched query (duplicates)
    score: np.ndarray
    names: list[str]


def decide(scan: ScanTable, settings: CleanSettings, progress: bool) -> Decisions:
    """Filters, then exact dedup, near dedup and contamination among what is left: each
    query gets the first step that removes it (the funnel's order)."""
    cols = scan.columns
    count = len(cols["order"])
    names = [f.name for f in default_filters(settings.filters)] + [EXACT, NEAR, CONTAMINATION]
    reason = cols["filter"].astype(np.int64)
    passed = reason < 0
    first = first_occurrences(cols["exact"], passed)
    exact = passed & (first != np.arange(count))
    reason[exact] = names.index(EXACT)
    eligible = passed & ~exact
    params = settings.minhash
    bands = (scan.column(band_column(b)) for b in range(params.bands))
    bands = tqdm(bands, total=params.bands, desc="lsh bands", disable=not progress)
    pairs = candidate_pairs(bands, eligible)

    def signatures_of(positions: np.ndarray) -> np.ndarray:
        raw = scan.rows_of("signature", positions)
        return np.frombuffer(b"".join(raw), dtype=np.uint16).reshape(len(positions), -1)

    pairs, similarity = verify_pairs(pairs, signatures_of, cols["math"], params.threshold)
    near_match, near_score = greedy_leaders(pairs, similarity, count)
    near = near_match >= 0
    reason[near] = names.index(NEAR)
    contaminated = eligible & ~near & (cols["contam_item"] >= 0)
    reason[contaminated] = names.index(CONTAMINATION)
    # An exact copy of a query that near dedup removed points at what that one matched.
    leader = np.where(exact, first, 0)
    leader = np.where(exact & (near_match[leader] >= 0), near_match[leader], leader)
    match = np.where(exact, leader, near_match)
    score = np.where(near, near_score, np.where(exact, 1.0, 0.0))
    score = np.where(contaminated, cols["contam_score"], score)
    return Decisions(reason, match, score, names)
