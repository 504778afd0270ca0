"""The run store: one directory holding everything a pipeline produced, so any stage resumes.

Layout::

    run.yaml                          the configuration, frozen when the run is created
    queries/part-00000.parquet        the query set, one part per added batch
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
never duplicates anything.

Sharding. ``--shard i/N`` gives a worker the queries with ``shard_of(query_id, N) == i``
and its own database, so N machines write without contending. A run keeps the N its
first attempts were stored with; ``merge_shards`` unions the shards for readers.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, astuple, dataclass, fields
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

from hubtools.errors import RunStoreError, UsageError
from hubtools.records import PASS_THRESHOLD, Attempt, Category, Query, Verdict

RUN_FILE = "run.yaml"
DEFAULT_CONFIG: dict[str, Any] = {}
_PAGE = 1000
_UNSET = object()

QUERY_SCHEMA = pa.schema(
    [
        ("query_id", pa.string()),
        ("category", pa.string()),
        ("source", pa.string()),
        ("messages", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
        ("reference", pa.string()),
        ("tests", pa.string()),
        ("constraints", pa.string()),
        ("meta", pa.string()),
    ]
)
"""Parquet schema of the query set; free-form fields are JSON text so every part agrees."""

_JSON_FIELDS = frozenset({"tests", "constraints", "meta", "params", "details"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS attempts (
    query_id TEXT NOT NULL, teacher TEXT NOT NULL, attempt INTEGER NOT NULL,
    params TEXT NOT NULL, text TEXT NOT NULL, think TEXT, answer TEXT, finish_reason TEXT,
    prompt_tokens INTEGER, completion_tokens INTEGER, latency_s REAL, model TEXT, error TEXT,
    started_at REAL, finished_at REAL,
    PRIMARY KEY (query_id, teacher, attempt)
);
CREATE TABLE IF NOT EXISTS verdicts (
    query_id TEXT NOT NULL, teacher TEXT NOT NULL, attempt INTEGER NOT NULL,
    verifier TEXT NOT NULL, score REAL NOT NULL, details TEXT NOT NULL,
    PRIMARY KEY (query_id, teacher, attempt),
    FOREIGN KEY (query_id, teacher, attempt) REFERENCES attempts
);
"""
_COLUMNS = {
    "attempts": tuple(f.name for f in fields(Attempt)),
    "verdicts": tuple(f.name for f in fields(Verdict)),
}
_KEY = "a.query_id, a.teacher, a.attempt"


def shard_of(query_id: str, n: int) -> int:
    """The shard of a query: ids are uniform hashes already, so their value mod n splits evenly."""
    return int(query_id, 16) % n


@dataclass(slots=True)
class AddResult:
    added: int
    duplicates: int

    def __str__(self) -> str:
        return f"added {self.added:,} queries, skipped {self.duplicates:,} duplicates"

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(slots=True)
class TeacherCounts:
    """Progress of one teacher: a query passes once any attempt scores >= the threshold,
    and fails while it has verdicts but no pass."""

    queries: int = 0
    attempts: int = 0
    errors: int = 0
    passed: int = 0
    failed: int = 0

    def __add__(self, other: TeacherCounts) -> TeacherCounts:
        return TeacherCounts(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))


@dataclass(slots=True)
class Run:
    """A run directory; open one with ``Run.create`` or ``Run.open``."""

    path: Path
    config: dict[str, Any]

    @classmethod
    def create(cls, path: Path | str, config: Mapping[str, Any] = DEFAULT_CONFIG) -> Run:
        """Create a run, or open it and freeze the config sections it does not have yet.

        Each top-level section of run.yaml (`teachers`, `sampling`, `verify`, ...) is
        frozen by the first stage that brings it: a later stage may add new sections,
        never change one, so every attempt in a run was made under one config.
        """
        path = Path(path)
        try:
            config = yaml.safe_load(yaml.safe_dump(dict(config)))
        except yaml.YAMLError as err:
            raise RunStoreError(f"the run config must be plain YAML data: {err}") from None
        if not (path / RUN_FILE).exists():
            if path.exists() and (not path.is_dir() or any(path.iterdir())):
                raise RunStoreError(f"{path} exists and is not a run; pick a new directory")
            (path / "queries").mkdir(parents=True, exist_ok=True)
            try:
                with _staged(path / RUN_FILE) as tmp:
                    tmp.write_text(yaml.safe_dump(config, sort_keys=False))
                    _publish(tmp, path / RUN_FILE)
            except FileExistsError:
                pass  # created concurrently: compare with that one below
        run = cls.open(path)
        run._check_frozen(config)
        if any(k not in run.config for k in config):
            with run._queries_lock():
                run = cls.open(path)  # another process may have added sections meanwhile
                run._check_frozen(config)
                merged = {**run.config, **{k: v for k, v in config.items() if k not in run.config}}
                with _staged(path / RUN_FILE) as tmp:
                    tmp.write_text(yaml.safe_dump(merged, sort_keys=False))
                    with open(tmp, "rb") as file:
                        os.fsync(file.fileno())
                    os.replace(tmp, path / RUN_FILE)
                run = cls.open(path)
        return run

    def _check_frozen(self, config: Mapping[str, Any]) -> None:
        shared = [k for k in config if k in self.config]
        frozen, given = {k: self.config[k] for k in shared}, {k: config[k] for k in shared}
        if differences := _diff(frozen, given):
            raise RunStoreError(
                f"{self.path} was created with another config ({'; '.join(differences)}); "
                "use a new run directory, or the config in its run.yaml"
            )

    @classmethod
    def open(cls, path: Path | str) -> Run:
        path = Path(path)
        try:
            config = yaml.safe_load((path / RUN_FILE).read_text())
        except FileNotFoundError:
            raise RunStoreError(
                f"{path} is not a run directory (no {RUN_FILE}); "
                "start one with `hubtools queries add FILE --run PATH`"
            ) from None
        except yaml.YAMLError as err:
            problem = " ".join(str(err).split())  # YAML errors span lines; ours are one
            raise RunStoreError(f"{path / RUN_FILE} is not valid YAML: {problem}") from None
        return cls(path, config or {})

    # -- the query set -------------------------------------------------------------------

    def add_queries(self, queries: Iterable[Query]) -> AddResult:
        """Add new queries as one Parquet part, all or nothing; known query_ids are skipped.

        The input is streamed, so if it raises midway nothing is added.
        """
        with self._queries_lock():
            known = self._query_ids()
            seen: set[str] = set()
            result = AddResult(0, 0)
            dest = self.path / "queries" / f"part-{self._next_part():05d}.parquet"
            with _staged(dest) as tmp:
                with pq.ParquetWriter(tmp, QUERY_SCHEMA) as writer:
                    for chunk in _chunks(queries, 10_000):
                        ids = pa.array([q.query_id for q in chunk], pa.string())
                        fresh = []
                        for query, old in zip(chunk, pc.is_in(ids, known).to_pylist(), strict=True):
                            if old or query.query_id in seen:
                                result.duplicates += 1
                            else:
                                seen.add(query.query_id)
                                fresh.append(_json_fields(query.to_dict(), _dumps))
                        if fresh:
                            writer.write_table(pa.Table.from_pylist(fresh, schema=QUERY_SCHEMA))
                            result.added += len(fresh)
                if result.added:
                    _publish(tmp, dest)
        return result

    def iter_queries(
        self, category: Category | str | None = None, shard: tuple[int, int] | None = None
    ) -> Iterator[Query]:
        """Stream the query set, part by part, optionally one category or one shard of it."""
        wanted = None if category is None else Category.parse(category).value
        for part in self._parts():
            for batch in pq.ParquetFile(part).iter_batches(batch_size=_PAGE):
                if wanted is not None:
                    batch = batch.filter(pc.equal(batch["category"], wanted))
                for row in batch.to_pylist():
                    if shard is None or shard_of(row["query_id"], shard[1]) == shard[0]:
                        yield Query.from_dict(_json_fields(row, json.loads))

    def count_queries(self) -> int:
        return sum(pq.ParquetFile(part).metadata.num_rows for part in self._parts())

    def categories(self) -> dict[str, int]:
        """Number of queries per category, in the order of ``Category``."""
        counts = dict.fromkeys((c.value for c in Category), 0)
        for part in self._parts():
            for item in pq.read_table(part, columns=["category"])["category"].value_counts():
                counts[item["values"].as_py()] += item["counts"].as_py()
        return {name: n for name, n in counts.items() if n}

    def _parts(self) -> list[Path]:
        return sorted((self.path / "queries").glob("part-*.parquet"))

    def _next_part(self) -> int:
        parts = self._parts()
        return int(parts[-1].stem.removeprefix("part-")) + 1 if parts else 0

    def _query_ids(self) -> pa.Array:
        columns = [pq.read_table(p, columns=["query_id"])["query_id"] for p in self._parts()]
        return pa.chunked_array(columns, pa.string()).combine_chunks()

    @contextmanager
    def _queries_lock(self) -> Iterator[None]:
        """One adder at a time, so two adds cannot both take a query or a part number."""
        with open(self.path / "queries" / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    # -- attempts and verdicts -----------------------------------------------------------

    def store(self, shard: tuple[int, int] = (0, 1)) -> AttemptStore:
        """The attempt store of one shard; ``(0, 1)`` is the whole of an unsharded run."""
        i, n = shard
        if not 0 <= i < n:
            raise UsageError(f"bad shard {i}/{n}: need 0 <= i < N")
        if (count := self.shard_count()) not in (None, n):
            raise RunStoreError(
                f"{self.path} stores attempts in {count} shards; use --shard i/{count} "
                "(a run keeps the split its first attempts were stored with)"
            )
        return AttemptStore(self.path / "db" / f"shard-{i:05d}-of-{n:05d}.sqlite", shard=shard)

    def shard_paths(self) -> list[Path]:
        return sorted((self.path / "db").glob("shard-*-of-*.sqlite"))

    def shard_count(self) -> int | None:
        """The N of this run's shard databases, or None before any attempt is stored."""
        counts = {int(p.stem.rsplit("-", 1)[1]) for p in self.shard_paths()}
        if len(counts) > 1:
            raise RunStoreError(f"{self.path / 'db'} mixes shard counts {sorted(counts)}")
        return counts.pop() if counts else None

    def merge_shards(self) -> AttemptStore:
        """A store with every shard's rows: the only shard if unsharded, else db/merged.sqlite.

        Idempotent: rows already merged are skipped, so it can run after every new batch.
        """
        if (self.shard_count() or 1) == 1:
            return self.store()
        merged = AttemptStore(self.path / "db" / "merged.sqlite")
        for path in self.shard_paths():
            merged.merge_from(path)
        return merged


class AttemptStore:
    """Attempts and verdicts of one shard in SQLite; a context manager that closes it."""

    def __init__(self, path: Path, shard: tuple[int, int] | None = None):
        """``shard`` restricts writes to that shard's queries; None accepts any query."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.shard = path, shard
        self._conn = sqlite3.connect(path, isolation_level=None, timeout=60)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._conn.executescript(_SCHEMA)

    def __enter__(self) -> AttemptStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._conn.close()

    def add_attempts(self, attempts: Iterable[Attempt]) -> int:
        """Commit a batch in one transaction; returns how many were new (the rest existed)."""
        return self._insert("attempts", attempts)

    def add_verdicts(self, verdicts: Iterable[Verdict]) -> int:
        """Like ``add_attempts``; each verdict's attempt must be stored already."""
        try:
            return self._insert("verdicts", verdicts)
        except sqlite3.IntegrityError as err:
            raise RunStoreError(
                f"{self.path}: a verdict refers to an attempt that is not stored ({err}); "
                "store attempts before their verdicts"
            ) from None

    def unfinished(
        self,
        teacher: str,
        query_ids: Iterable[str],
        *,
        max_attempts: int,
        threshold: float = PASS_THRESHOLD,
    ) -> Iterator[tuple[str, int]]:
        """``(query_id, next attempt index)`` for each query ``teacher`` should be asked again.

        Skipped: queries that passed, that have an attempt waiting for its verdict (it may
        pass), and that used up ``max_attempts``. Failed and errored attempts count.
        """
        for chunk in _chunks(query_ids, 500):
            for query_id in chunk:
                self._check_shard(query_id)
            marks = ",".join("?" * len(chunk))
            rows = self._conn.execute(
                "SELECT a.query_id, MAX(a.attempt), COALESCE(MAX(v.score >= ?), 0),"
                " SUM(a.error IS NULL AND v.score IS NULL)"
                " FROM attempts a LEFT JOIN verdicts v USING (query_id, teacher, attempt)"
                f" WHERE a.teacher = ? AND a.query_id IN ({marks}) GROUP BY a.query_id",
                (threshold, teacher, *chunk),
            )
            stats = {row[0]: tuple(row)[1:] for row in rows}
            for query_id in chunk:
                last, passed, waiting = stats.get(query_id, (-1, 0, 0))
                if not passed and not waiting and last + 1 < max_attempts:
                    yield query_id, last + 1

    def iter_unverified(self, teacher: str | None = None) -> Iterator[Attempt]:
        """Attempts without a verdict, errors excluded (there is nothing to verify)."""
        where = "v.query_id IS NULL AND a.error IS NULL"
        if teacher is not None:
            where += " AND a.teacher = ?"
        rows = self._scan(
            "SELECT a.* FROM attempts a LEFT JOIN verdicts v USING (query_id, teacher, attempt)",
            where,
            () if teacher is None else (teacher,),
        )
        for row in rows:
            yield Attempt.from_dict(_json_fields(dict(row), json.loads))

    def _unverified(self, what: str, teacher: str | None) -> list[tuple[Any, ...]]:
        """``what`` over the attempts ``iter_unverified`` yields (the same filter)."""
        where = " AND a.teacher = ?" if teacher is not None else ""
        return self._conn.execute(
            f"SELECT {what} FROM attempts a LEFT JOIN verdicts v USING (query_id, teacher, attempt)"
            f" WHERE v.query_id IS NULL AND a.error IS NULL{where}",
            () if teacher is None else (teacher,),
        ).fetchall()

    def count_unverified(self, teacher: str | None = None) -> int:
        return self._unverified("COUNT(*)", teacher)[0][0]

    def unverified_query_ids(self, teacher: str | None = None) -> set[str]:
        return {row[0] for row in self._unverified("DISTINCT a.query_id", teacher)}

    def clear_verdicts(self, teacher: str | None = None) -> int:
        """Drop verdicts so they can be redone (`verify --force`), in one transaction.

        The only way a verdict changes: rows are otherwise immutable. A crash after this
        leaves attempts unverified, which the next verify picks up.
        """
        with self._transaction():
            if teacher is None:
                return self._conn.execute("DELETE FROM verdicts").rowcount
            return self._conn.execute("DELETE FROM verdicts WHERE teacher = ?", (teacher,)).rowcount

    def iter_passed(
        self, teacher: str, threshold: float = PASS_THRESHOLD
    ) -> Iterator[tuple[Attempt, Verdict]]:
        """The first passing attempt of each query, with its verdict, in query_id order."""
        rows = self._scan(
            "SELECT a.*, v.verifier, v.score, v.details"
            " FROM attempts a JOIN verdicts v USING (query_id, teacher, attempt)",
            "a.teacher = ? AND v.score >= ?",
            (teacher, threshold),
        )
        previous = None
        for row in rows:
            if row["query_id"] == previous:
                continue
            previous = row["query_id"]
            values = _json_fields(dict(row), json.loads)
            yield (
                Attempt.from_dict({c: values[c] for c in _COLUMNS["attempts"]}),
                Verdict.from_dict({c: values[c] for c in _COLUMNS["verdicts"]}),
            )

    def counts(self, threshold: float = PASS_THRESHOLD) -> dict[str, TeacherCounts]:
        """Per teacher, see ``TeacherCounts``."""
        result = {
            teacher: TeacherCounts(queries=queries, attempts=attempts, errors=errors)
            for teacher, queries, attempts, errors in self._conn.execute(
                "SELECT teacher, COUNT(DISTINCT query_id), COUNT(*), SUM(error IS NOT NULL)"
                " FROM attempts GROUP BY teacher"
            )
        }
        for teacher, passed, failed in self._conn.execute(
            "SELECT teacher, SUM(best >= ?), SUM(best < ?) FROM (SELECT teacher, query_id,"
            " MAX(score) AS best FROM verdicts GROUP BY teacher, query_id) GROUP BY teacher",
            (threshold, threshold),
        ):
            result[teacher].passed, result[teacher].failed = passed, failed
        return result

    def merge_from(self, source: Path) -> None:
        """Copy in another store's rows that are not here yet, in one transaction."""
        self._conn.execute("ATTACH DATABASE ? AS source", (str(source),))
        try:
            with self._transaction():
                for table, columns in _COLUMNS.items():
                    names = ", ".join(columns)
                    self._conn.execute(
                        f"INSERT INTO main.{table} ({names}) SELECT {names} FROM source.{table}"
                        " WHERE true ON CONFLICT DO NOTHING"
                    )
        finally:
            self._conn.execute("DETACH DATABASE source")

    def _insert(self, table: str, records: Iterable[Attempt | Verdict]) -> int:
        columns = _COLUMNS[table]
        rows = []
        for record in records:
            self._check_shard(record.query_id)
            values = _json_fields(record.to_dict(), _dumps)
            rows.append(tuple(values[c] for c in columns))
        marks = ", ".join("?" * len(columns))
        with self._transaction():
            before = self._conn.total_changes
            self._conn.executemany(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"
                " ON CONFLICT DO NOTHING",
                rows,
            )
            return self._conn.total_changes - before

    def _check_shard(self, query_id: str) -> None:
        if self.shard is not None and shard_of(query_id, self.shard[1]) != self.shard[0]:
            i, n = self.shard
            raise RunStoreError(
                f"query {query_id} belongs to shard {shard_of(query_id, n)}/{n}, not {i}/{n}; "
                "take a shard's queries from Run.iter_queries(shard=...)"
            )

    def _scan(self, select: str, where: str, params: tuple[Any, ...]) -> Iterator[sqlite3.Row]:
        """Rows in key order, a page per read, so long iterations never pin the WAL."""
        after: tuple[Any, ...] = ("", "", -1)
        while True:
            page = self._conn.execute(
                f"{select} WHERE {where} AND ({_KEY}) > (?, ?, ?) ORDER BY {_KEY} LIMIT {_PAGE}",
                (*params, *after),
            ).fetchall()
            yield from page
            if len(page) < _PAGE:
                return
            after = (page[-1]["query_id"], page[-1]["teacher"], page[-1]["attempt"])

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")


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


def _diff(frozen: Any, given: Any, key: str = "") -> list[str]:
    """What differs between two configs, one ``key: old, new`` line per differing leaf."""
    if isinstance(frozen, dict) and isinstance(given, dict):
        return [
            line
            for k in sorted(frozen.keys() | given.keys(), key=str)
            for line in _diff(frozen.get(k, _UNSET), given.get(k, _UNSET), f"{key}{k}.")
        ]
    if frozen == given:
        return []
    shown = ["unset" if v is _UNSET else repr(v) for v in (frozen, given)]
    return [f"{key.rstrip('.')}: {shown[0]} in run.yaml, {shown[1]} given"]
