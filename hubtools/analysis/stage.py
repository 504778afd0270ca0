"""The verb: check everything, collect the numbers, write figures, ``stats.json``, report."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hubtools.errors import EmptyReleaseError, RunStoreError, UsageError
from hubtools.plural import plural
from hubtools.records import PASS_THRESHOLD

STATS, REPORT = "stats.json", "report.md"


@dataclass(slots=True)
class AnalyzeResult:
    out: str
    teachers: list[str]
    instances: int
    responses: int
    files: list[str]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return (
            f"analyzed {', '.join(self.teachers)} over {plural(self.instances, 'query', 'queries')}"
            f" every one passed ({plural(self.responses, 'response')}) in {self.seconds:.1f} s; "
            f"wrote {', '.join(Path(f).name for f in self.files)} to {self.out}"
        )


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a folder for the figures")


def _check_teachers(teachers: list[str]) -> list[str]:
    teachers = [t.strip() for t in teachers if t.strip()]
    if not teachers:
        raise UsageError("--teachers needs at least one teacher name (T1,T2,...)")
    if len(set(teachers)) < len(teachers):
        raise UsageError("--teachers names a teacher twice")
    return teachers


def analyze_run(
    run: Path | str,
    teachers: list[str],
    out: Path | str,
    *,
    threshold: float | None = None,
    tokenizer: str | None = None,
    exclude: frozenset[str] = frozenset(),
    progress: bool = True,
) -> AnalyzeResult:
    """Figures and numbers of ``teachers`` in ``run``, over the queries every one passed.

    ``threshold`` defaults to the first teacher's frozen threshold, else 0.9, as ``build
    --teacher T1 --parallel T1,T2,...`` keeps them. ``exclude``: query ids left out (a
    parallel build's figures describe the rows it released, after its quality filters).
    """
    from tqdm import tqdm

    from hubtools.analysis.collect import (
        TokenCounter,
        check_run_counts,
        collect_run,
        missing_counts_error,
    )
    from hubtools.run import Run

    started, out = time.monotonic(), Path(out)
    teachers = _check_teachers(teachers)
    _check_out(out)
    opened = Run.open(run)
    if not opened.shard_count():
        raise RunStoreError(f"{opened.path} has no attempts yet; run generate or import first")
    opened.check_teachers(teachers)
    if threshold is None:
        section = opened.config.get(f"teacher:{teachers[0]}") or {}
        threshold = section.get("threshold", PASS_THRESHOLD)
    store = opened.merge_shards()
    store_path = store.path
    store.close()
    common, missing = check_run_counts(store_path, teachers, threshold)
    if not common:
        raise EmptyReleaseError(
            f"nothing to analyze: no query in {opened.path} was passed by every one of "
            f"{', '.join(teachers)} (score >= {threshold:g})"
        )
    counter = TokenCounter(tokenizer) if tokenizer else None
    if missing and counter is None:
        raise missing_counts_error(missing, "the queries every teacher passed")
    if missing:
        counter.load()  # a bad --tokenizer fails before the work
    bar = tqdm(total=common * len(teachers), unit="response", desc="analyze",
               disable=not progress)  # fmt: skip
    try:
        collected = collect_run(
            opened.path, store_path, teachers, threshold, counter, bar, exclude=exclude
        )
    finally:
        bar.close()
    return _finish(collected, out, started)


def analyze_releases(
    releases: str,
    out: Path | str,
    *,
    endpoint: str | None = None,
    tokenizer: str | None = None,
    token: str | None = None,
    progress: bool = True,
) -> AnalyzeResult:
    """Figures and numbers of published releases (``ORG/NAME@REV,...``), joined by prompt."""
    from hubtools.analysis.collect import TokenCounter
    from hubtools.analysis.releases import collect_releases, parse_releases

    started, out = time.monotonic(), Path(out)
    specs = parse_releases(releases)
    _check_out(out)
    if endpoint is not None:
        from hubtools.hub.serve import check_url

        check_url(endpoint)
    from hubtools.release.endpoint import prepare

    if not prepare(endpoint):
        raise UsageError(
            f"this process already talks to another Hub than {endpoint}; run "
            "`hubtools analyze --releases ... --endpoint URL` in a new process"
        )
    counter = TokenCounter(tokenizer) if tokenizer else None
    if counter is not None:
        counter.load()
    collected = collect_releases(specs, counter, progress, token)
    return _finish(collected, out, started)


def analyze(
    run: Path | str | None = None,
    *,
    teachers: list[str] | None = None,
    releases: str | None = None,
    out: Path | str,
    **options: Any,
) -> AnalyzeResult:
    """A run with ``teachers``, or ``releases``: exactly one of the two."""
    if (run is None) == (releases is None):
        raise UsageError("give a RUN with --teachers, or --releases ORG/A@REV,ORG/B@REV")
    if releases is not None:
        if teachers:
            raise UsageError("--teachers is for a run; releases are named by --releases")
        return analyze_releases(releases, out, **options)
    if not teachers:
        raise UsageError("--teachers T1,T2,... is required with a RUN")
    options.pop("endpoint", None)
    return analyze_run(run, teachers, out, **options)


def analysis_stats(collected: Any) -> dict[str, Any]:
    from hubtools.analysis.stats import compute

    return compute(collected)


def write_outputs(stats: dict[str, Any], out: Path) -> list[Path]:
    """The four PNGs, ``stats.json`` and ``report.md`` into ``out``, each written whole."""
    from hubtools.analysis.figures import draw_all
    from hubtools.analysis.report import document

    out.mkdir(parents=True, exist_ok=True)
    files = []
    for path in draw_all(stats, out):  # drawn under their names: a PNG is rewritten whole
        files.append(path)
    for name, text in ((STATS, json.dumps(stats, indent=2) + "\n"), (REPORT, document(stats))):
        temp = out / f".{name}.{os.getpid()}.tmp"
        temp.write_text(text, encoding="utf-8")
        temp.replace(out / name)
        files.append(out / name)
    return files


def _finish(collected: Any, out: Path, started: float) -> AnalyzeResult:
    stats = analysis_stats(collected)
    files = write_outputs(stats, out)
    return AnalyzeResult(
        out=str(out),
        teachers=collected.teachers,
        instances=stats["instances"],
        responses=collected.responses(),
        files=[str(f) for f in files],
        seconds=time.monotonic() - started,
    )
