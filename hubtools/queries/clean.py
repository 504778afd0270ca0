"""``hubtools queries clean``: filters -> exact dedup -> near dedup -> decontamination.

Reads the pool (``RUN/pulled``, filled by ``queries pull``) and admits the queries that
survive into the run's query set, the one the teachers read. Nothing is deleted: every
removed query is kept in ``RUN/clean/removed.parquet`` with its reason and, for
duplicates and contamination, what it matched; ``RUN/funnel.json`` counts every removal
per step and per source (the funnel the dataset card shows).

Two halves. The scan (``scan.py``) computes each query's keys in shardable, resumable
units (``--shard i/N`` scans one shard, e.g. on another machine). The decision needs
every query at once: it reads back only the columns it needs, one LSH band at a time,
and the signatures of candidate pairs only. Every output is written atomically and the
decisions are a pure function of the scan, so a run killed anywhere and started again
ends with exactly what an uninterrupted run writes.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from hubtools.errors import RunStoreError, UsageError
from hubtools.plural import plural
from hubtools.queries.decisions import (
    CONTAMINATION,
    EXACT,
    NEAR,
    decide,
    read_scan,
)
from hubtools.queries.decontaminate import Benchmark, BenchmarkSpec, load_benchmark
from hubtools.queries.outputs import add_kept, write_removed
from hubtools.queries.pull import POOL_DIR, pool_counts, read_provenance
from hubtools.queries.scan import METHODS, SCAN_DIR, Scanner, ScanUnit, scan_units
from hubtools.queries.settings import SECTION, CleanSettings
from hubtools.run import RUN_FILE, Run
from hubtools.run.lock import sweep

FUNNEL_FILE = "funnel.json"
REMOVED_FILE = Path("clean") / "removed.parquet"
BENCHMARKS_DIR = Path("clean") / "benchmarks"
UNUSABLE, PULL_DUPLICATES = "unusable rows", "duplicate rows"


@dataclass(slots=True)
class FunnelStep:
    """One line of the funnel: queries a step removed, in all and per source."""

    name: str
    removed: int = 0
    by_source: dict[str, int] = field(default_factory=dict)
    by_benchmark: dict[str, int] | None = None


@dataclass(slots=True)
class ScanResult:
    """What ``clean --shard i/N`` did: it scans its shard; ``clean`` alone finishes."""

    run: str
    shard: tuple[int, int]
    units: int
    scanned: int
    queries: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        i, n = self.shard
        return (
            f"shard {i}/{n}: scanned {self.scanned} of {plural(self.units, 'unit')} "
            f"({plural(self.queries, 'query', 'queries')}); when every shard is scanned: "
            f"hubtools queries clean --run {self.run}"
        )


@dataclass(slots=True)
class CleanResult:
    """The funnel of a clean: queries in, removed per step, queries kept."""

    run: str
    queries_in: int
    queries_out: int
    added: int
    steps: list[FunnelStep]
    sources: list[dict[str, Any]]
    benchmarks: list[dict[str, Any]]
    settings: dict[str, Any]
    seconds: float = 0.0

    def funnel(self) -> dict[str, Any]:
        """``funnel.json``: the README's format (``queries_in``, ``filters``) plus detail."""
        return {
            "queries_in": self.queries_in,
            "filters": [{k: v for k, v in asdict(s).items() if v is not None} for s in self.steps],
            "queries_out": self.queries_out,
            "sources": self.sources,
            "benchmarks": self.benchmarks,
            "settings": self.settings,
        }

    def to_dict(self) -> dict[str, Any]:
        return {**self.funnel(), "run": self.run, "added": self.added, "seconds": self.seconds}

    def __str__(self) -> str:
        lines = [f"queries in {self.queries_in:>14,}"]
        for step in self.steps:
            detail = ""
            if step.by_benchmark:
                detail = "  (" + ", ".join(f"{k} {v:,}" for k, v in step.by_benchmark.items()) + ")"
            lines.append(f"  {step.name:<20}{-step.removed:>10,}{detail}")
        lines.append(f"queries kept {self.queries_out:>12,}  ({self.added:,} new in the run)")
        lines.append(f"removed rows: {Path(self.run) / REMOVED_FILE} (hubtools queries export)")
        return "\n".join(lines)


def clean(
    run: Path | str,
    *,
    benchmarks: tuple[BenchmarkSpec, ...] | list[BenchmarkSpec] | None = None,
    embeddings: bool | None = None,
    embedding_model: str | None = None,
    embedding_threshold: float | None = None,
    shard: tuple[int, int] | None = None,
    workers: int | None = None,
    progress: bool = True,
    wait: bool = False,
) -> CleanResult | ScanResult:
    """Clean ``run``'s pool into its query set (see the module doc).

    Options left None come from the run's frozen ``clean:`` section, else the defaults;
    a value different from the frozen one is refused. The scan shards it writes are
    locked (``--shard i/N``: that one; else all, and the decision): another clean on
    them makes this fail at once (``RunBusyError``), or wait (``wait``).
    """
    started = time.monotonic()
    opened = Run.open(run)
    if not (opened.path / POOL_DIR / RUN_FILE).exists():
        raise UsageError(f"{opened.path} has no pulled queries; run `hubtools queries pull` first")
    pool = Run.open(opened.path / POOL_DIR)
    base = CleanSettings.from_dict(opened.config[SECTION]) if SECTION in opened.config else None
    settings = (base or CleanSettings()).with_options(
        benchmarks=tuple(benchmarks) if benchmarks is not None else None,
        embeddings=embeddings,
        embedding_model=embedding_model,
        embedding_threshold=embedding_threshold,
    )
    if base is not None and base != settings:  # refused before anything is loaded
        _refuse(opened.path, base, settings)
    count = _shard_count(opened.path, shard)
    shards = [shard] if shard else [(i, count) for i in range(count)]
    with ExitStack() as locks:  # the scan shards it writes; all of them to decide
        for i, n in shards:
            what = f"clean shard {i}/{n} of {opened.path}"
            locks.enter_context(opened.lock(f"clean-{i:05d}-of-{n:05d}", what, "queries clean",
                                            wait=wait))  # fmt: skip
        _sweep(opened.path, shard)
        parts = sorted((pool.path / "queries").glob("part-*.parquet"))
        units = [u for s in shards for u in scan_units(parts, s)]
        pending = [u for u in units if not u.output(opened.path).exists()]
        # Benchmarks and the embedding model load before the settings freeze: a failure
        # leaves the run free to be cleaned with other choices.
        loaded = _benchmarks(opened.path, settings, progress)
        inline = Scanner(settings, loaded) if pending and settings.embeddings else None
        if base is None:
            opened = Run.create(opened.path, {SECTION: settings.to_dict()})
        queries = _scan(opened.path, pending, settings, loaded, workers, progress, inline)
        if shard is not None:
            return ScanResult(str(opened.path), shard, len(units), len(pending), queries)
        return _finish(opened, pool, parts, units, settings, loaded, progress, started)


def _sweep(run: Path, shard: tuple[int, int] | None) -> None:
    """Remove the temp files a killed clean left, as far as the locks held cover them:
    one shard's scan files, or (every shard locked) everything clean writes."""
    if shard is None:
        for folder in [run / "clean", *(p for p in (run / "clean").rglob("*") if p.is_dir())]:
            sweep(folder, r"\..+\.(?P<pid>\d+)\.tmp", locked=True)
        sweep(run, rf"\.{FUNNEL_FILE}\.(?P<pid>\d+)\.tmp", locked=True)
        return
    i, n = shard
    for folder in (run / SCAN_DIR).glob("*"):
        sweep(folder, rf"\.rg-\d+-shard-{i:05d}-of-{n:05d}\.parquet\.(?P<pid>\d+)\.tmp",
              locked=True)  # fmt: skip


def _refuse(run: Path, frozen: CleanSettings, given: CleanSettings) -> None:
    """A clean whose settings differ from the run's ``clean:`` section (which may list only
    some keys: the defaults fill in the rest)."""
    old, new = frozen.to_dict(), given.to_dict()
    changed = ["benchmarks"] if old["benchmarks"] != new["benchmarks"] else []
    for section in ("filters", "minhash", "decontamination"):
        changed += [f"{section}.{k}" for k in new[section] if old[section][k] != new[section][k]]
    raise RunStoreError(
        f"{run} was cleaned with another config ({', '.join(changed)} differ from its "
        f"run.yaml '{SECTION}:' section); use a new run directory, or the run's settings"
    )


def _shard_count(run: Path, shard: tuple[int, int] | None) -> int:
    """The N the run's scan uses: fixed by its first scanned unit."""
    if shard is not None and not 0 <= shard[0] < shard[1]:
        raise UsageError(f"bad shard {shard[0]}/{shard[1]}: need 0 <= i < N")
    found = {int(p.stem.rsplit("-of-", 1)[1]) for p in (run / SCAN_DIR).glob("*/rg-*.parquet")}
    if len(found) > 1:
        raise RunStoreError(f"{run / SCAN_DIR} mixes shard counts {sorted(found)}")
    if found and shard is not None and shard[1] not in found:
        n = found.pop()
        raise RunStoreError(f"{run} is cleaned in {plural(n, 'shard')}; use --shard i/{n}")
    return found.pop() if found else (shard[1] if shard else 1)


def _benchmarks(run: Path, settings: CleanSettings, progress: bool) -> list[Benchmark]:
    """Every benchmark's problems, as the run first read them: the problems and their
    commit are kept in ``RUN/clean/benchmarks/`` (a commit never changes, and
    LiveCodeBench's files are gigabytes), so later cleans and other shards use the same."""
    loaded = []
    for spec in tqdm(settings.benchmarks, desc="benchmarks", disable=not progress):
        path = run / BENCHMARKS_DIR / f"{spec.name}.json"
        kept = json.loads(path.read_text()) if path.exists() else {}
        if kept.get("spec") == spec.to_dict():
            loaded.append(Benchmark(spec, kept["commit"], kept["problems"]))
            continue
        benchmark = load_benchmark(spec)
        record = {"spec": spec.to_dict(), "commit": benchmark.commit}
        _write_atomic(path, json.dumps({**record, "problems": benchmark.problems}).encode())
        loaded.append(benchmark)
    return loaded


_SCANNER: Scanner | None = None


def _start_worker(settings: dict[str, Any], benchmarks: list[Benchmark]) -> None:
    global _SCANNER
    _SCANNER = Scanner(CleanSettings.from_dict(settings), benchmarks)


def _scan_unit(run: Path, unit: ScanUnit) -> int:
    assert _SCANNER is not None
    return _SCANNER.scan(run, unit)


def _scan(
    run: Path,
    units: list[ScanUnit],
    settings: CleanSettings,
    benchmarks: list[Benchmark],
    workers: int | None,
    progress: bool,
    inline: Scanner | None = None,
) -> int:
    """Scan ``units``: in worker processes, or in this one with ``inline`` (embeddings:
    one model, and torch spreads each batch over the cores itself)."""
    if not units:
        return 0
    workers = max(1, min(workers or min(os.cpu_count() or 1, 4), len(units)))
    bar = tqdm(total=len(units), desc="scan", unit=" units", disable=not progress)
    total = 0
    try:
        if inline is not None or workers == 1:
            scanner = inline or Scanner(settings, benchmarks)
            for unit in units:
                total += scanner.scan(run, unit)
                bar.update()
            return total
        context = multiprocessing.get_context("forkserver")
        with ProcessPoolExecutor(
            workers, mp_context=context, initializer=_start_worker,
            initargs=(settings.to_dict(), benchmarks),
        ) as pool:  # fmt: skip
            for done in pool.map(_scan_unit, [run] * len(units), units, chunksize=1):
                total += done
                bar.update()
        return total
    finally:
        bar.close()


def _finish(
    run: Run,
    pool: Run,
    parts: list[Path],
    units: list[ScanUnit],
    settings: CleanSettings,
    benchmarks: list[Benchmark],
    progress: bool,
    started: float,
) -> CleanResult:
    scan = read_scan(run.path, units)
    decisions = decide(scan, settings, progress)
    matched = np.unique(decisions.match[decisions.match >= 0])
    matched_ids = dict(zip(matched.tolist(), scan.rows_of("query_id", matched), strict=True))
    problems = _problem_index(benchmarks)
    orders = scan.columns["order"]

    def details(positions: np.ndarray) -> Iterator[tuple[str, str | None, str | None]]:
        for pos in positions.tolist():
            name = decisions.names[decisions.reason[pos]]
            score = round(float(decisions.score[pos]), 4)
            if name in (EXACT, NEAR):
                target = matched_ids[int(decisions.match[pos])]
                yield (
                    name,
                    f"duplicate of {target}",
                    json.dumps({"query_id": target, "similarity": score}),
                )
            elif name == CONTAMINATION:
                bench, index, problem = problems[int(scan.columns["contam_item"][pos])]
                method = METHODS[int(scan.columns["contam_method"][pos])]
                yield (
                    name,
                    f"{method} match with {bench.spec.name} problem {index}",
                    json.dumps(
                        {
                            "benchmark": bench.spec.name,
                            "repo": bench.spec.repo,
                            "commit": bench.commit,
                            "index": index,
                            "method": method,
                            "score": score,
                            "problem": problem[:500],
                        },
                        ensure_ascii=False,
                    ),
                )
            else:
                yield name, scan.columns["filter_detail"][pos], None

    write_removed(run.path / REMOVED_FILE, parts, orders, decisions, details, progress)
    added = add_kept(run, parts, orders, decisions, progress)
    result = _result(run, pool, scan, decisions, settings, benchmarks, added)
    result.seconds = round(time.monotonic() - started, 1)
    _write_atomic(run.path / FUNNEL_FILE, json.dumps(result.funnel(), indent=2).encode())
    return result


def _problem_index(benchmarks: list[Benchmark]) -> list[tuple[Benchmark, int, str]]:
    return [(b, i, p) for b in benchmarks for i, p in enumerate(b.problems)]


def _result(run, pool, scan, decisions, settings, benchmarks, added) -> CleanResult:
    provenance = read_provenance(run.path)
    counts = pool_counts(pool)
    steps = []
    if provenance:
        unusable, dupes = FunnelStep(UNUSABLE), FunnelStep(PULL_DUPLICATES)
        for name, entry in provenance.items():
            lost = entry["rows_read"] - entry["unusable"] - counts.get(name, 0)
            unusable.by_source[name] = entry["unusable"]
            dupes.by_source[name] = lost
        for step in (unusable, dupes):
            step.removed = sum(step.by_source.values())
            steps.append(step)
    sources = np.asarray(scan.sources, dtype=object)
    for index, name in enumerate(decisions.names):
        mine = decisions.reason == index
        names, tally = np.unique(scan.columns["source"][mine], return_counts=True)
        step = FunnelStep(
            name, int(mine.sum()), dict(zip(sources[names].tolist(), tally.tolist(), strict=True))
        )
        if name == CONTAMINATION:
            bench_of = np.array([i for i, b in enumerate(benchmarks) for _ in b.problems])
            hits = bench_of[scan.columns["contam_item"][mine]] if mine.any() else np.empty(0, int)
            step.by_benchmark = {
                b.spec.name: int((hits == i).sum()) for i, b in enumerate(benchmarks)
            }
        steps.append(step)
    queries_in = len(scan.columns["order"]) + sum(
        s.removed for s in steps[: 2 if provenance else 0]
    )
    kept = int((decisions.reason < 0).sum())
    sources_out = [
        {"name": name, "repo": e["spec"]["repo"], "config": e["spec"]["config"],
         "split": e["spec"]["split"], "revision": e["spec"]["revision"],
         "commit": e["commit"], "category": e["spec"]["category"], "rows": e["rows_read"]}
        for name, e in provenance.items()
    ]  # fmt: skip
    return CleanResult(
        run=str(run.path),
        queries_in=queries_in,
        queries_out=kept,
        added=added,
        steps=steps,
        sources=sources_out,
        benchmarks=[b.provenance() for b in benchmarks],
        settings=settings.to_dict(),
    )


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(tmp, path)
