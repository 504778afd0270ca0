"""``hubtools queries pull``: stream the sources of a ``sources.yaml`` into a run's pool.

Pulled queries go to ``RUN/pulled/``, a run directory of its own (the *pool*): the
run's query set, which the teachers read, only gets what ``queries clean`` keeps.

Each source is pinned to the commit its revision resolves to (``HfApi.dataset_info``)
and streamed (``load_dataset(..., streaming=True)``), so a source larger than memory
works. Queries are added in chunks, each one Parquet part (all or nothing), and
``RUN/pulled/sources.json`` records each source's commit and how far it got: a killed
pull resumes where its last chunk ended, and pulling again adds nothing (a finished
source at the same commit is skipped; query_ids already there are never added twice).
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from tqdm.auto import tqdm

from hubtools.errors import DataSourceError, RunStoreError
from hubtools.plural import plural
from hubtools.queries.hubdata import open_spec, resolve_commit
from hubtools.queries.sources import SourceSpec, read_sources
from hubtools.records import Query
from hubtools.run import Run
from hubtools.run.lock import sweep

POOL_DIR = "pulled"
SOURCES_FILE = "sources.json"
_EXAMPLES = 5


@dataclass(slots=True)
class SourcePull:
    """One source's pull: rows read, queries added, duplicates and unusable rows."""

    name: str
    repo: str
    commit: str
    rows_read: int = 0
    added: int = 0
    duplicates: int = 0
    unusable: int = 0
    skipped: bool = False  # pulled completely before, at the same commit


@dataclass(slots=True)
class PullResult:
    run: str
    sources: list[SourcePull] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        width = max([6, *(len(s.name) for s in self.sources)])
        lines = [
            f"{'source':<{width}}  commit    {'rows':>10}{'added':>10}{'dupes':>10}{'unusable':>10}"
        ]
        for s in self.sources:
            note = "  (already pulled)" if s.skipped else ""
            lines.append(
                f"{s.name:<{width}}  {s.commit[:8]}  {s.rows_read:>10,}{s.added:>10,}"
                f"{s.duplicates:>10,}{s.unusable:>10,}{note}"
            )
        lines.append(
            f"pool: {Path(self.run) / POOL_DIR}; next: hubtools queries clean --run {self.run}"
        )
        return "\n".join(lines)


def pool_path(run: Path | str) -> Path:
    return Path(run) / POOL_DIR


def read_provenance(run: Path | str) -> dict[str, dict[str, Any]]:
    """``sources.json`` of a run's pool: per source name, its spec, commit and progress."""
    path = pool_path(run) / SOURCES_FILE
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())["sources"]
    except (ValueError, KeyError) as err:
        raise RunStoreError(f"{path} is damaged ({err}); pull into a new run") from None


def pool_counts(pool: Run) -> dict[str, int]:
    """Queries in the pool per source name."""
    counts: dict[str, int] = {}
    for part in sorted((pool.path / "queries").glob("part-*.parquet")):
        for item in pq.read_table(part, columns=["source"])["source"].value_counts():
            name = item["values"].as_py()
            counts[name] = counts.get(name, 0) + item["counts"].as_py()
    return counts


def pull(
    config: Path | str,
    run: Path | str,
    *,
    progress: bool = True,
    chunk_rows: int = 50_000,
    wait: bool = False,
) -> PullResult:
    """Pull every source of ``config`` (a sources.yaml) into ``run``'s pool.

    One pull per run at a time: another one makes this fail at once (``RunBusyError``),
    or wait (``wait``). The run and its pool are created whole (see ``Run.create``).
    """
    specs = read_sources(config)
    run = Path(run)
    opened = Run.create(run)
    with opened.lock("pull", f"the pool of {run}", "queries pull", wait=wait):
        sweep(pool_path(run), rf"\.{SOURCES_FILE}\.(?P<pid>\d+)\.tmp", locked=True)
        pool = Run.create(pool_path(run))
        state = read_provenance(run)
        pulls = []
        for spec in specs:
            pulls.append(_pull_source(spec, pool, state, progress=progress, chunk_rows=chunk_rows))
    counts = pool_counts(pool)
    for item in pulls:
        entry = state[item.name]
        item.added = counts.get(item.name, 0)
        item.rows_read, item.unusable = entry["rows_read"], entry["unusable"]
        item.duplicates = item.rows_read - item.unusable - item.added
    return PullResult(str(run), pulls)


def _pull_source(
    spec: SourceSpec,
    pool: Run,
    state: dict[str, dict[str, Any]],
    *,
    progress: bool,
    chunk_rows: int,
) -> SourcePull:
    what = f"source {spec.name}"
    commit = resolve_commit(spec.repo, spec.revision, what)
    entry = state.get(spec.name)
    if entry is not None and entry["spec"] != spec.identity():
        raise DataSourceError(
            f"{what} was pulled into this run with another definition; "
            "give the changed source a new 'name', or pull into a new run"
        )
    if entry is not None and entry["commit"] != commit:
        if entry["done"] and spec.revision is None:
            pass  # a finished source whose main moved on: keep what was pulled
        else:
            raise DataSourceError(
                f"{what}: pulled at {entry['commit'][:8]} but {spec.revision or 'main'} is now "
                f"{commit[:8]}; pin 'revision: {entry['commit']}' or pull into a new run"
            )
    if entry is not None and entry["done"]:
        return SourcePull(spec.name, spec.repo, entry["commit"], skipped=True)
    if entry is None:
        entry = state[spec.name] = {
            "spec": spec.identity(),
            "commit": commit,
            "rows_read": 0,
            "unusable": 0,
            "unusable_examples": [],
            "done": False,
        }
    rows = open_spec(spec, commit=commit, what=what)
    adapter = spec.adapter()
    columns = rows.column_names
    if columns and (missing := adapter.columns() - set(columns)):
        raise DataSourceError(
            f"{what}: {spec.repo} has no column {sorted(missing)[0]!r} "
            f"(it has: {', '.join(columns)}); map it under 'fields'"
        )
    start = entry["rows_read"]
    total = _total_rows(rows, spec)
    stream = rows.skip(start) if start else rows
    if spec.limit is not None:
        stream = stream.take(max(spec.limit - start, 0))
    bar = tqdm(total=total, initial=start, desc=spec.name, unit=" rows", disable=not progress)
    try:
        numbered = zip(itertools.count(start), stream, strict=False)
        while chunk := list(itertools.islice(numbered, chunk_rows)):
            queries = list(_queries(chunk, adapter, entry, what))
            if not queries and entry["rows_read"] == 0:
                example = entry["unusable_examples"][0]
                raise DataSourceError(
                    f"{what}: none of the first {plural(len(chunk), 'row')} of {spec.repo} "
                    f"could be used (row {example['row']}: {example['reason']}); check 'fields'"
                )
            pool.add_queries(queries)
            entry["rows_read"] = chunk[-1][0] + 1
            _write_state(pool, state)
            bar.update(len(chunk))
    except DataSourceError:
        raise
    except Exception as err:
        raise DataSourceError(f"{what}: reading {spec.repo} failed ({_short(err)})") from None
    finally:
        bar.close()
    entry.update(done=True, pulled_at=time.time())
    _write_state(pool, state)
    return SourcePull(spec.name, spec.repo, commit)


def _queries(
    chunk: list[tuple[int, dict[str, Any]]], adapter: Any, entry: dict[str, Any], what: str
) -> Iterator[Query]:
    unusable = 0
    for index, row in chunk:
        try:
            yield adapter.to_query(row, index)
        except (ValueError, TypeError) as err:
            unusable += 1
            if len(entry["unusable_examples"]) < _EXAMPLES:
                entry["unusable_examples"].append({"row": index, "reason": _short(err)})
    entry["unusable"] += unusable


def _total_rows(rows: Any, spec: SourceSpec) -> int | None:
    try:
        total = rows.info.splits[spec.split].num_examples
    except (AttributeError, KeyError, TypeError):
        total = None
    if spec.limit is not None:
        return spec.limit if total is None else min(total, spec.limit)
    return total


def _write_state(pool: Run, state: dict[str, dict[str, Any]]) -> None:
    """Replace sources.json atomically (temp file, fsync, rename)."""
    path = pool.path / SOURCES_FILE
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as file:
        json.dump({"sources": state}, file, indent=2, sort_keys=True)
        file.flush()
        os.fsync(file.fileno())
    os.replace(tmp, path)


def _short(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text[:200]
