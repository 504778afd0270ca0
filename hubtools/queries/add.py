"""``hubtools queries add``: load query records from a JSONL or Parquet file into a run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from hubtools.errors import InputFileError, UsageError
from hubtools.recordfile import FORMAT_HINT, query_from_record, read_records
from hubtools.records import Category, Query
from hubtools.run import AddResult, Run


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
    return Run.create(run, queries=queries).added  # a new run appears only with its queries


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
