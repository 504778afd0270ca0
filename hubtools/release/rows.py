"""From a run to release rows: the verified attempts, their queries, the AM row shape.

Everything streams in ``query_id`` order (the order ``AttemptStore.iter_passed``
yields), so a build holds one page of attempts and one page of queries at a time.
Queries are looked up in a throwaway SQLite index of the run's query set, built in
one pass over its Parquet parts.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from hubtools.reasoning import assistant_value, think_and_answer
from hubtools.records import Attempt, Query, ReleaseRow, ResponseScore, Turn, TurnInfo, Verdict
from hubtools.run import AttemptStore, Run

_PAGE = 1000
AM_FROM = {"user": "human", "assistant": "assistant"}  # chat role -> AM `from`


class QueryIndex:
    """``query_id -> Query`` for a whole run, on disk (a run may hold millions of queries)."""

    def __init__(self, run: Run, path: Path):
        self.path = path
        self._conn = sqlite3.connect(path, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=OFF")
        self._conn.execute("PRAGMA synchronous=OFF")
        self._conn.execute(
            "CREATE TABLE queries (query_id TEXT PRIMARY KEY, category TEXT, source TEXT,"
            " messages TEXT, reference TEXT, tests TEXT, constraints TEXT, meta TEXT)"
        )
        self._conn.execute("BEGIN")
        for part in sorted((run.path / "queries").glob("part-*.parquet")):
            for batch in pq.ParquetFile(part).iter_batches(batch_size=10_000):
                columns = batch.to_pydict()
                columns["messages"] = [
                    json.dumps(m, ensure_ascii=False) for m in columns["messages"]
                ]
                names = (
                    "query_id",
                    "category",
                    "source",
                    "messages",
                    "reference",
                    "tests",
                    "constraints",
                    "meta",
                )
                self._conn.executemany(
                    "INSERT OR IGNORE INTO queries VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    zip(*(columns[n] for n in names), strict=True),
                )
        self._conn.execute("COMMIT")

    def get_many(self, query_ids: Sequence[str]) -> dict[str, Query]:
        marks = ",".join("?" * len(query_ids))
        rows = self._conn.execute(f"SELECT * FROM queries WHERE query_id IN ({marks})", query_ids)
        found = {}
        for qid, category, source, messages, reference, tests, constraints, meta in rows:
            found[qid] = Query(
                query_id=qid,
                category=category,
                source=source,
                messages=json.loads(messages),
                reference=reference,
                tests=_loads(tests),
                constraints=_loads(constraints),
                meta=_loads(meta) or {},
            )
        return found

    def category_counts(self) -> dict[str, int]:
        return dict(self._conn.execute("SELECT category, COUNT(*) FROM queries GROUP BY category"))

    def close(self) -> None:
        self._conn.close()


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


Passed = dict[str, tuple[Attempt, Verdict]]


def passed_in_all(
    store: AttemptStore, teachers: Sequence[str], threshold: float
) -> Iterator[tuple[str, Passed]]:
    """``(query_id, {teacher: (attempt, verdict)})`` for queries every teacher passed.

    A merge join of the teachers' ``iter_passed`` streams, which are all in query_id order.
    """
    streams = [store.iter_passed(t, threshold) for t in teachers]
    heads = [next(s, None) for s in streams]
    while all(h is not None for h in heads):
        ids = [h[0].query_id for h in heads]
        top = max(ids)
        if all(i == top for i in ids):
            yield top, {t: h for t, h in zip(teachers, heads, strict=True)}
            heads = [next(s, None) for s in streams]
            continue
        for k, stream in enumerate(streams):
            while heads[k] is not None and heads[k][0].query_id < top:
                heads[k] = next(stream, None)


def with_queries(
    passed: Iterator[tuple[str, Passed]], index: QueryIndex
) -> Iterator[tuple[Query, Passed]]:
    """Attach each passed query's record, a page at a time; attempts of unknown queries skip."""
    page: list[tuple[str, Passed]] = []
    for item in passed:
        page.append(item)
        if len(page) >= _PAGE:
            yield from _attach(page, index)
            page = []
    yield from _attach(page, index)


def _attach(page: list[tuple[str, Passed]], index: QueryIndex) -> Iterator[tuple[Query, Passed]]:
    if not page:
        return
    queries = index.get_many([qid for qid, _ in page])
    for qid, passed in page:
        if qid in queries:
            yield queries[qid], passed


def row_ppl(attempt: Attempt, score: ResponseScore | None) -> float | None:
    """The perplexity a row carries: the stored score (``hubtools score``, whose scorer the
    card names) wins over a ``ppl`` imported with the answer (scorer unknown)."""
    if score is not None and score.ppl is not None:
        return score.ppl
    ppl = attempt.params.get("ppl") if isinstance(attempt.params, dict) else None
    return float(ppl) if isinstance(ppl, int | float) and not isinstance(ppl, bool) else None


def release_row(
    query: Query, attempt: Attempt, verdict: Verdict, *, system: str, model_name: str,
    score: ResponseScore | None = None,
) -> dict[str, Any]:  # fmt: skip
    """One AM-compatible row: the query's turns, then the teacher's answer as the last turn.

    The query's own system turn wins over the teacher's system prompt: it is part of the
    conversation the teacher answered. ``info.ppl`` is ``row_ppl``; ``info.think_tokens`` /
    ``answer_tokens`` are the stored score's (the scorer's tokenizer; null when unscored);
    ``query_id`` joins the parallel datasets of the run.
    """
    turns = query.messages
    if turns and turns[0]["role"] == "system":
        system, turns = turns[0]["content"], turns[1:]
    info = TurnInfo.for_query(query)
    conversation = [Turn(AM_FROM[t["role"]], t["content"], info) for t in turns]
    think, answer = think_and_answer(attempt)
    final = TurnInfo.for_query(
        query,
        think_content=think,
        answer_content=answer,
        verify_score=verdict.score,
        model_name=model_name,
        ppl=row_ppl(attempt, score),
        think_tokens=None if score is None else score.think_tokens,
        answer_tokens=None if score is None else score.answer_tokens,
    )
    conversation.append(Turn("assistant", assistant_value(think, answer), final))
    return ReleaseRow(system, conversation, query.query_id).to_dict()
