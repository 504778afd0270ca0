"""Helpers of the run store: atomic files, JSON columns, chunking, sharding."""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_JSON_FIELDS = frozenset({"tests", "constraints", "meta", "params", "details"})


def shard_of(query_id: str, n: int) -> int:
    """The shard of a query: ids are uniform hashes already, so their value mod n splits evenly."""
    return int(query_id, 16) % n


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _json_fields(values: dict[str, Any], convert: Callable[[Any], Any]) -> dict[str, Any]:
    """Free-form fields are stored as JSON text; ``convert`` is ``_dumps`` or ``json.loads``."""
    return {k: convert(v) if k in _JSON_FIELDS and v is not None else v for k, v in values.items()}


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


@contextmanager
def _staged(dest: Path) -> Iterator[Path]:
    """A temp path beside ``dest``, removed afterwards; ``_publish`` turns it into ``dest``."""
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


def _publish(tmp: Path, dest: Path) -> None:
    """Make ``tmp`` durable and visible as ``dest``; FileExistsError instead of replacing."""
    with open(tmp, "rb") as file:
        os.fsync(file.fileno())
    os.link(tmp, dest)
    directory = os.open(dest.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
