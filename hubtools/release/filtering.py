"""``build``'s quality step: the run's ``quality:`` filters over every teacher of a release.

A query stays only if the answer of every teacher of the release (``--teacher`` and the
``--parallel`` ones) passes every filter, so parallel datasets keep the same queries.
Each removal is counted per filter, teacher and category (a row may fail several: each
failure counts), and the removed rows go, with their reasons, to
``RUN/quality/<teacher>-removed.parquet``: in the run, not the release folder, so they
are never published nor a config of the dataset.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from hubtools.quality.filters import (
    PerplexityFilter,
    QualityConfig,
    Removal,
    StructureFilter,
    TemplateFilter,
)
from hubtools.reasoning import think_and_answer
from hubtools.records import RELEASE_SCHEMA, Attempt, Query, ResponseScore, Verdict
from hubtools.run import AttemptStore
from hubtools.run.lock import sweep

QUALITY_DIR = "quality"
Key = tuple[str, str, int]


def removed_schema() -> pa.Schema:
    head = [
        pa.field("query_id", pa.string()),
        pa.field("category", pa.string()),
        pa.field("teacher", pa.string()),
        pa.field("attempt", pa.int64()),
        pa.field("filters", pa.list_(pa.string())),  # "template:am", one per failure
        pa.field("reasons", pa.string()),
    ]
    return pa.schema(head + [f for f in RELEASE_SCHEMA if f.name != "query_id"])  # once


class ReleaseFilters:
    """The filters of one build, prepared (templates counted, percentiles resolved)."""

    def __init__(
        self, config: QualityConfig, store: AttemptStore, teachers: Sequence[str],
        threshold: float, workdir: Path, progress: bool,
    ) -> None:  # fmt: skip
        self.config, self.teachers = config, list(teachers)
        self.structure = StructureFilter() if config.structure else None
        self.ppl = {
            t: PerplexityFilter.for_teacher(
                store.path, t, threshold, config.ppl_for(t), config.allow_unscored
            )
            for t in self.teachers
            if config.ppl_for(t).active
        }
        self.template: dict[str, TemplateFilter] = {}
        if config.template is not None:
            for t in self.teachers:
                texts = _texts(store, t, threshold, progress)
                self.template[t] = TemplateFilter(t, config.template).fit(texts, workdir)
        self.removed: Counter[tuple[str, str, str]] = Counter()  # (filter, teacher, category)
        self.removed_rows: Counter[str] = Counter()
        self.unscored_kept: Counter[str] = Counter()

    @property
    def active(self) -> bool:
        return bool(self.structure or self.ppl or self.template)

    def reasons(
        self, query: Query, by_teacher: dict[str, tuple[Attempt, Verdict]],
        ppls: dict[str, float | None],
    ) -> list[Removal]:  # fmt: skip
        found = []
        turns = (
            self.structure.check_turns([m["role"] for m in query.messages])
            if (self.structure)
            else None
        )
        for t in self.teachers:
            attempt = by_teacher[t][0]
            if self.structure:
                think, answer = think_and_answer(attempt)
                detail = turns or self.structure.check_answer(think, answer, attempt.finish_reason)
                if detail:
                    found.append(Removal("structure", t, detail))
            if t in self.template and (detail := self.template[t].check(query.query_id)):
                found.append(Removal("template", t, detail))
            if t in self.ppl and (detail := self.ppl[t].check(ppls.get(t))):
                found.append(Removal("ppl", t, detail))
        if not found:
            for t in self.ppl:
                self.unscored_kept[t] += ppls.get(t) is None
        else:
            category = query.category.value
            self.removed_rows[category] += 1
            for r in found:
                self.removed[(r.filter, r.teacher, category)] += 1
        return found

    def summary(self, removed_file: str | None) -> dict[str, Any]:
        """What the card's quality section shows."""
        return {
            "filters": self.config.describe(),
            "removed": [
                {"filter": f, "teacher": t, "category": c, "removed": n}
                for (f, t, c), n in sorted(self.removed.items())
            ],
            "removed_rows": dict(self.removed_rows),
            "removed_file": removed_file,
            "ppl_thresholds": {t: f.threshold for t, f in self.ppl.items()},
            "unscored_kept": {t: n for t, n in self.unscored_kept.items() if n},
            "template": {
                t: {
                    "responses": f.responses,
                    "frequent_ngrams": f.frequent,
                    "flagged": len(f.flagged),
                }
                for t, f in self.template.items()
            },  # fmt: skip
        }


def _texts(store: AttemptStore, teacher: str, threshold: float, progress: bool) -> Iterator:
    """``(query_id, think + answer)`` of the teacher's first passing attempts."""
    bar = tqdm(unit="answer", desc=f"template n-grams {teacher}", disable=not progress)
    for attempt, _ in store.iter_passed(teacher, threshold):
        think, answer = think_and_answer(attempt)
        bar.update()
        yield attempt.query_id, f"{think or ''}\n{answer or ''}"
    bar.close()


def page_scores(
    store: AttemptStore, page: list[tuple[Query, dict[str, tuple[Attempt, Verdict]]]]
) -> dict[Key, ResponseScore]:
    keys = [(a.query_id, a.teacher, a.attempt) for _, by in page for a, _ in by.values()]
    return store.scores_for(keys)


class RemovedWriter:
    """Streams removed rows to ``RUN/quality/<teacher>-removed.parquet`` (replaced at close)."""

    def __init__(self, run_path: Path, teacher: str):
        self.folder = run_path / QUALITY_DIR
        self.folder.mkdir(exist_ok=True)
        name = f"{teacher}-removed.parquet"
        sweep(self.folder, rf"\.{re.escape(name)}\.(?P<pid>\d+)\.tmp")
        self.path = self.folder / name
        self.tmp = self.folder / f".{name}.{os.getpid()}.tmp"
        self.schema = removed_schema()
        self._writer = pq.ParquetWriter(str(self.tmp), self.schema, compression="zstd")
        self._buffer: list[dict[str, Any]] = []
        self.rows = 0

    def add(self, row: dict[str, Any], query: Query, attempt: Attempt, found: list[Removal]):  # noqa: ANN201
        self._buffer.append({
            "query_id": query.query_id, "category": query.category.value,
            "teacher": attempt.teacher, "attempt": attempt.attempt,
            "filters": [f"{r.filter}:{r.teacher}" for r in found],
            "reasons": "; ".join(str(r) for r in found), **row,
        })  # fmt: skip
        self.rows += 1
        if len(self._buffer) >= 500:
            self._flush()

    def _flush(self) -> None:
        if self._buffer:
            self._writer.write_table(pa.Table.from_pylist(self._buffer, schema=self.schema))
            self._buffer = []

    def close(self) -> Path:
        self._flush()
        self._writer.close()
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        try:
            self._writer.close()
        finally:
            self.tmp.unlink(missing_ok=True)
