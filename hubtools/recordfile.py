"""Reading user files of records (JSONL, gzipped JSONL, Parquet) with line numbers.

Every stage that takes a file from the user (`queries add`, `import`, `verify --input`)
reads it here, and takes the query of each record with `query_from_record`, so a bad
line is reported the same way everywhere: `file:line: what to fix`.
"""

from __future__ import annotations

import difflib
import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from hubtools.errors import InputFileError
from hubtools.records import Category, Query

SUFFIXES = (".jsonl", ".jsonl.gz", ".ndjson", ".parquet")
QUERY_FIELDS = (
    "prompt",
    "messages",
    "category",
    "source",
    "reference",
    "tests",
    "constraints",
    "meta",
    "query_id",
)
FORMAT_HINT = "each record needs 'prompt' (a string) or 'messages' (a list of {role, content})"


def query_from_record(
    record: Any, *, category: Category | None, source: str, other_fields: tuple[str, ...] = ()
) -> Query:
    """The query of one user record; its `other_fields` belong to the caller (an answer...).

    Null fields count as absent (Parquet has no 'missing'). `category=None` makes the
    record's own category required. Raises ValueError with what to fix.
    """
    if not isinstance(record, dict):
        raise ValueError(f"expected an object, got {type(record).__name__}; {FORMAT_HINT}")
    fields = {k: v for k, v in record.items() if v is not None and k not in other_fields}
    for key in fields.keys() - set(QUERY_FIELDS):
        close = difflib.get_close_matches(key, (*QUERY_FIELDS, *other_fields), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown field {key!r}{hint}; keep extra data under 'meta'")
    prompt, messages = fields.pop("prompt", None), fields.pop("messages", None)
    if (prompt is None) == (messages is None):
        raise ValueError(f"give exactly one of 'prompt' and 'messages'; {FORMAT_HINT}")
    if prompt is not None and not isinstance(prompt, str):
        raise ValueError(f"'prompt' must be a string, got {type(prompt).__name__}")
    if messages is not None and not isinstance(messages, list):
        raise ValueError("'messages' must be a list of {role, content} turns")
    if category is None and "category" not in fields:
        choices = ", ".join(c.value for c in Category)
        raise ValueError(f"'category' is required ({choices})")
    expected_id = fields.pop("query_id", None)
    fields.setdefault("category", category)
    fields.setdefault("source", source)
    query = Query.from_prompt(prompt if prompt is not None else messages, **fields)
    if expected_id is not None and expected_id != query.query_id:
        raise ValueError("'query_id' does not match the prompt; drop it to have it computed")
    return query


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
