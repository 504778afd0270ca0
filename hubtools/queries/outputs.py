"""Writing what ``queries clean`` decided: the removed rows and the kept queries.

Both stream the pool row group by row group. The removed rows go to one Parquet file
written beside its destination and renamed into place; the kept queries go to the run's
query set through ``Run.add_queries`` (one part, all or nothing; query_ids already
there are skipped, so a repeated clean adds nothing).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from hubtools.queries.decisions import Decisions
from hubtools.records import Query
from hubtools.run import QUERY_SCHEMA, Run

REMOVED_SCHEMA = pa.schema(
    [*QUERY_SCHEMA, ("reason", pa.string()), ("detail", pa.string()), ("match", pa.string())]
)


def row_groups(parts: list[Path], orders: np.ndarray) -> Iterator[tuple[pa.Table, np.ndarray]]:
    """Every row group of the pool with the sorted positions of its rows."""
    for part in parts:
        index = int(part.stem.removeprefix("part-"))
        file = pq.ParquetFile(part)
        first = 0
        for group in range(file.num_row_groups):
            table = file.read_row_group(group)
            rows = first + np.arange(len(table), dtype=np.int64)
            first += len(table)
            yield table, np.searchsorted(orders, (np.int64(index) << np.int64(32)) | rows)


def write_removed(
    dest: Path,
    parts: list[Path],
    orders: np.ndarray,
    decisions: Decisions,
    details: Callable[[np.ndarray], Iterator[tuple[str, str | None, str | None]]],
    progress: bool,
) -> None:
    """Write the removed queries, each with ``details(positions)``: reason, detail, match."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    bar = tqdm(total=len(orders), desc="removed rows", unit=" rows", disable=not progress)
    try:
        with pq.ParquetWriter(tmp, REMOVED_SCHEMA) as writer:
            for table, positions in row_groups(parts, orders):
                bar.update(len(table))
                gone = np.flatnonzero(decisions.reason[positions] >= 0)
                if not len(gone):
                    continue
                reason, detail, match = zip(*details(positions[gone]), strict=True)
                extra = {"reason": reason, "detail": detail, "match": match}
                removed = table.select(QUERY_SCHEMA.names).take(pa.array(gone))
                for name, values in extra.items():
                    removed = removed.append_column(name, pa.array(values, pa.string()))
                writer.write_table(removed.cast(REMOVED_SCHEMA))
        with open(tmp, "rb") as file:
            os.fsync(file.fileno())
        os.replace(tmp, dest)
    finally:
        bar.close()
        tmp.unlink(missing_ok=True)


def add_kept(
    run: Run, parts: list[Path], orders: np.ndarray, decisions: Decisions, progress: bool
) -> int:
    """Add the kept queries to the run's query set (one part, all or nothing)."""
    parts_now = sorted((run.path / "queries").glob("part-*.parquet"))
    present = [pq.read_table(p, columns=["query_id"])["query_id"] for p in parts_now]
    known = pa.chunked_array(present, pa.string()).combine_chunks()

    def kept() -> Iterator[Query]:
        bar = tqdm(total=len(orders), desc="kept queries", unit=" rows", disable=not progress)
        for table, positions in row_groups(parts, orders):
            bar.update(len(table))
            keep = decisions.reason[positions] < 0
            keep &= ~pc.is_in(table["query_id"], known).to_numpy(zero_copy_only=False)
            for row in table.filter(pa.array(keep)).to_pylist():
                for key in ("tests", "constraints", "meta"):
                    if row[key] is not None:
                        row[key] = json.loads(row[key])
                yield _PoolQuery.of(row)
        bar.close()

    return run.add_queries(kept()).added


class _PoolQuery(Query):
    """A query read back from the pool, where it was validated on the way in: built
    without validating again and handing add_queries the row it came from (a Query's
    ``to_dict`` deep-copies, which costs more than the rest of the clean at 2M rows)."""

    __slots__ = ("_row",)

    @classmethod
    def of(cls, row: dict[str, Any]) -> _PoolQuery:
        query = cls.__new__(cls)
        for name in Query.__dataclass_fields__:
            object.__setattr__(query, name, row[name])
        query._row = row
        return query

    def to_dict(self) -> dict[str, Any]:
        return self._row
