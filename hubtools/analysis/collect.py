"""The responses to compare, read as numbers: per teacher and category, tokens and ppl.

One response per teacher and query: the first attempt that passed (what ``build``
releases), over the queries every listed teacher passed. Texts are read only when a
token count must come from the tokenizer, a page at a time; what is kept is one
``array`` entry per response (8 bytes), so millions of responses fit.

Token counts, in order of preference: the stored ``ResponseScore`` (``hubtools score``:
``total_tokens`` with its ``token_source``), the teacher's reported
``completion_tokens``, else the tokenizer given (think + answer, no special tokens).
"""

from __future__ import annotations

import sqlite3
from array import array
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hubtools.errors import EmptyReleaseError, UsageError
from hubtools.plural import plural
from hubtools.records import Category

ORDER = [c.value for c in Category]
_PAGE = 2000


class Series:
    """One teacher's responses in one category: a token count and a ppl (if scored) each."""

    __slots__ = ("tokens", "ppl", "think", "answer", "split")

    def __init__(self) -> None:
        self.tokens = array("q")
        self.ppl = array("d")
        self.think = self.answer = self.split = 0  # sums over responses with a known split

    def add(self, tokens: int, ppl: float | None, think: int | None, answer: int | None) -> None:
        self.tokens.append(tokens)
        if ppl is not None:
            self.ppl.append(ppl)
        if think is not None and answer is not None:
            self.think += think
            self.answer += answer
            self.split += 1


@dataclass
class Collected:
    """What ``stats`` needs: ``series[teacher][category]``, and where the counts came from."""

    teachers: list[str]
    source: dict[str, Any]
    series: dict[str, dict[str, Series]] = field(default_factory=dict)
    token_sources: dict[str, Counter[str]] = field(default_factory=dict)
    skipped: int = 0  # passes whose query is not in the run, or repeated prompts in a release

    def add(self, teacher: str, category: str, tokens: int, source: str, ppl: float | None,
            think: int | None = None, answer: int | None = None) -> None:  # fmt: skip
        by_category = self.series.setdefault(teacher, {})
        series = by_category.get(category)
        if series is None:
            series = by_category[category] = Series()
        series.add(tokens, ppl, think, answer)
        self.token_sources.setdefault(teacher, Counter())[source] += 1

    def categories(self) -> list[str]:
        present = {c for by in self.series.values() for c in by}
        return [c for c in ORDER if c in present] + sorted(present - set(ORDER))

    def responses(self) -> int:
        return sum(len(s.tokens) for by in self.series.values() for s in by.values())


class TokenCounter:
    """A tokenizer loaded on first use (transformers): a Hub id, a folder or a .gguf file."""

    def __init__(self, name: str):
        self.name, self._tokenizer = name, None

    @property
    def source(self) -> str:
        return f"tokenizer:{self.name}"

    def load(self) -> None:
        if self._tokenizer is not None:
            return
        try:
            from transformers import AutoTokenizer
        except ImportError:
            raise UsageError(
                "--tokenizer needs transformers: pip install 'hubtools[score]'"
            ) from None
        path = Path(self.name)
        try:
            if path.suffix == ".gguf" and path.is_file():
                self._tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
            else:
                self._tokenizer = AutoTokenizer.from_pretrained(self.name)
        except Exception as err:  # OSError, ValueError, HTTP errors: all say "cannot load"
            reason = " ".join(str(err).split())[:300]
            raise UsageError(f"--tokenizer {self.name}: cannot load it ({reason})") from None

    def count(self, texts: Sequence[str]) -> list[int]:
        self.load()
        if not texts:
            return []
        backend = getattr(self._tokenizer, "backend_tokenizer", None)
        if backend is not None:  # a fast tokenizer: its Rust batch, without Python encodings
            return [len(e.ids) for e in backend.encode_batch(list(texts), add_special_tokens=False)]
        ids = self._tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        return [len(i) for i in ids]


class MissingTokenCounts(UsageError):
    """Responses without a token count, and no tokenizer to count them."""


def missing_counts_error(n: int, where: str) -> MissingTokenCounts:
    return MissingTokenCounts(
        f"no token count for {plural(n, 'response')} of {where}: run `hubtools score` "
        "on the run first, or pass --tokenizer ID_OR_FOLDER to count them here"
    )


# -- a run --------------------------------------------------------------------------------

_PASSED = (
    "SELECT f.query_id, f.attempt, a.completion_tokens, s.total_tokens, s.think_tokens,"
    " s.answer_tokens, s.token_source, s.ppl"
    " FROM (SELECT query_id, MIN(attempt) AS attempt FROM verdicts"
    "       WHERE teacher = ? AND score >= ? AND query_id > ? GROUP BY query_id"
    "       ORDER BY query_id LIMIT ?) f"
    " JOIN attempts a ON a.query_id = f.query_id AND a.teacher = ? AND a.attempt = f.attempt"
    " LEFT JOIN scores s ON s.query_id = f.query_id AND s.teacher = ? AND s.attempt = f.attempt"
    " ORDER BY f.query_id"
)


def _passed(conn: sqlite3.Connection, teacher: str, threshold: float) -> Iterator[tuple]:
    """``(query_id, attempt, numbers...)`` of the teacher's first passing attempt per query,
    in query_id order; a page per read (keyset pagination), so it never pins the WAL."""
    after = ""
    while True:
        page = conn.execute(_PASSED, (teacher, threshold, after, _PAGE, teacher, teacher))
        page = page.fetchall()
        yield from page
        if len(page) < _PAGE:
            return
        after = page[-1][0]


def _merge_join(streams: list[Iterator[tuple]]) -> Iterator[list[tuple]]:
    """The rows of the queries present in every stream (each sorted by query_id)."""
    heads = [next(s, None) for s in streams]
    while all(h is not None for h in heads):
        top = max(h[0] for h in heads)
        if all(h[0] == top for h in heads):
            yield heads
            heads = [next(s, None) for s in streams]
            continue
        for k, stream in enumerate(streams):
            while heads[k] is not None and heads[k][0] < top:
                heads[k] = next(stream, None)


class _Categories:
    """``query_id -> category`` of a whole run as two sorted numpy arrays (~33 bytes a query)."""

    def __init__(self, run_path: Path):
        import numpy as np
        import pyarrow as pa
        import pyarrow.parquet as pq

        parts = sorted((run_path / "queries").glob("part-*.parquet"))
        tables = [pq.read_table(p, columns=["query_id", "category"]) for p in parts]
        table = pa.concat_tables(tables) if tables else None
        ids = np.array(table["query_id"].to_pylist() if table else [], dtype="S32")
        names = table["category"].to_pylist() if table else []
        self.names = sorted(set(names))
        codes = np.array([self.names.index(n) for n in names], dtype=np.int16)
        order = np.argsort(ids, kind="stable")
        self.ids, self.codes = ids[order], codes[order]

    def lookup(self, query_ids: list[str]) -> list[str | None]:
        import numpy as np

        if not len(self.ids):
            return [None] * len(query_ids)
        wanted = np.array(query_ids, dtype="S32")
        at = np.minimum(np.searchsorted(self.ids, wanted), len(self.ids) - 1)
        found = self.ids[at] == wanted
        return [self.names[c] if ok else None for c, ok in zip(self.codes[at], found, strict=True)]


def check_run_counts(store_path: Path, teachers: list[str], threshold: float) -> tuple[int, int]:
    """(queries every teacher passed, their first passes without any token count)."""
    marks = ",".join("?" * len(teachers))
    conn = sqlite3.connect(f"file:{store_path}?mode=ro", uri=True)
    try:
        common = conn.execute(
            f"SELECT COUNT(*) FROM (SELECT query_id FROM verdicts WHERE teacher IN ({marks})"
            " AND score >= ? GROUP BY query_id HAVING COUNT(DISTINCT teacher) = ?)",
            (*teachers, threshold, len(teachers)),
        ).fetchone()[0]
        # Cheap first (a scan of the passes and their scores): usually everything is scored.
        unscored = conn.execute(
            "SELECT COUNT(*) FROM verdicts v LEFT JOIN scores s USING (query_id, teacher, attempt)"
            f" WHERE v.teacher IN ({marks}) AND v.score >= ? AND s.total_tokens IS NULL",
            (*teachers, threshold),
        ).fetchone()[0]
        missing = 0
        if unscored:
            missing = _missing_counts(conn, marks, teachers, threshold)
    finally:
        conn.close()
    return common, missing


def _missing_counts(
    conn: sqlite3.Connection, marks: str, teachers: list[str], threshold: float
) -> int:
    """First passes of the common queries with neither a stored nor a reported count."""
    return conn.execute(
        "WITH common AS (SELECT query_id FROM verdicts WHERE teacher IN"
        f" ({marks}) AND score >= ? GROUP BY query_id HAVING COUNT(DISTINCT teacher) = ?),"
        " first AS (SELECT query_id, teacher, MIN(attempt) AS attempt FROM verdicts"
        f" WHERE teacher IN ({marks}) AND score >= ? AND query_id IN common"
        " GROUP BY query_id, teacher)"
        " SELECT COUNT(*) FROM first f JOIN attempts a USING (query_id, teacher, attempt)"
        " LEFT JOIN scores s USING (query_id, teacher, attempt)"
        " WHERE s.total_tokens IS NULL AND a.completion_tokens IS NULL",
        (*teachers, threshold, len(teachers), *teachers, threshold),
    ).fetchone()[0]


def collect_run(
    run_path: Path,
    store_path: Path,
    teachers: list[str],
    threshold: float,
    tokenizer: TokenCounter | None,
    bar: Any,
    *,
    exclude: frozenset[str] = frozenset(),
) -> Collected:
    """The numbers of the first passing attempt of each teacher, over the common queries
    (but the ``exclude``d ones)."""
    collected = Collected(list(teachers), {"run": run_path.name, "threshold": threshold})
    categories = _Categories(run_path)
    conn = sqlite3.connect(f"file:{store_path}?mode=ro", uri=True)
    try:
        streams = [_passed(conn, t, threshold) for t in teachers]
        page: list[list[tuple]] = []
        for rows in _merge_join(streams):
            if rows[0][0] in exclude:
                bar.update(len(teachers))
                continue
            page.append(rows)
            if len(page) >= _PAGE:
                _add_page(collected, conn, page, categories, tokenizer)
                bar.update(len(page) * len(teachers))
                page = []
        _add_page(collected, conn, page, categories, tokenizer)
        bar.update(len(page) * len(teachers))
    finally:
        conn.close()
    if not collected.series:
        raise EmptyReleaseError(
            f"nothing to analyze: the queries every teacher passed are not in {run_path}'s "
            "query set"
        )
    return collected


def _add_page(
    collected: Collected,
    conn: sqlite3.Connection,
    page: list[list[tuple]],
    categories: _Categories,
    tokenizer: TokenCounter | None,
) -> None:
    if not page:
        return
    names = categories.lookup([rows[0][0] for rows in page])
    counted = _count_missing(conn, page, collected.teachers, tokenizer)
    for rows, category in zip(page, names, strict=True):
        if category is None:  # a pass whose query the run does not hold: build skips it too
            collected.skipped += 1
            continue
        for teacher, row in zip(collected.teachers, rows, strict=True):
            query_id, attempt, completion, total, think, answer, source, ppl = row
            if total is not None:
                tokens, source = total, source or "score"
            elif completion is not None:
                tokens, source = completion, "completion_tokens"
            else:
                tokens, think, answer = counted[(query_id, teacher, attempt)]
                source = tokenizer.source
            collected.add(teacher, category, tokens, source, ppl, think, answer)


def _count_missing(
    conn: sqlite3.Connection,
    page: list[list[tuple]],
    teachers: list[str],
    tokenizer: TokenCounter | None,
) -> dict[tuple[str, str, int], tuple[int, int, int]]:
    """Tokenizer counts (total, think, answer) of the responses that have no count."""
    keys = [
        (row[0], teacher, row[1])
        for rows in page
        for teacher, row in zip(teachers, rows, strict=True)
        if row[3] is None and row[2] is None
    ]
    if not keys:
        return {}
    if tokenizer is None:  # checked before the work began; the run changed since
        raise missing_counts_error(len(keys), "the run")
    from hubtools.reasoning import split_reasoning

    thinks, answers = [], []
    for key in keys:
        think, answer, text = conn.execute(
            "SELECT think, answer, text FROM attempts WHERE query_id = ? AND teacher = ?"
            " AND attempt = ?",
            key,
        ).fetchone()
        if think is None and answer is None:
            split = split_reasoning(text)
            think, answer = split.think, split.answer
        thinks.append(think or "")
        answers.append(answer or "")
    think_n, answer_n = tokenizer.count(thinks), tokenizer.count(answers)
    return {k: (t + a, t, a) for k, t, a in zip(keys, think_n, answer_n, strict=True)}
