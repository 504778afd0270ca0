"""``hubtools queries export``: the run's query set (or the removed queries) as JSONL.

Kept queries are written in the record format of ``hubtools queries add`` (with their
``query_id``), so an export loads back unchanged. ``--removed`` writes the queries the
clean removed, each with ``reason``, ``detail`` and, for duplicates and contamination,
``match`` (the kept query, or the benchmark problem, it matched).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from tqdm.auto import tqdm

from hubtools.errors import UsageError
from hubtools.plural import plural
from hubtools.queries.clean import REMOVED_FILE
from hubtools.run import Run
from hubtools.run.lock import sweep_beside


@dataclass(slots=True)
class ExportResult:
    out: str
    records: int
    removed: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        what = "removed query" if self.removed else "query"
        return f"wrote {plural(self.records, what, what[:-1] + 'ies')} to {self.out}"


def export(
    run: Path | str, out: Path | str, *, removed: bool = False, progress: bool = True
) -> ExportResult:
    """Write the kept queries (or, with ``removed``, the removed ones) to ``out`` (JSONL).

    The file appears complete or not at all (written beside it, then renamed).
    """
    opened, out = Run.open(run), _check_out(Path(out))
    if removed and not (opened.path / REMOVED_FILE).exists():
        raise UsageError(f"{opened.path} has no removed queries yet; run `hubtools queries clean`")
    records = _removed(opened) if removed else _kept(opened)
    total = _count(opened, removed)
    sweep_beside(out)  # what an export killed midway left
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    count = 0
    try:
        with open(tmp, "w", encoding="utf-8") as file:
            for record in tqdm(records, total=total, desc="export", disable=not progress):
                file.write(json.dumps(record, ensure_ascii=False) + "\n")
                count += 1
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return ExportResult(str(out), count, removed)


def _check_out(out: Path) -> Path:
    """--out names a file in a writable, existing folder: checked before reading anything."""
    if out.is_dir():
        raise UsageError(f"--out {out} is a directory; give the JSONL file to write")
    folder = out.parent
    if not folder.is_dir():
        raise UsageError(f"--out {out}: folder {folder} does not exist; create it first")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out}: folder {folder} is not writable")
    return out


def _count(run: Run, removed: bool) -> int:
    if removed:
        return pq.ParquetFile(run.path / REMOVED_FILE).metadata.num_rows
    return run.count_queries()


def _record(query: dict[str, Any]) -> dict[str, Any]:
    """A query in the ``queries add`` format: empty optional fields left out."""
    return {k: v for k, v in query.items() if v is not None and not (k == "meta" and not v)}


def _kept(run: Run) -> Iterator[dict[str, Any]]:
    for query in run.iter_queries():
        yield _record(query.to_dict())


def _removed(run: Run) -> Iterator[dict[str, Any]]:
    path = run.path / REMOVED_FILE
    for batch in pq.ParquetFile(path).iter_batches(batch_size=1000):
        for row in batch.to_pylist():
            for key in ("tests", "constraints", "meta", "match"):
                if row[key] is not None:
                    row[key] = json.loads(row[key])
            yield _record(row)
