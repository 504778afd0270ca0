"""``hubtools verify``: score stored attempts of a run, or a file of answers made elsewhere.

Run mode reads the run's attempts without a verdict (errors excluded) and the queries
they answer (only those are held in memory), scores them in batches through a
``VerifyPool`` and commits each batch's verdicts in one transaction, so a killed stage
resumes where it stopped and a second run skips what is verified. ``force`` drops the
existing verdicts (of one teacher, or all) first and verifies again. Verdicts whose
judge never answered are not stored (see ``judge.py``): re-running asks again.

File mode reads JSONL where each line is a query record, as for ``hubtools queries add``,
plus the ``answer`` to verify, and writes each line back with ``score``, ``verifier`` and
``details`` added. The output appears only once every line has been scored: a bad line
is an ``InputFileError`` naming it, and leaves no output.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from hubtools.errors import InputFileError, UsageError
from hubtools.recordfile import query_from_record
from hubtools.records import PASS_THRESHOLD, Attempt, Query
from hubtools.run import Run
from hubtools.verify.base import Score, VerifyConfig
from hubtools.verify.pool import VerifyPool

RESULT_FIELDS = ("score", "verifier", "details")
BATCH = 1024


@dataclass(slots=True)
class VerifyResult:
    """What a verify call did; ``not_stored`` are judge failures left for the next run."""

    verified: int = 0
    passed: int = 0
    failed: int = 0
    errors: int = 0
    not_stored: int = 0
    cleared: int = 0
    missing_queries: int = 0
    by_verifier: dict[str, int] = field(default_factory=dict)
    output: str | None = None

    def add(self, verifier: str, score: Score) -> None:
        self.verified += 1
        self.by_verifier[verifier] = self.by_verifier.get(verifier, 0) + 1
        if score.value >= PASS_THRESHOLD:
            self.passed += 1
        else:
            self.failed += 1
        if "error" in score.details:
            self.errors += 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        text = (
            f"verified {self.verified:,} answers: {self.passed:,} passed "
            f"(score >= {PASS_THRESHOLD:g}), {self.failed:,} failed"
        )
        if self.by_verifier:
            names = sorted(self.by_verifier.items())
            text += " [" + ", ".join(f"{name} {n:,}" for name, n in names) + "]"
        if self.errors:
            text += f"; {self.errors:,} scored 0 because verification failed (see details.error)"
        if self.not_stored:
            text += f"; {self.not_stored:,} judge failures not stored (run again to retry)"
        if self.missing_queries:
            text += f"; {self.missing_queries:,} attempts skipped: their query is not in the run"
        if self.cleared:
            text += f"; replaced {self.cleared:,} earlier verdicts"
        if self.output:
            text += f"; wrote {self.output}"
        return text


def verify(
    run: Path | str | None = None,
    *,
    input: Path | str | None = None,
    output: Path | str | None = None,
    force: bool = False,
    shard: tuple[int, int] = (0, 1),
    teacher: str | None = None,
    config: VerifyConfig | None = None,
    workers: int | None = None,
    progress: bool = True,
    wait: bool = False,
) -> VerifyResult:
    """Verify a run's stored attempts (``run``) or a JSONL file of answers (``input``/``output``).

    A run is verified with the ``verify:`` section of its run.yaml (frozen; defaults are
    frozen on first use); ``config`` (default ``VerifyConfig()``) applies to ``input``.
    ``workers`` sizes the process pool in both modes.
    """
    if (run is None) == (input is None):
        raise UsageError("give either a RUN directory or --input FILE (with --output FILE)")
    if input is not None:
        if output is None:
            raise UsageError("--input needs --output FILE for the scored lines")
        return asyncio.run(
            _verify_file(Path(input), Path(output), config or VerifyConfig(), workers, progress)
        )
    if config is not None:
        raise UsageError(
            "a run verifies with the verify: section of its run.yaml; config= is for --input"
        )
    opened = Run.open(run)
    if "verify" not in opened.config:  # freeze the defaults, as the first stage to use them
        opened = Run.create(opened.path, {"verify": {}})
    config = VerifyConfig.from_dict(opened.config["verify"])
    with opened.shard_lock(shard, "verify", wait=wait):
        return asyncio.run(_verify_run(opened, shard, teacher, force, config, workers, progress))


# -- run mode ------------------------------------------------------------------------------


async def _verify_run(
    run: Run, shard: tuple[int, int], teacher: str | None, force: bool, config: VerifyConfig,
    workers: int | None, progress: bool,
) -> VerifyResult:  # fmt: skip
    result = VerifyResult()
    if run.shard_count() is None:
        return result  # no attempts stored yet: nothing to verify (and no shard layout to fix)
    count = run.shard_count()
    with run.store(shard) as store:
        if force:
            result.cleared = store.clear_verdicts(teacher)
        sharded = shard if (count or 1) > 1 else None
        needed = store.unverified_query_ids(teacher)
        queries = {q.query_id: q for q in run.iter_queries(shard=sharded) if q.query_id in needed}
        total = store.count_unverified(teacher)
        async with VerifyPool(config, workers=workers) as pool:
            bar = tqdm(total=total, unit="answer", desc="verify", disable=not progress)
            batch: list[Attempt] = []
            for attempt in store.iter_unverified(teacher):
                batch.append(attempt)
                if len(batch) >= BATCH:
                    await _verify_batch(pool, store, queries, batch, result, bar)
                    batch = []
            if batch:
                await _verify_batch(pool, store, queries, batch, result, bar)
            bar.close()
    return result


async def _verify_batch(pool, store, queries, attempts, result, bar) -> None:  # noqa: ANN001
    known = [a for a in attempts if a.query_id in queries]
    result.missing_queries += len(attempts) - len(known)
    items = [(queries[a.query_id], a.answer if a.answer is not None else a.text) for a in known]
    scores = await pool.score_batch(items)
    verdicts = []
    for attempt, (query, _), score in zip(known, items, scores, strict=True):
        if score.details.get("retryable"):
            result.not_stored += 1
            continue
        name = pool.verifier(query.category).name
        verdicts.append(score.verdict(attempt.query_id, attempt.teacher, attempt.attempt, name))
        result.add(name, score)
    store.add_verdicts(verdicts)
    bar.update(len(attempts))


# -- file mode -----------------------------------------------------------------------------


async def _verify_file(
    path: Path, output: Path, config: VerifyConfig, workers: int | None, progress: bool
) -> VerifyResult:
    result = VerifyResult(output=str(output))
    staging = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    try:
        async with VerifyPool(config, workers=workers) as pool:
            with open(staging, "w", encoding="utf-8") as out:
                bar = None
                for batch in _batches(_read_answers(path, pool), BATCH):
                    bar = bar or tqdm(unit="answer", desc="verify", disable=not progress)
                    scores = await pool.score_batch([(q, a) for _, _, q, a in batch])
                    for (_, record, query, _), score in zip(batch, scores, strict=True):
                        name = pool.verifier(query.category).name
                        record.update(score=score.value, verifier=name, details=score.details)
                        out.write(json.dumps(record, ensure_ascii=False) + "\n")
                        result.add(name, score)
                    bar.update(len(batch))
                if bar is not None:
                    bar.close()
        os.replace(staging, output)
    finally:
        staging.unlink(missing_ok=True)
    return result


def _batches(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _read_answers(path: Path, pool: VerifyPool) -> Iterator[tuple[int, dict, Query, str]]:
    """``(line, record, query, answer)`` per line; ``InputFileError`` at the first bad one."""
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        lines = opener(path, "rt", encoding="utf-8")
    except OSError as err:
        raise InputFileError(str(path), None, f"cannot read the file ({err.strerror})") from None
    count = 0
    with lines:
        for number, text in enumerate(_lines(path, lines), 1):
            if not text.strip():
                continue
            try:
                record = json.loads(text)
                query, answer = _to_answer(record, path.name)
                pool.verifier(query.category)  # a category this config cannot verify fails here
            except json.JSONDecodeError as err:
                raise InputFileError(
                    str(path), number, f"invalid JSON ({err.msg} at column {err.colno})"
                ) from None
            except (ValueError, UsageError) as err:
                raise InputFileError(str(path), number, str(err)) from None
            count += 1
            yield number, record, query, answer
    if count == 0:
        raise InputFileError(str(path), None, "no answers found; write one JSON object per line")


def _lines(path: Path, lines: Any) -> Iterator[str]:
    try:
        yield from lines
    except UnicodeDecodeError:
        raise InputFileError(str(path), None, "not UTF-8 text; save it as UTF-8") from None
    except (OSError, EOFError) as err:
        raise InputFileError(str(path), None, f"cannot read the file ({err})") from None


def _to_answer(record: Any, default_source: str) -> tuple[Query, str]:
    """The query and answer of one input line (the query fields of ``hubtools queries add``)."""
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    answer = record.get("answer")
    if not isinstance(answer, str):
        raise ValueError("'answer' (the text to verify) must be a string")
    query = query_from_record(
        record, category=None, source=default_source, other_fields=("answer", *RESULT_FIELDS)
    )
    return query, answer
