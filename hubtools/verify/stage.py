"""``hubtools verify``: score stored attempts of a run, or a file of answers made elsewhere.

Run mode reads the run's attempts without a verdict (errors excluded) and the queries
they answer (only those are held in memory), scores them in batches through a
``VerifyPool`` and commits each batch's verdicts in one transaction, so a killed stage
resumes where it stopped and a second run skips what is verified. ``force`` verifies
verified attempts again, each new verdict replacing the old one in the transaction that
writes it (``AttemptStore.replace_verdicts``): nothing is deleted first, so a killed
``--force`` leaves every attempt with its old or its new verdict. A verdict the run
cannot recompute is kept: a score made elsewhere (its verifier is none of the run's),
or a judge's verdict when the run has no judge. Everything a run needs (its verifiers,
the judge, the code sandbox) is checked before the first answer is scored. Verdicts
whose judge never answered are not stored (see ``judge.py``): re-running asks again.

File mode reads JSONL where each line is a query record, as for ``hubtools queries add``,
plus the ``answer`` to verify, and writes each line back with ``score``, ``verifier`` and
``details`` added. Every line is read and checked, and the output's folder tried, before
the first is scored: a bad line is an ``InputFileError`` naming it. The output appears
only once every line has been scored.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from hubtools.errors import InputFileError, UsageError
from hubtools.plural import plural
from hubtools.recordfile import query_from_record
from hubtools.records import PASS_THRESHOLD, Attempt, Category, Query
from hubtools.run import RUN_FILE, AttemptStore, Run
from hubtools.run.lock import sweep_beside
from hubtools.verify.base import Score, VerifyConfig
from hubtools.verify.pool import VerifyPool

RESULT_FIELDS = ("score", "verifier", "details")
BATCH = 1024
NO_JUDGE = "no judge configured (run.yaml verify.judge)"


@dataclass(slots=True)
class VerifyResult:
    """What a verify call did; ``not_stored`` are judge failures left for the next run.

    ``replaced``: earlier verdicts overwritten (``--force``); ``kept_imported`` (per
    verifier name) and ``kept_no_judge`` (per category): verdicts ``--force`` kept because
    the run cannot recompute them.
    """

    verified: int = 0
    passed: int = 0
    failed: int = 0
    errors: int = 0
    not_stored: int = 0
    replaced: int = 0
    kept_imported: dict[str, int] = field(default_factory=dict)
    kept_no_judge: dict[str, int] = field(default_factory=dict)
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
            f"verified {plural(self.verified, 'answer')}: {self.passed:,} passed "
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
        if self.replaced:
            text += f"; replaced {plural(self.replaced, 'earlier verdict')}"
        if self.kept_imported:
            names = ", ".join(f"{name} {n:,}" for name, n in sorted(self.kept_imported.items()))
            count = sum(self.kept_imported.values())
            text += f"; kept {plural(count, 'imported score')} ({names})"
        if self.kept_no_judge:
            kinds = ", ".join(f"{n:,} {name}" for name, n in self.kept_no_judge.items())
            word = "verdict" if sum(self.kept_no_judge.values()) == 1 else "verdicts"
            text += f"; kept {kinds} {word}: {NO_JUDGE}"
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
        if force or teacher is not None or shard != (0, 1):
            raise UsageError("--force, --teacher and --shard are for a RUN, not --input")
        output = _check_output(Path(output))
        return asyncio.run(
            _verify_file(Path(input), output, config or VerifyConfig(), workers, progress)
        )
    if config is not None:
        raise UsageError(
            "a run verifies with the verify: section of its run.yaml; config= is for --input"
        )
    opened = Run.open(run)
    opened.check_teachers([teacher] if teacher else [])
    if "verify" not in opened.config:  # freeze the defaults, as the first stage to use them
        opened = Run.create(opened.path, {"verify": {}})
    config = VerifyConfig.from_dict(opened.config["verify"])
    with opened.shard_lock(shard, "verify", wait=wait):
        return asyncio.run(_verify_run(opened, shard, teacher, force, config, workers, progress))


# -- run mode ------------------------------------------------------------------------------


def _needs_judge(query: Query) -> bool:
    """Whether this query's verdict comes from the LLM judge when one is configured."""
    from hubtools.verify.science import reference_kind

    if query.category in (Category.CHAT, Category.GENERAL):
        return True
    return (
        query.category == Category.SCIENCE
        and query.reference is not None
        and reference_kind(query.reference) == "free"
    )


def _kind(query: Query) -> str:
    return "science (free-form)" if query.category == Category.SCIENCE else query.category.value


def _run_verifier_names() -> set[str]:
    """The verifier names a run records: a verdict by any other came from elsewhere."""
    from hubtools.verify.base import verifier_for
    from hubtools.verify.judge import JudgeVerifier

    judged = (Category.CHAT, Category.GENERAL)
    names = {verifier_for(c, VerifyConfig()).name for c in Category if c not in judged}
    return names | {JudgeVerifier.name}


@dataclass(slots=True)
class _Plan:
    """What a run-mode verify will do with each attempt, decided before any work."""

    queries: dict[str, Query]
    names: set[str]
    judge: bool
    to_score: int = 0
    categories: set[Category] = field(default_factory=set)
    unjudged: Counter[str] = field(default_factory=Counter)  # no verdict, no judge to ask

    def decide(self, query: Query | None, by: str | None) -> str:
        """``score``, ``missing``, ``imported``, ``no judge`` (kept) or ``unjudged``."""
        if query is None:
            return "missing"
        if by is not None and by not in self.names:
            return "imported"
        if not self.judge and _needs_judge(query):
            if by is not None:
                return "no judge"
            if query.category != Category.SCIENCE:  # free-form science falls back to a match
                return "unjudged"
        return "score"

    def tally(self, query: Query | None, by: str | None, n: int, result: VerifyResult) -> None:
        decision = self.decide(query, by)
        if decision == "score":
            self.to_score += n
            self.categories.add(query.category)
        elif decision == "missing":
            result.missing_queries += n
        elif decision == "imported":
            result.kept_imported[by] = result.kept_imported.get(by, 0) + n
        elif decision == "no judge":
            result.kept_no_judge[_kind(query)] = result.kept_no_judge.get(_kind(query), 0) + n
        else:
            self.unjudged[query.category.value] += n


def _plan(
    run: Run, store: AttemptStore, sharded: tuple[int, int] | None, teacher: str | None,
    force: bool, config: VerifyConfig, result: VerifyResult,
) -> _Plan:  # fmt: skip
    """Read what there is to verify; the counts of what is kept go into ``result``."""
    summary = store.verifiable_summary(teacher, verified=force)
    needed = {query_id for query_id, _, _ in summary}
    queries = {q.query_id: q for q in run.iter_queries(shard=sharded) if q.query_id in needed}
    plan = _Plan(queries, _run_verifier_names() if force else set(), config.judge is not None)
    for query_id, by, n in summary:
        plan.tally(queries.get(query_id), by, n, result)
    if plan.unjudged:
        n, kinds = sum(plan.unjudged.values()), " and ".join(plan.unjudged)
        raise UsageError(
            f"{run.path}: {plural(n, f'{kinds} answer')} without a verdict "
            f"{'needs' if n == 1 else 'need'} an LLM judge and this run has none; add one to "
            f"the verify: section of {run.path / RUN_FILE} (judge: {{endpoint: URL, model: NAME}})"
        )
    return plan


def _check_verifiers(pool: VerifyPool, categories: set[Category]) -> None:
    """Build each verifier the work needs, and try the code sandbox, before any scoring."""
    for category in sorted(categories, key=lambda c: c.value):
        verifier = pool.verifier(category)  # a bad config or judge URL raises here
        sandbox = getattr(verifier, "sandbox", None)
        if sandbox is not None:
            _ = sandbox.sandboxed  # raises SandboxUnavailable without bubblewrap (or opt-in)


async def _verify_run(
    run: Run, shard: tuple[int, int], teacher: str | None, force: bool, config: VerifyConfig,
    workers: int | None, progress: bool,
) -> VerifyResult:  # fmt: skip
    result = VerifyResult()
    count = run.shard_count()
    if count is None:
        return result  # no attempts stored yet: nothing to verify (and no shard layout to fix)
    with run.store(shard) as store:
        sharded = shard if count > 1 else None
        plan = _plan(run, store, sharded, teacher, force, config, result)
        async with VerifyPool(config, workers=workers) as pool:
            _check_verifiers(pool, plan.categories)
            write = store.replace_verdicts if force else store.add_verdicts
            bar = tqdm(total=plan.to_score, unit="answer", desc="verify", disable=not progress)
            batch: list[tuple[Attempt, str | None]] = []
            for attempt, by in store.iter_verifiable(teacher, verified=force):
                if plan.decide(plan.queries.get(attempt.query_id), by) != "score":
                    continue
                batch.append((attempt, by))
                if len(batch) >= BATCH:
                    await _verify_batch(pool, write, plan.queries, batch, result, bar)
                    batch = []
            if batch:
                await _verify_batch(pool, write, plan.queries, batch, result, bar)
            bar.close()
    return result


async def _verify_batch(pool, write, queries, attempts, result, bar) -> None:  # noqa: ANN001
    """Score a batch and commit its verdicts in one transaction (``write``)."""
    items = [
        (queries[a.query_id], a.answer if a.answer is not None else a.text) for a, _ in attempts
    ]
    scores = await pool.score_batch(items)
    verdicts = []
    replaced = 0
    for (attempt, by), (query, _), score in zip(attempts, items, scores, strict=True):
        if score.details.get("retryable"):
            result.not_stored += 1  # an earlier verdict, if any, stays
            continue
        name = pool.verifier(query.category).name
        verdicts.append(score.verdict(attempt.query_id, attempt.teacher, attempt.attempt, name))
        result.add(name, score)
        replaced += by is not None
    write(verdicts)
    result.replaced += replaced
    bar.update(len(attempts))


# -- file mode -----------------------------------------------------------------------------


def _check_output(output: Path) -> Path:
    """Refuse an output the scored lines could not be written to, before any scoring."""
    if output.is_dir():
        raise UsageError(f"--output {output} is a directory; give a file name")
    folder = output.parent
    if not folder.exists():
        raise UsageError(f"--output {output}: the folder {folder} does not exist; create it first")
    if not folder.is_dir():
        raise UsageError(f"--output {output}: {folder} is not a folder")
    if output.exists() and not os.access(output, os.W_OK):
        raise UsageError(f"--output {output} is not writable")
    probe = _staging(output)
    try:
        probe.open("w").close()
    except OSError as err:
        raise UsageError(f"--output {output}: cannot write in {folder} ({err.strerror})") from None
    probe.unlink(missing_ok=True)
    return output


def _staging(output: Path) -> Path:
    return output.with_name(f".{output.name}.{os.getpid()}.tmp")


async def _verify_file(
    path: Path, output: Path, config: VerifyConfig, workers: int | None, progress: bool
) -> VerifyResult:
    result = VerifyResult(output=str(output))
    sweep_beside(output)  # what a verify --input killed midway left
    staging = _staging(output)
    try:
        async with VerifyPool(config, workers=workers) as pool:
            categories: set[Category] = set()
            total = 0
            for _, _, query, _ in _read_answers(path, pool):  # every line checked first
                categories.add(query.category)
                total += 1
            _check_verifiers(pool, categories)
            bar = tqdm(total=total, unit="answer", desc="verify", disable=not progress)
            with open(staging, "w", encoding="utf-8") as out:
                for batch in _batches(_read_answers(path, pool), BATCH):
                    scores = await pool.score_batch([(q, a) for _, _, q, a in batch])
                    for (_, record, query, _), score in zip(batch, scores, strict=True):
                        name = pool.verifier(query.category).name
                        record.update(score=score.value, verifier=name, details=score.details)
                        out.write(json.dumps(record, ensure_ascii=False) + "\n")
                        result.add(name, score)
                    bar.update(len(batch))
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
