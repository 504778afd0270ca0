"""``hubtools queries add``: load query records from a JSONL or Parquet file into a run."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from hubtools.errors import InputFileError, RunStoreError, UsageError
from hubtools.recordfile import FORMAT_HINT, query_from_record, read_records
from hubtools.records import Category, Query
from hubtools.run import RUN_FILE, AddResult, Run


def add(
    file: Path | str,
    run: Path | str,
    *,
    category: Category | str | None = None,
    source: str | None = None,
) -> AddResult:
    """Add the queries in ``file`` to ``run``, creating the run if it does not exist.

    ``category`` and ``source`` fill in records that do not name their own (defaults:
    ``general`` and the file's name). Records are streamed; the batch is stored only
    once every record has passed its checks, so a bad record (an ``InputFileError``
    with its line, or row for Parquet) leaves the run as it was.
    """
    file, run = Path(file), Path(run)
    try:
        category = Category.parse(category or Category.GENERAL)
    except ValueError as err:
        raise UsageError(str(err)) from None
    queries = read_queries(file, category=category, source=source or file.name)
    if (run / RUN_FILE).exists():
        return Run.open(run).add_queries(queries)
    return _add_to_new_run(run, queries)


def read_queries(file: Path, *, category: Category, source: str) -> Iterator[Query]:
    """The records of ``file`` as queries; raises ``InputFileError`` at the first bad one."""
    count = 0
    for line, record in read_records(file):
        try:
            query = query_from_record(record, category=category, source=source)
        except ValueError as err:
            raise InputFileError(str(file), line, str(err)) from None
        count += 1
        yield query
    if count == 0:
        raise InputFileError(str(file), None, f"no queries found; {FORMAT_HINT}")


def _add_to_new_run(run: Path, queries: Iterator[Query]) -> AddResult:
    """Build the run beside its destination and move it in, so a bad file leaves nothing.

    run.yaml moves last: a directory becomes a run only once its queries are there.
    """
    staging = run.resolve().parent / f".{run.resolve().name}.{os.getpid()}.tmp"
    try:
        result = Run.create(staging).add_queries(queries)
        run.mkdir(parents=True, exist_ok=True)
        if any(run.iterdir()):
            raise RunStoreError(f"{run} exists and is not a run; pick a new directory")
        for entry in sorted(staging.iterdir(), key=lambda p: p.name == RUN_FILE):
            entry.rename(run / entry.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return result
