"""``hubtools build``: a run's verified answers as a release folder, exactly as on the Hub.

Layout (what ``publish`` uploads, file for file)::

    README.md                                   the card (dataset_cards/ template)
    data/<category>/train-00000-of-00002.parquet  one config per category present
    assets/                                     figures, when there are any
    sft/tokens-NNNNN/train-00000-of-00001.parquet  the training view (``release/sft.py``)

The ``all`` config reads every category's files (its ``data_files`` lists them), so no
row is stored twice. Every file has the one ``RELEASE_SCHEMA``. Rows stream from the
run store into one ``pyarrow.parquet.ParquetWriter`` per category, a row group at a
time; a shard closes once it reaches ``max_shard_bytes`` (or ``max_shard_rows``), so
memory stays flat however many rows there are. The folder is written beside ``out``
and moved into place at the end: a failed build leaves no half folder.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from hubtools.errors import EmptyReleaseError, RunStoreError, UsageError
from hubtools.plural import plural
from hubtools.quality.filters import SECTION as QUALITY
from hubtools.quality.filters import QualityConfig, check_scored
from hubtools.records import PASS_THRESHOLD, RELEASE_SCHEMA, Category
from hubtools.release.filtering import ReleaseFilters, RemovedWriter, page_scores
from hubtools.release.rows import QueryIndex, passed_in_all, release_row, row_ppl, with_queries
from hubtools.release.sft import PromptCounter, SftView, sft_schema
from hubtools.release.stats import CategoryStats, Funnel, read_funnel_file, teacher_funnel
from hubtools.run import AttemptStore, Run, TeacherCounts
from hubtools.run.lock import sweep

DEFAULT_MAX_SHARD_BYTES = 256 * 1024**2
ROW_GROUP_ROWS = 1000
ROW_GROUP_BYTES = 32 * 1024**2
ALL = "all"
MAX_SOURCES = 1000  # distinct query sources named in the card's source_datasets


@dataclass(slots=True)
class BuildResult:
    out: str
    teacher: str
    parallel: list[str]
    rows: dict[str, int]  # per config, `all` included
    files: list[str]
    bytes: int
    seconds: float
    funnel: dict[str, Any] = field(default_factory=dict)
    sft: dict[str, int] = field(default_factory=dict)  # rows per length folder of sft/

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        configs = ", ".join(f"{name} {n:,}" for name, n in self.rows.items() if name != ALL)
        with_others = f" (parallel with {', '.join(self.parallel)})" if self.parallel else ""
        return (
            f"built {self.out} for teacher {self.teacher}{with_others}: kept "
            f"{plural(self.rows.get(ALL, 0), 'row')}{f' ({configs})' if configs else ''} in "
            f"{plural(len(self.files), 'file')}, {self.bytes / 1e6:,.1f} MB, {self.seconds:.1f} s"
        )


def _use_returning_memory_pool() -> pa.MemoryPool:
    """Switch Arrow to an allocator that gives freed buffers back; return the previous one.

    Arrow's default here, mimalloc, kept the shard writers' freed buffers: peak RSS grew
    with the row count (408 MB at 300k rows, 975 MB at 1M). With jemalloc (or the system
    allocator where Arrow has no jemalloc) it stays flat (~240 MB at 100k and at 300k).
    """
    previous = pa.default_memory_pool()
    try:
        pa.set_memory_pool(pa.jemalloc_memory_pool())
    except NotImplementedError:
        pa.set_memory_pool(pa.system_memory_pool())
    return previous


class _ShardWriter:
    """Parquet shards of one config: row groups flushed as they fill, shards rolled by size."""

    def __init__(
        self, folder: Path, max_bytes: int, max_rows: int | None, schema: pa.Schema | None = None
    ):
        self.folder, self.max_bytes, self.max_rows = folder, max_bytes, max_rows
        self.schema = schema or RELEASE_SCHEMA
        self.group_rows = min(ROW_GROUP_ROWS, max_rows or ROW_GROUP_ROWS)
        self.group_bytes = max(1, min(ROW_GROUP_BYTES, max_bytes // 4))
        self.parts: list[Path] = []
        self._writer: pq.ParquetWriter | None = None
        self._sink: Any = None
        self._shard_rows = 0
        self._buffer: list[dict[str, Any]] = []
        self._buffer_bytes = 0

    def add(self, row: dict[str, Any], size: int) -> None:
        self._buffer.append(row)
        self._buffer_bytes += size
        if len(self._buffer) >= self.group_rows or self._buffer_bytes >= self.group_bytes:
            self._flush()

    def _flush(self) -> None:
        if not self._buffer:
            return
        if self._writer is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            path = self.folder / f".part-{len(self.parts):05d}.parquet"
            self.parts.append(path)
            self._sink = pa.OSFile(str(path), "wb")
            self._writer = pq.ParquetWriter(self._sink, self.schema, compression="zstd")
            self._shard_rows = 0
        self._writer.write_table(pa.Table.from_pylist(self._buffer, schema=self.schema))
        self._shard_rows += len(self._buffer)
        self._buffer, self._buffer_bytes = [], 0
        full_rows = self.max_rows is not None and self._shard_rows >= self.max_rows
        if full_rows or self._sink.tell() >= self.max_bytes:
            self._close_shard()

    def _close_shard(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._sink.close()
            self._writer = None

    def close(self) -> list[Path]:
        """Flush, close, and name the shards ``train-XXXXX-of-YYYYY.parquet``."""
        self._flush()
        self._close_shard()
        final = []
        for i, part in enumerate(self.parts):
            name = self.folder / f"train-{i:05d}-of-{len(self.parts):05d}.parquet"
            part.rename(name)
            final.append(name)
        return final


def build(
    run: Path | str,
    *,
    teacher: str,
    out: Path | str,
    parallel: list[str] | None = None,
    card: str | None = None,
    license: str | None = None,
    teacher_license: str | None = None,
    pretty_name: str | None = None,
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
    max_shard_rows: int | None = None,
    threshold: float | None = None,
    force: bool = False,
    allow_empty: bool = False,
    progress: bool = True,
    quality: dict[str, Any] | None = None,
) -> BuildResult:
    """Write the release folder of ``teacher``'s verified answers in ``run`` to ``out``.

    ``parallel`` lists teachers whose datasets must hold the same queries: only queries
    every one of them (and ``teacher``) passed are kept. ``threshold`` defaults to the
    teacher's frozen threshold, else the paper's 0.9. A release without rows is an
    ``EmptyReleaseError``, raised before anything is written, unless ``allow_empty``.
    ``quality`` is a ``quality:`` section to freeze into run.yaml (else the run's own, else
    the structure filter alone; see ``hubtools.quality.filters``).
    """
    from hubtools.release.card import TEMPLATES, CardOptions, write_card

    started = time.monotonic()
    opened = Run.open(run)
    out = Path(out)
    others = [t for t in (parallel or []) if t != teacher]
    if card is not None and card not in TEMPLATES:
        raise UsageError(f"unknown card template {card!r}; use one of: {', '.join(TEMPLATES)}")
    if max_shard_bytes < 1024 or (max_shard_rows is not None and max_shard_rows < 1):
        raise UsageError("--max-shard-bytes must be >= 1024 and --max-shard-rows >= 1")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a folder for the release")
    if out.exists() and any(out.iterdir()) and not force:
        raise UsageError(f"{out} exists and is not empty; pick a new --out or pass --force")
    if not opened.shard_count():
        raise RunStoreError(f"{opened.path} has no attempts yet; run generate or import first")
    opened.check_teachers([teacher, *others])
    config = QualityConfig.from_section(
        quality if quality is not None else opened.config.get(QUALITY)
    )
    if quality is not None and QUALITY in opened.config:  # a changed one is refused at once
        opened._check_frozen({QUALITY: quality})
    section = opened.config.get(f"teacher:{teacher}") or {}
    threshold = threshold if threshold is not None else section.get("threshold", PASS_THRESHOLD)

    staging = out.resolve().parent / f".{out.name}.build-{os.getpid()}"
    kinds = "build|old" if out.exists() else "build"  # an .old- is the release if out is gone
    sweep(staging.parent, rf"\.{re.escape(out.name)}\.(?:{kinds})-(?P<pid>\d+)")
    store = opened.merge_shards()
    previous_pool = _use_returning_memory_pool()
    try:
        counts = store.counts(threshold)
        if not allow_empty:  # before anything is written
            _check_not_empty(store, counts, opened.path, [teacher, *others], threshold)
        check_scored(store.path, [teacher, *others], threshold, config, opened.path)
        if quality is not None:  # frozen once every check passed
            opened = Run.create(opened.path, {QUALITY: quality})
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        index = QueryIndex(opened, staging / ".queries.sqlite")
        filters = ReleaseFilters(config, store, [teacher, *others], threshold, staging, progress)
        removed = RemovedWriter(opened.path, teacher) if filters.active else None
        view = SftView(
            staging,
            lambda folder: _ShardWriter(folder, max_shard_bytes, max_shard_rows, sft_schema()),
            *PromptCounter.for_run(opened.config),
        )
        try:
            stats, writers, sources, model, scoring = _write_rows(
                store, index, teacher=teacher, others=others, threshold=threshold,
                section=section, staging=staging, max_bytes=max_shard_bytes,
                max_rows=max_shard_rows, progress=progress, total=counts[teacher].passed,
                filters=filters, removed=removed, view=view,
            )  # fmt: skip
            funnel = _funnel(opened, store.path, index, teacher, others, threshold, stats)
            removed_path = removed.close() if removed is not None else None
            removed = None
            funnel.scoring = scoring
            funnel.quality = filters.summary(
                str(removed_path.relative_to(opened.path)) if removed_path else None
            )
        finally:
            index.close()
            if removed is not None:
                removed.abort()
        (staging / ".queries.sqlite").unlink(missing_ok=True)
        files = {name: w.close() for name, w in writers.items()}
        sft = view.close()
        rows = {name: stats[name].rows for name in files}
        rows = {ALL: sum(rows.values()), **rows}
        dropped = sum(funnel.quality.get("removed_rows", {}).values())
        if not rows[ALL] and not allow_empty and dropped:
            raise EmptyReleaseError(
                f"nothing to release: the quality filters removed all {plural(dropped, 'row')} "
                f"(see {opened.path / funnel.quality['removed_file']}); pass --allow-empty to "
                "build it anyway"
            )
        if not rows[ALL] and not allow_empty:  # passes whose queries the run does not hold
            raise EmptyReleaseError(
                f"nothing to release: the queries of teacher {teacher!r}'s passed answers are "
                f"not in {opened.path}'s query set; pass --allow-empty to build it anyway"
            )
        options = CardOptions(
            template=card,
            license=license,
            teacher_license=teacher_license,
            pretty_name=pretty_name,
            model=model,
        )
        compared = list(parallel) if parallel and teacher in parallel else [teacher, *others]
        excluded = _removed_query_ids(opened.path, funnel.quality.get("removed_file"))
        figures = _teacher_figures(opened, compared, threshold, staging, excluded, progress)
        write_card(
            staging, opened, teacher, others, files, stats, funnel, threshold, options, sources,
            figures=figures, sft=sft,
        )  # fmt: skip
        _move_into_place(staging, out)
    finally:
        store.close()
        pa.set_memory_pool(previous_pool)
        shutil.rmtree(staging, ignore_errors=True)
    written = sorted(p for p in out.rglob("*") if p.is_file())
    return BuildResult(
        out=str(out),
        teacher=teacher,
        parallel=others,
        rows=rows,
        files=[str(p.relative_to(out)) for p in written],
        bytes=sum(p.stat().st_size for p in written),
        seconds=time.monotonic() - started,
        funnel=funnel.to_dict(),
        sft=sft.get("rows", {}),
    )


def _check_not_empty(
    store: AttemptStore,
    counts: dict[str, TeacherCounts],
    run: Path,
    teachers: list[str],
    threshold: float,
) -> None:
    """``EmptyReleaseError`` when no row would be kept, with the counts that say why."""
    teacher, *others = teachers
    mine = counts[teacher]
    if not mine.passed:
        verdicts = store.verdict_counts().get(teacher, 0)
        hint = f"; run `hubtools verify {run}` first" if not verdicts else ""
        raise EmptyReleaseError(
            f"nothing to release: teacher {teacher!r} has no passed answers in {run} "
            f"({plural(mine.attempts, 'attempt')}, {plural(verdicts, 'verdict')}, "
            f"0 >= threshold {threshold:g}){hint}; pass --allow-empty to build it anyway"
        )
    if others and not store.passed_in_common(teachers, threshold):
        per = ", ".join(f"{t} {counts[t].passed:,}" for t in teachers)
        raise EmptyReleaseError(
            f"nothing to release: no query passed by every --parallel teacher (queries "
            f"passed: {per}; 0 in common); pass --allow-empty to build it anyway"
        )


def _write_rows(
    store: AttemptStore,
    index: QueryIndex,
    *,
    teacher: str,
    others: list[str],
    threshold: float,
    section: dict[str, Any],
    staging: Path,
    max_bytes: int,
    max_rows: int,
    progress: bool,
    total: int,
    filters: ReleaseFilters,
    removed: RemovedWriter | None,
    view: SftView,
) -> tuple[dict[str, CategoryStats], dict[str, _ShardWriter], set[str], str | None, dict]:
    """Stream the passed rows through the quality filters into per-category shards:
    (stats, writers, sources, model, scoring: where the released ppl and tokens came from)."""
    system = section.get("system_prompt") or ""
    writers: dict[str, _ShardWriter] = {}
    stats: dict[str, CategoryStats] = {}
    sources: set[str] = set()
    models: Counter[str] = Counter()
    scorers: Counter[tuple[str, str]] = Counter()  # (scorer, backend) of the released ppl
    token_sources: Counter[str] = Counter()
    bar = tqdm(total=total, unit="row", desc=f"build {teacher}", disable=not progress)
    passed = with_queries(passed_in_all(store, [teacher, *others], threshold), index)
    for query, by_teacher, scores in _with_scores(store, passed):
        attempt, verdict = by_teacher[teacher]
        model = attempt.model or section.get("model") or teacher
        score = scores.get((attempt.query_id, teacher, attempt.attempt))
        ppls = {
            t: row_ppl(a, scores.get((a.query_id, t, a.attempt)))
            for t, (a, _) in by_teacher.items()
        }
        row = release_row(query, attempt, verdict, system=system, model_name=model, score=score)
        found = filters.reasons(query, by_teacher, ppls) if filters.active else []
        bar.update()
        if found:
            if removed is not None:
                removed.add(row, query, attempt, found)
            continue
        models[model] += 1
        if score is not None and score.ppl is not None:
            scorers[(score.scorer, score.backend)] += 1
        elif ppls[teacher] is not None:
            scorers[("imported", "")] += 1
        tokens = attempt.completion_tokens
        if tokens is not None:
            token_sources["teacher"] += 1
        elif score is not None and score.total_tokens is not None:
            tokens = score.total_tokens
            token_sources[score.token_source] += 1
        category = query.category.value
        if len(sources) < MAX_SOURCES:
            sources.add(query.source)
        writer = writers.get(category)
        if writer is None:
            folder = staging / "data" / category
            writer = writers[category] = _ShardWriter(folder, max_bytes, max_rows)
            stats[category] = CategoryStats()
        final = row["conversations"][-1]
        size = sum(len(t["value"]) for t in row["conversations"]) + len(row["system"])
        writer.add(row, 2 * size)  # think/answer_content repeat the final turn's text
        stats[category].add(tokens, len(final["value"]), final["info"]["ppl"])
        view.add(row, category, query.query_id, score)
    bar.close()
    order = [c.value for c in Category if c.value in writers]
    model = models.most_common(1)[0][0] if models else None
    scoring = {
        "ppl": [{"scorer": s, "backend": b, "rows": n} for (s, b), n in scorers.most_common()],
        "tokens": dict(token_sources.most_common()),
    }
    return {c: stats[c] for c in order}, {c: writers[c] for c in order}, sources, model, scoring


def _with_scores(store: AttemptStore, passed):  # noqa: ANN001, ANN202
    """``(query, by_teacher, scores)``: each page's stored scores looked up in one query."""
    page: list = []
    for item in passed:
        page.append(item)
        if len(page) >= 500:
            scores = page_scores(store, page)
            yield from ((q, by, scores) for q, by in page)
            page = []
    if page:
        scores = page_scores(store, page)
        yield from ((q, by, scores) for q, by in page)


def _funnel(
    run: Run,
    store_path: Path,
    index: QueryIndex,
    teacher: str,
    others: list[str],
    threshold: float,
    stats: dict[str, CategoryStats],
) -> Funnel:
    queries_in, filters = read_funnel_file(run.path)
    order = {c.value: i for i, c in enumerate(Category)}
    queries = dict(sorted(index.category_counts().items(), key=lambda kv: order.get(kv[0], 99)))
    per = teacher_funnel(store_path, index.path, teacher, threshold, queries)
    return Funnel(
        queries_in=queries_in,
        filters=filters,
        queries=queries,
        attempted=per["attempted"],
        attempts=per["attempts"],
        passed=per["passed"],
        kept={c: s.rows for c, s in stats.items()},
        verifiers=per["verifiers"],
    )


def _removed_query_ids(run_path: Path, removed_file: str | None) -> frozenset[str]:
    """The queries this build's quality filters removed (its figures leave them out)."""
    if not removed_file:
        return frozenset()
    table = pq.read_table(run_path / removed_file, columns=["query_id"])
    return frozenset(table["query_id"].to_pylist())


def _teacher_figures(
    run: Run, teachers: list[str], threshold: float, staging: Path,
    excluded: frozenset[str], progress: bool,
) -> dict[str, Any] | None:  # fmt: skip
    """A parallel release's teacher comparison (``hubtools analyze``) written to ``assets/``.

    Returns what the card shows: the report's markdown with links to ``assets/``, or why
    there are no figures. None for a single-teacher release (nothing to compare).
    """
    if len(teachers) < 2:
        return None
    import json

    from hubtools.analysis import analyze_run
    from hubtools.analysis.collect import MissingTokenCounts
    from hubtools.analysis.report import render

    assets = staging / "assets"
    try:
        analyze_run(
            run.path, teachers, assets, threshold=threshold, exclude=excluded, progress=progress
        )
    except MissingTokenCounts as err:  # the card says how to get the figures
        return {"report": None, "missing": str(err)}
    except EmptyReleaseError:  # --allow-empty: nothing in common, nothing to draw
        return None
    stats = json.loads((assets / "stats.json").read_text(encoding="utf-8"))
    return {"report": render(stats, images="assets/", level=3), "missing": None}


def _move_into_place(staging: Path, out: Path) -> None:
    """Replace ``out`` with the finished folder; the old one is removed only afterwards."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        out.rename(old)
    staging.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
