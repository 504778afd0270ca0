"""Reading user files of records (JSONL, gzipped JSONL, Parquet) with line numbers.

Every stage that takes a file from the user (`queries add`, `import`) reads it here,
so a bad line is reported the same way everywhere: `file:line: what to fix`.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from hubtools.errors import InputFileError

SUFFIXES = (".jsonl", ".jsonl.gz", ".ndjson", ".parquet")


def read_records(file: Path) -> Iterator[tuple[int, Any]]:
    """`(line or row number, record)` pairs, by file extension; blank lines are skipped."""
    file = Path(file)
    name = file.name.lower()
    if name.endswith(".parquet"):
        reader = _parquet_records
    elif name.endswith((".jsonl", ".jsonl.gz", ".ndjson")):
        reader = _jsonl_records
    else:
        raise InputFileError(
            str(file), None, "unknown file type; use .jsonl, .jsonl.gz or .parquet"
        )
    try:
        yield from reader(file)
    except (OSError, EOFError, pa.ArrowException) as err:
        reason = getattr(err, "strerror", None) or " ".join(str(err).split())
        raise InputFileError(str(file), None, f"cannot read the file ({reason})") from None


def _jsonl_records(file: Path) -> Iterator[tuple[int, Any]]:
    opener = gzip.open if file.name.lower().endswith(".gz") else open
    with opener(file, "rb") as lines:
        for number, raw in enumerate(lines, 1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise InputFileError(
                    str(file), number, "not UTF-8 text; save it as UTF-8"
                ) from None
            if not text.strip():
                continue
            try:
                yield number, json.loads(text)
            except json.JSONDecodeError as err:
                raise InputFileError(
                    str(file),
                    number,
                    f"invalid JSON ({err.msg} at column {err.colno}); write one object per line",
                ) from None


def _parquet_records(file: Path) -> Iterator[tuple[int, Any]]:
    rows = (row for batch in pq.ParquetFile(file).iter_batches() for row in batch.to_pylist())
    yield from enumerate(rows, 1)
