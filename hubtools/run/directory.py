"""A run directory: the frozen run.yaml and the query set (see the package docstring)."""

from __future__ import annotations

import fcntl
import functools
import json
import os
import shutil
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from hubtools.errors import NotARunError, RunStoreError, UsageError
from hubtools.plural import plural
from hubtools.records import Category, Query
from hubtools.run._files import (
    _chunks,
    _dumps,
    _json_fields,
    _publish,
    _staged,
    shard_of,
)
from hubtools.run.lock import LOCKS_DIR, Lock, sweep, sweep_beside
from hubtools.run.store import AttemptStore, stored_teachers

if TYPE_CHECKING:
    import pyarrow as pa

RUN_FILE = "run.yaml"
DEFAULT_CONFIG: dict[str, Any] = {}
_PAGE = 1000
_UNSET = object()


@functools.cache
def query_schema() -> pa.Schema:
    """Parquet schema of the query set; free-form fields are JSON text so every part agrees.

    Built on first use, as pyarrow is imported here only by the functions that use it:
    importing it costs ~0.15 s of CPU that light verbs do not pay (bench/startup.md).
    """
    import pyarrow as pa

    return pa.schema(
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


def __getattr__(name: str) -> Any:
    """``QUERY_SCHEMA``, built when first asked for (see ``query_schema``)."""
    if name == "QUERY_SCHEMA":
        return query_schema()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(slots=True)
class AddResult:
    added: int
    duplicates: int

    def __str__(self) -> str:
        added, dupes = plural(self.added, "query", "queries"), plural(self.duplicates, "duplicate")
        return f"added {added}, skipped {dupes}"

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(slots=True)
class Run:
    """A run directory; open one with ``Run.create`` or ``Run.open``."""

    path: Path
    config: dict[str, Any]
    added: AddResult | None = field(default=None, compare=False, repr=False)

    @classmethod
    def create(
        cls,
        path: Path | str,
        config: Mapping[str, Any] = DEFAULT_CONFIG,
        *,
        queries: Iterable[Query] | None = None,
    ) -> Run:
        """Create a run, or open it and freeze the config sections it does not have yet.

        Each top-level section of run.yaml (`teachers`, `sampling`, `verify`, ...) is
        frozen by the first stage that brings it: a later stage may add new sections,
        never change one, so every attempt in a run was made under one config.

        A new run is never seen half made (see ``_make``). ``queries`` are added to the run
        (``added`` holds the count); a new run gets them before it appears, so an input
        that raises midway leaves no run behind.
        """
        path = Path(path)
        try:
            config = yaml.safe_load(yaml.safe_dump(dict(config)))
        except yaml.YAMLError as err:
            raise RunStoreError(f"the run config must be plain YAML data: {err}") from None
        added = None
        sweep_beside(path)
        if not (path / RUN_FILE).is_file():
            added = _make(path, config, queries)
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
        if queries is not None:
            run.added = added if added is not None else run.add_queries(queries)
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
            if not path.exists():
                raise NotARunError(
                    f"{path} does not exist; start a run with `hubtools queries add FILE --run "
                    f"{path}`, or give the run's directory"
                ) from None
            raise NotARunError(
                f"{path} is not a run directory (no {RUN_FILE}); give the run's directory, "
                "or start one with `hubtools queries add FILE --run PATH`"
            ) from None
        except NotADirectoryError:
            raise NotARunError(
                f"{path} is a file, not a run directory; give the directory of the run"
            ) from None
        except IsADirectoryError:
            raise NotARunError(f"{path / RUN_FILE} is a directory; {path} is not a run") from None
        except PermissionError:
            raise RunStoreError(f"cannot read {path / RUN_FILE}: permission denied") from None
        except yaml.YAMLError as err:
            problem = " ".join(str(err).split())  # YAML errors span lines; ours are one
            raise RunStoreError(f"{path / RUN_FILE} is not valid YAML: {problem}") from None
        if config is not None and not isinstance(config, dict):
            raise RunStoreError(f"{path / RUN_FILE} must be a mapping of sections")
        return cls(path, config or {})

    # -- locks (see hubtools.run.lock) -----------------------------------------------------

    def lock(self, name: str, what: str, stage: str, *, wait: bool = False) -> Lock:
        """``RUN/locks/NAME.lock``, to hold while writing ``what``; RunBusyError if held."""
        return Lock(self.path / LOCKS_DIR / f"{name}.lock", what, stage, wait=wait)

    def shard_lock(self, shard: tuple[int, int] = (0, 1), stage: str = "a stage", *,
                   wait: bool = False) -> Lock:  # fmt: skip
        """The one-writer lock of a shard's attempts and verdicts (``(0, 1)``: unsharded).

        Writers (generate, verify, import) hold it; readers (status, build) need none:
        SQLite's WAL gives them a consistent snapshot while a writer commits.
        """
        i, n = shard
        if not 0 <= i < n:
            raise UsageError(f"bad shard {i}/{n}: need 0 <= i < N")
        return self.lock(f"shard-{i:05d}-of-{n:05d}", f"shard {i}/{n} of {self.path}", stage,
                         wait=wait)  # fmt: skip

    @contextmanager
    def shard_locks(self, shards: Iterable[tuple[int, int]], stage: str, *,
                    wait: bool = False) -> Iterator[None]:  # fmt: skip
        """Several shards' locks, always taken in the same order so waiters cannot deadlock."""
        with ExitStack() as stack:
            for shard in sorted(set(shards)):
                stack.enter_context(self.shard_lock(shard, stage, wait=wait))
            yield

    # -- the query set -------------------------------------------------------------------

    def add_queries(self, queries: Iterable[Query]) -> AddResult:
        """Add new queries as one Parquet part, all or nothing; known query_ids are skipped.

        The input is streamed, so if it raises midway nothing is added.
        """
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        QUERY_SCHEMA = query_schema()  # the module constant, built lazily
        with self._queries_lock():
            known = self._query_ids()
            seen: set[str] = set()
            result, tally = AddResult(0, 0), Counter[str]()
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
                                tally[fresh[-1]["category"]] += 1
                        if fresh:
                            writer.write_table(pa.Table.from_pylist(fresh, schema=QUERY_SCHEMA))
                            result.added += len(fresh)
                if result.added:
                    _write_category_counts(dest, tally)  # first: no part without its counts
                    _publish(tmp, dest)
        return result

    def iter_queries(
        self, category: Category | str | None = None, shard: tuple[int, int] | None = None
    ) -> Iterator[Query]:
        """Stream the query set, part by part, optionally one category or one shard of it."""
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        wanted = None if category is None else Category.parse(category).value
        for part in self._parts():
            for batch in pq.ParquetFile(part).iter_batches(batch_size=_PAGE):
                if wanted is not None:
                    batch = batch.filter(pc.equal(batch["category"], wanted))
                for row in batch.to_pylist():
                    if shard is None or shard_of(row["query_id"], shard[1]) == shard[0]:
                        yield Query.from_dict(_json_fields(row, json.loads))

    def count_queries(self) -> int:
        import pyarrow.parquet as pq

        return sum(pq.ParquetFile(part).metadata.num_rows for part in self._parts())

    def categories(self) -> dict[str, int]:
        """Number of queries per category, in the order of ``Category``.

        Read from the counts stored beside each part, so ``hubtools status`` starts without
        pyarrow (~0.15 s of CPU); a part written before those existed is counted.
        """
        counts = dict.fromkeys((c.value for c in Category), 0)
        for part in self._parts():
            for name, n in _category_counts(part).items():
                counts[name] += n
        return {name: n for name, n in counts.items() if n}

    def _parts(self) -> list[Path]:
        return sorted((self.path / "queries").glob("part-*.parquet"))

    def _next_part(self) -> int:
        parts = self._parts()
        return int(parts[-1].stem.removeprefix("part-")) + 1 if parts else 0

    def _query_ids(self) -> pa.Array:
        import pyarrow as pa
        import pyarrow.parquet as pq

        columns = [pq.read_table(p, columns=["query_id"])["query_id"] for p in self._parts()]
        return pa.chunked_array(columns, pa.string()).combine_chunks()

    @contextmanager
    def _queries_lock(self) -> Iterator[None]:
        """One adder at a time, so two adds cannot both take a query or a part number.

        Temp files of a killed adder (only adders write them, under this lock) go here.
        """
        (self.path / "queries").mkdir(exist_ok=True)  # a kill may have left a run without it
        with open(self.path / "queries" / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            sweep(self.path / "queries", r"\.part-\d+\.parquet\.(?P<pid>\d+)\.tmp", locked=True)
            sweep(self.path, rf"\.{RUN_FILE}\.(?P<pid>\d+)\.tmp", locked=True)
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

    def check_teachers(self, names: Iterable[str]) -> None:
        """Each name must have attempts in some shard: a typo is refused with the run's own
        teachers listed, before a stage does any work (verify, score, build, analyze)."""
        names = list(names)
        if not names:
            return
        known = stored_teachers(self.shard_paths())
        for name in names:
            if name not in known:
                has = (
                    f"the run's teachers: {', '.join(sorted(known))}"
                    if known
                    else "no attempts yet"
                )
                raise UsageError(f"teacher {name!r} has no attempts in {self.path} ({has})")

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


def _make(path: Path, config: Any, queries: Iterable[Query] | None) -> AddResult | None:
    """Make a new run so that ``path`` is only ever absent, an empty directory, or a run.

    Everything is built in a sibling ``.NAME.<pid>.tmp/`` (run.yaml, and queries/ with the
    first part) and fsynced. Then the directory appears (empty, which any stage may still
    make a run), run.yaml is linked in (it is a run from now on) and queries/ is renamed
    in: a kill in between leaves a complete run without those queries, and adding them
    again adds them. A directory that is in use is never replaced (it may be someone's
    working directory). A concurrent creator's run.yaml wins; our queries go to its run.
    """
    _check_creatable(path)
    real = path.resolve()
    staging = real.parent / f".{real.name}.{os.getpid()}.tmp"
    try:
        real.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(staging, ignore_errors=True)
        (staging / "queries").mkdir(parents=True)
    except OSError as err:  # e.g. a read-only parent
        raise NotARunError(f"cannot create a run at {path}: {err.strerror or err}") from None
    try:
        with open(staging / RUN_FILE, "w") as file:
            file.write(yaml.safe_dump(config, sort_keys=False))
            file.flush()
            os.fsync(file.fileno())
        staged = Run(staging, config)
        added = None if queries is None else staged.add_queries(queries)
        _fsync_dir(staging)
        real.mkdir(exist_ok=True)
        try:
            os.link(staging / RUN_FILE, real / RUN_FILE)
        except FileExistsError:  # created concurrently: our queries join that run
            winner = Run.open(real)
            winner._check_frozen(config)
            return None if added is None else winner.add_queries(staged.iter_queries())
        try:
            os.rename(staging / "queries", real / "queries")
        except OSError:  # a queries/ that is not empty (a concurrent adder's, or an old one)
            if added is not None:
                Run.open(real).add_queries(staged.iter_queries())
        _fsync_dir(real)
        _fsync_dir(real.parent)
        return added
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _check_creatable(path: Path) -> None:
    """Refuse a file, or a directory holding anything but what a killed creation left.

    An empty ``queries/`` (no part in it) without run.yaml is what versions before the
    atomic creation left when killed; it holds nothing, so the run is made over it.
    """
    if path.exists() and not path.is_dir():
        raise NotARunError(f"{path} is a file, not a run directory; give a directory for the run")
    if not path.is_dir():
        above = next((p for p in path.absolute().parents if p.exists()), None)
        if above is not None and not above.is_dir():
            raise NotARunError(f"cannot create a run at {path}: {above} is a file")
        return
    for entry in path.iterdir():
        leftover = (
            entry.name == "queries" and entry.is_dir() and not any(entry.glob("part-*.parquet"))
        )
        if not leftover:
            raise NotARunError(
                f"{path} exists and is not a run (no {RUN_FILE}); pick a new directory"
            )


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _counts_file(part: Path) -> Path:
    return part.with_name(part.name.removesuffix(".parquet") + ".categories.json")


def _write_category_counts(part: Path, counts: Counter[str]) -> None:
    """Durably store ``part``'s count per category beside it, before the part is published.

    Under the queries lock; a file left for this part number by a killed add is replaced.
    """
    dest = _counts_file(part)
    with _staged(dest) as tmp:
        with open(tmp, "w") as file:
            json.dump(dict(counts), file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, dest)  # the part's _publish then fsyncs the directory


def _category_counts(part: Path) -> dict[str, int]:
    """A part's count per category: its stored counts, else counted from the part itself."""
    try:
        stored = json.loads(_counts_file(part).read_text())
        valid = isinstance(stored, dict) and all(type(n) is int for n in stored.values())
        if valid and stored.keys() <= {c.value for c in Category}:
            return stored
    except (OSError, ValueError):
        pass
    import pyarrow.parquet as pq

    # Dictionary-encoded, as stored; counted in Python, not with pyarrow.compute's
    # value_counts on read_table, which loads pyarrow.dataset and pandas (~0.25 s of CPU).
    counts: Counter[str] = Counter()
    table = pq.ParquetFile(part, read_dictionary=["category"]).read(["category"])
    for chunk in table["category"].chunks:
        names = chunk.dictionary.to_pylist()
        for code, n in Counter(chunk.indices.to_pylist()).items():
            counts[names[code]] += n
    return counts


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
