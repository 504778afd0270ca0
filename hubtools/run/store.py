"""Attempts and verdicts of one shard, in SQLite (see the package docstring)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import Any

from hubtools.errors import RunStoreError
from hubtools.records import PASS_THRESHOLD, Attempt, ResponseScore, Verdict
from hubtools.run._files import (
    _JSON_FIELDS,
    _chunks,
    _dumps,
    _json_fields,
    shard_of,
)

_PAGE = 1000
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
CREATE TABLE IF NOT EXISTS scores (
    query_id TEXT NOT NULL, teacher TEXT NOT NULL, attempt INTEGER NOT NULL,
    scorer TEXT NOT NULL, backend TEXT NOT NULL, ppl REAL, nll_sum REAL,
    scored_tokens INTEGER NOT NULL, think_tokens INTEGER, answer_tokens INTEGER,
    total_tokens INTEGER, token_source TEXT NOT NULL,
    PRIMARY KEY (query_id, teacher, attempt),
    FOREIGN KEY (query_id, teacher, attempt) REFERENCES attempts
);
"""
_COLUMNS = {
    "attempts": tuple(f.name for f in fields(Attempt)),
    "verdicts": tuple(f.name for f in fields(Verdict)),
    "scores": tuple(f.name for f in fields(ResponseScore)),
}
_KEY = "a.query_id, a.teacher, a.attempt"
_KEY_COLUMNS = ("query_id", "teacher", "attempt")


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
        return self._write("attempts", attempts)

    def add_verdicts(self, verdicts: Iterable[Verdict]) -> int:
        """Like ``add_attempts``; each verdict's attempt must be stored already."""
        try:
            return self._write("verdicts", verdicts)
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

    def missing(
        self, teacher: str, query_ids: Iterable[str], *, samples: int
    ) -> Iterator[tuple[str, int]]:
        """``(query_id, attempt)`` for each of attempts 0..samples-1 not stored (eval's samples,
        which are made whether or not an earlier one passed), attempt by attempt."""
        for chunk in _chunks(query_ids, 500):
            for query_id in chunk:
                self._check_shard(query_id)
            marks = ",".join("?" * len(chunk))
            rows = self._conn.execute(
                "SELECT query_id, attempt FROM attempts"
                f" WHERE teacher = ? AND attempt < ? AND query_id IN ({marks})",
                (teacher, samples, *chunk),
            )
            stored = {tuple(row) for row in rows}
            for attempt in range(samples):
                for query_id in chunk:
                    if (query_id, attempt) not in stored:
                        yield query_id, attempt

    def iter_samples(self, teacher: str, *, below: int) -> Iterator[dict[str, Any]]:
        """Attempts 0..below-1 with their verdict's score (None before it): eval's metrics."""
        rows = self._conn.execute(
            "SELECT a.query_id, a.attempt, a.finish_reason, a.completion_tokens,"
            " LENGTH(a.text) AS chars, a.error, v.verifier, v.score"
            " FROM attempts a LEFT JOIN verdicts v USING (query_id, teacher, attempt)"
            " WHERE a.teacher = ? AND a.attempt < ?",
            (teacher, below),
        )
        for row in rows:
            yield dict(row)

    def iter_unverified(self, teacher: str | None = None) -> Iterator[Attempt]:
        """Attempts without a verdict, errors excluded (there is nothing to verify)."""
        for attempt, _ in self.iter_verifiable(teacher):
            yield attempt

    def replace_verdicts(self, verdicts: Iterable[Verdict]) -> int:
        """Write a batch, each verdict replacing its attempt's earlier one, in one transaction.

        The one way a verdict changes (``verify --force``): the old row is overwritten by
        its successor in the transaction that writes it, never deleted ahead of it, so a
        crash at any point leaves every attempt with its old or its new verdict.
        """
        try:
            return self._write("verdicts", verdicts, replace=True)
        except sqlite3.IntegrityError as err:
            raise RunStoreError(
                f"{self.path}: a verdict refers to an attempt that is not stored ({err}); "
                "store attempts before their verdicts"
            ) from None

    def iter_verifiable(
        self, teacher: str | None = None, *, verified: bool = False
    ) -> Iterator[tuple[Attempt, str | None]]:
        """``(attempt, its verdict's verifier or None)`` for attempts without an error;
        ``verified`` includes those that have a verdict (``verify --force``)."""
        where = "a.error IS NULL" + ("" if verified else " AND v.query_id IS NULL")
        if teacher is not None:
            where += " AND a.teacher = ?"
        rows = self._scan(
            "SELECT a.*, v.verifier AS verdict_by FROM attempts a"
            " LEFT JOIN verdicts v USING (query_id, teacher, attempt)",
            where,
            () if teacher is None else (teacher,),
        )
        for row in rows:
            values = _json_fields(dict(row), json.loads)
            by = values.pop("verdict_by")
            yield Attempt.from_dict(values), by

    def verifiable_summary(
        self, teacher: str | None = None, *, verified: bool = False
    ) -> list[tuple[str, str | None, int]]:
        """``(query_id, verdict's verifier or None, attempts)`` over what ``iter_verifiable``
        yields: one row per query and verifier, so planning holds no attempt text."""
        where = "a.error IS NULL" + ("" if verified else " AND v.query_id IS NULL")
        if teacher is not None:
            where += " AND a.teacher = ?"
        return self._conn.execute(
            "SELECT a.query_id, v.verifier, COUNT(*) FROM attempts a"
            f" LEFT JOIN verdicts v USING (query_id, teacher, attempt) WHERE {where}"
            " GROUP BY a.query_id, v.verifier",
            () if teacher is None else (teacher,),
        ).fetchall()

    def count_unverified(self, teacher: str | None = None) -> int:
        """How many attempts ``iter_unverified`` yields."""
        return sum(n for _, _, n in self.verifiable_summary(teacher))

    # -- scores (hubtools score) ----------------------------------------------------------

    def add_scores(self, scores: Iterable[ResponseScore], *, replace: bool = False) -> int:
        """Commit a batch of scores in one transaction; ``replace`` (``score --force``)
        overwrites an attempt's earlier score in that transaction, never deleting first."""
        try:
            return self._write("scores", scores, replace=replace)
        except sqlite3.IntegrityError as err:
            raise RunStoreError(
                f"{self.path}: a score refers to an attempt that is not stored ({err})"
            ) from None

    def _scorable(self, teacher: str | None, passed_only: bool, scored: bool) -> tuple[str, ...]:
        """FROM/WHERE of the attempts ``score`` works on, and the parameters."""
        where = "a.error IS NULL" + ("" if scored else " AND s.query_id IS NULL")
        if passed_only:
            where += " AND v.score >= ?"
        if teacher is not None:
            where += " AND a.teacher = ?"
        source = "attempts a LEFT JOIN scores s USING (query_id, teacher, attempt)" + (
            " JOIN verdicts v USING (query_id, teacher, attempt)" if passed_only else ""
        )
        return source, where

    def iter_unscored(
        self, teacher: str | None = None, *, passed_only: bool = True,
        threshold: float = PASS_THRESHOLD, scored: bool = False,
    ) -> Iterator[Attempt]:  # fmt: skip
        """Attempts without a score (``scored``: with one too), errors excluded; by default
        only those whose verdict passed ``threshold``. In key order, a page per read."""
        source, where = self._scorable(teacher, passed_only, scored)
        params = (threshold,) if passed_only else ()
        rows = self._scan(f"SELECT a.* FROM {source}", where, params + _maybe(teacher))
        for row in rows:
            yield Attempt.from_dict(_json_fields(dict(row), json.loads))

    def count_unscored(
        self, teacher: str | None = None, *, passed_only: bool = True,
        threshold: float = PASS_THRESHOLD, scored: bool = False,
    ) -> int:  # fmt: skip
        source, where = self._scorable(teacher, passed_only, scored)
        params = ((threshold,) if passed_only else ()) + _maybe(teacher)
        return self._conn.execute(
            f"SELECT COUNT(*) FROM {source} WHERE {where}", params
        ).fetchone()[0]

    def iter_scores(self, teacher: str | None = None) -> Iterator[ResponseScore]:
        """Every stored score (of one teacher), in key order."""
        rows = self._scan(
            "SELECT s.* FROM scores s JOIN attempts a USING (query_id, teacher, attempt)",
            "true" if teacher is None else "a.teacher = ?",
            _maybe(teacher),
        )
        for row in rows:
            yield ResponseScore.from_dict(dict(row))

    def scores_for(
        self, keys: Iterable[tuple[str, str, int]]
    ) -> dict[tuple[str, str, int], ResponseScore]:
        """The stored scores of these ``(query_id, teacher, attempt)`` keys (absent: none)."""
        found = {}
        for chunk in _chunks(keys, 300):
            marks = ",".join("(?, ?, ?)" for _ in chunk)
            rows = self._conn.execute(
                f"SELECT * FROM scores WHERE (query_id, teacher, attempt) IN (VALUES {marks})",
                [value for key in chunk for value in key],
            )
            for row in rows:
                score = ResponseScore.from_dict(dict(row))
                found[(score.query_id, score.teacher, score.attempt)] = score
        return found

    def teachers(self) -> set[str]:
        """The teachers with at least one attempt here."""
        return {row[0] for row in self._conn.execute("SELECT DISTINCT teacher FROM attempts")}

    def verdict_counts(self) -> dict[str, int]:
        """Verdicts stored per teacher."""
        return dict(self._conn.execute("SELECT teacher, COUNT(*) FROM verdicts GROUP BY teacher"))

    def passed_in_common(self, teachers: list[str], threshold: float = PASS_THRESHOLD) -> int:
        """How many queries every one of ``teachers`` passed (some attempt >= threshold)."""
        marks = ",".join("?" * len(teachers))
        return self._conn.execute(
            "SELECT COUNT(*) FROM (SELECT query_id FROM verdicts"
            f" WHERE teacher IN ({marks}) AND score >= ? GROUP BY query_id"
            " HAVING COUNT(DISTINCT teacher) = ?)",
            (*teachers, threshold, len(set(teachers))),
        ).fetchone()[0]

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
            present = {
                row[0] for row in self._conn.execute("SELECT name FROM source.sqlite_master")
            }  # a shard last opened before a table existed has none of its rows
            with self._transaction():
                for table, columns in _COLUMNS.items():
                    if table not in present:
                        continue
                    names = ", ".join(columns)
                    self._conn.execute(
                        f"INSERT INTO main.{table} ({names}) SELECT {names} FROM source.{table}"
                        f" WHERE true{_on_conflict(table, columns)}"
                    )
        finally:
            self._conn.execute("DETACH DATABASE source")

    def _write(
        self, table: str, records: Iterable[Attempt | Verdict], *, replace: bool = False
    ) -> int:
        columns = _COLUMNS[table]
        # Straight from the attributes: `to_dict` copies every container (asdict deep-copied
        # every value: 17 us an attempt), work the writer thread does not need.
        json_at = [i for i, c in enumerate(columns) if c in _JSON_FIELDS]
        rows = []
        for record in records:
            self._check_shard(record.query_id)
            row = [getattr(record, c) for c in columns]
            for i in json_at:
                if row[i] is not None:
                    row[i] = _dumps(row[i])
            rows.append(row)
        marks = ", ".join("?" * len(columns))
        conflict = _on_conflict(table, columns) if replace else " ON CONFLICT DO NOTHING"
        with self._transaction():
            before = self._conn.total_changes
            self._conn.executemany(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks}){conflict}", rows
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


def stored_teachers(paths: Iterable[Path]) -> set[str]:
    """The teachers with attempts in any of these store files (a run's shards)."""
    found: set[str] = set()
    for path in paths:
        with AttemptStore(path) as store:
            found |= store.teachers()
    return found


def _on_conflict(table: str, columns: tuple[str, ...]) -> str:
    """Attempts are immutable (first write wins); a verdict or score replaced with
    ``verify --force`` (or ``score --force``) is updated in place, never deleted first."""
    if table == "attempts":
        return " ON CONFLICT DO NOTHING"
    values = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in _KEY_COLUMNS)
    return f" ON CONFLICT ({', '.join(_KEY_COLUMNS)}) DO UPDATE SET {values}"


def _maybe(teacher: str | None) -> tuple[str, ...]:
    return () if teacher is None else (teacher,)
