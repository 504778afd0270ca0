"""The run store: one directory holding everything a pipeline produced, so any stage resumes.

Layout::

    run.yaml                          the configuration, frozen when the run is created
    queries/part-00000.parquet        the query set, one part per added batch
    queries/part-00000.categories.json   its count per category (``hubtools status``)
    db/shard-00000-of-00001.sqlite    attempts and verdicts, one database per shard
    db/merged.sqlite                  every shard's rows, refreshed by ``Run.merge_shards``

Durability. A file (``run.yaml``, a query part) is written under a temp name, fsynced
and linked into place, so a reader sees all of it or none, and two writers cannot
replace each other's file. Attempts and verdicts go to SQLite in WAL mode with
``synchronous=FULL``, one transaction per batch: WAL alone survives a killed process
(the kernel holds what was written), FULL also survives power loss and kernel crashes
at the price of one fsync per batch. A batch holds minutes of teacher time, so that
fsync is free next to re-generating what NORMAL could lose.

Rows are immutable: a key ``(query_id, teacher, attempt)`` is written once and a
second write of it is ignored (first write wins), so a resumed or repeated batch
never duplicates anything. The one exception, and the one way a verdict changes:
``AttemptStore.replace_verdicts`` (``verify --force``) overwrites a verdict in the
same transaction that writes its successor. Verdicts are never deleted, so a run
killed at any moment keeps a verdict for every attempt that had one.

A run is created whole (``Run.create``): built beside its directory and put in place,
so a creator killed at any moment leaves no run or a complete one.

Locks (``lock.py``). One process writes a shard at a time: ``generate``, ``verify`` and
``import`` hold ``Run.shard_lock`` (an ``flock`` under ``RUN/locks/``, released by the
kernel when the holder dies); a second writer gets ``RunBusyError`` naming the holder,
or waits. Readers (``status``, ``build``) take no lock: WAL gives them a snapshot.

Sharding. ``--shard i/N`` gives a worker the queries with ``shard_of(query_id, N) == i``
and its own database, so N machines write without contending. A run keeps the N its
first attempts were stored with; ``merge_shards`` unions the shards for readers.
"""

from hubtools.run._files import shard_of
from hubtools.run.directory import DEFAULT_CONFIG, RUN_FILE, AddResult, Run, query_schema
from hubtools.run.store import AttemptStore, TeacherCounts

__all__ = [
    "DEFAULT_CONFIG", "QUERY_SCHEMA", "RUN_FILE", "AddResult", "AttemptStore", "Run",
    "TeacherCounts", "shard_of",
]  # fmt: skip


def __getattr__(name: str) -> object:
    """``QUERY_SCHEMA``, built on first use so that importing the run store skips pyarrow."""
    if name == "QUERY_SCHEMA":
        return query_schema()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
