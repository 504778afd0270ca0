"""``hubtools import``: teacher outputs generated elsewhere, stored in a run as if generated.

Each record is one answer: the query (``prompt`` or ``messages`` and the query fields of
``hubtools queries add``), the ``output`` text (reasoning in ``<think>`` tags, or in a
separate ``reasoning`` field), and optionally a ``score`` in [0, 1]. Answers with a score
keep it (verifier ``imported``, or the record's ``verifier``); the others are verified
with the run's verifiers through a ``VerifyPool``.

All or nothing: every record is checked before anything is written, and a bad one is an
``InputFileError`` with its line. Idempotent: an answer already stored for the query and
teacher (same text and reasoning) is not stored again; a new answer to a known query
becomes its next attempt.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hubtools.errors import InputFileError, UsageError
from hubtools.plural import plural
from hubtools.reasoning import split_reasoning
from hubtools.recordfile import query_from_record, read_records
from hubtools.records import PASS_THRESHOLD, Attempt, Category, Query, Verdict
from hubtools.run import RUN_FILE, Run, shard_of

ANSWER_FIELDS = (
    "output",
    "reasoning",
    "reasoning_content",
    "score",
    "verifier",
    "model",
    "finish_reason",
    "prompt_tokens",
    "completion_tokens",
    "ppl",
)
IMPORTED = "imported"
_BATCH = 512


@dataclass(slots=True)
class ImportResult:
    file: str
    teacher: str
    records: int = 0
    new_queries: int = 0
    stored: int = 0  # new attempts
    duplicates: int = 0  # answers already in the run
    scored: int = 0  # verdicts from the file's scores
    verified: int = 0  # verdicts from the run's verifiers
    passed: int = 0
    not_stored: int = 0  # judge failures: verdict left for `hubtools verify`
    by_verifier: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        text = (
            f"imported {self.file} as teacher {self.teacher}: {plural(self.records, 'answer')}, "
            f"{self.stored:,} new ({self.duplicates:,} already stored), "
            f"{plural(self.new_queries, 'new query', 'new queries')}; "
            f"{plural(self.scored, 'score')} taken from the file, {self.verified:,} verified; "
            f"{self.passed:,} passed (score >= {PASS_THRESHOLD:g})"
        )
        if self.not_stored:
            text += f"; {plural(self.not_stored, 'judge failure')} left for `hubtools verify`"
        return text


@dataclass(slots=True)
class _Answer:
    line: int
    query: Query
    text: str
    think: str | None
    answer: str | None
    score: float | None
    verifier: str
    model: str
    finish_reason: str
    prompt_tokens: int | None
    completion_tokens: int | None
    ppl: float | None


def import_outputs(
    file: Path | str,
    *,
    run: Path | str,
    teacher: str,
    category: Category | str | None = None,
    source: str | None = None,
    model: str | None = None,
    workers: int | None = None,
    progress: bool = True,
    wait: bool = False,
) -> ImportResult:
    """Store the answers in ``file`` as ``teacher``'s attempts in ``run`` (created if new).

    The shards it writes are locked meanwhile: another writer of one of them makes this
    fail at once (``RunBusyError``) before anything is stored, or wait (``wait``).
    """
    file, run_path = Path(file), Path(run)
    if not teacher or "/" in teacher or teacher != teacher.strip():
        raise UsageError(f"--teacher must be a plain name, got {teacher!r}")
    try:
        default_category = Category.parse(category or Category.GENERAL)
    except ValueError as err:
        raise UsageError(str(err)) from None
    answers = [
        _to_answer(record, line, file, default_category, source or file.name, model or teacher)
        for line, record in read_records(file)
    ]
    if not answers:
        raise InputFileError(str(file), None, "no answers found; write one JSON object per line")
    opened = Run.open(run_path) if (run_path / RUN_FILE).exists() else Run.create(run_path)
    to_verify = [a for a in answers if a.score is None]
    verify_config = None
    if to_verify:
        verify_config = _verify_config(opened, {a.query.category for a in to_verify}, file)
    shards = opened.shard_count() or 1
    mine: dict[int, list[_Answer]] = {}
    for a in answers:
        mine.setdefault(shard_of(a.query.query_id, shards), []).append(a)
    with opened.shard_locks([(i, shards) for i in mine], "import", wait=wait):
        if f"teacher:{teacher}" not in opened.config:
            opened = Run.create(
                opened.path, {f"teacher:{teacher}": {"model": model or teacher, "imported": True}}
            )
        result = ImportResult(file=str(file), teacher=teacher, records=len(answers))
        result.new_queries = opened.add_queries(_distinct_queries(answers)).added
        for index in sorted(mine):
            _store_shard(
                opened, (index, shards), teacher, mine[index], verify_config, workers, result,
                progress,
            )  # fmt: skip
    return result


def _verify_config(run: Run, categories: set[Category], file: Path) -> Any:
    """The run's frozen verify config, checked up front for every category to verify."""
    from hubtools.verify import VerifyConfig, verifier_for

    if "verify" not in run.config:
        run = Run.create(run.path, {"verify": {}})
    config = VerifyConfig.from_dict(run.config["verify"])
    for category in categories:
        try:
            verifier = verifier_for(category, config)
        except UsageError as err:
            raise UsageError(
                f"{file}: answers of category {category.value} have no 'score' and this run "
                f"cannot verify them ({err}); give scores, or a judge in run.yaml's verify:"
            ) from None
        sandbox = getattr(verifier, "sandbox", None)
        if sandbox is not None:
            _ = sandbox.sandboxed  # code answers: no bubblewrap is an error before any write
    return config


def _distinct_queries(answers: list[_Answer]) -> Iterator[Query]:
    seen: set[str] = set()
    for a in answers:
        if a.query.query_id not in seen:
            seen.add(a.query.query_id)
            yield a.query


def _store_shard(
    run: Run,
    shard: tuple[int, int],
    teacher: str,
    answers: list[_Answer],
    verify_config: Any,
    workers: int | None,
    result: ImportResult,
    progress: bool,
) -> None:
    with run.store(shard) as store:
        existing = _existing(store.path, teacher, {a.query.query_id for a in answers})
        attempts: list[Attempt] = []
        pending: list[tuple[_Answer, Attempt]] = []  # attempts that need a verdict
        for a in answers:
            known = existing.setdefault(a.query.query_id, {})
            key = (a.text, a.think)
            if key in known:
                result.duplicates += 1
                number, has_verdict = known[key]
                if not has_verdict:  # stored before, its verdict lost: score it now
                    pending.append((a, _attempt(a, teacher, number)))
                continue
            number = max((n for n, _ in known.values()), default=-1) + 1
            known[key] = (number, True)
            attempt = _attempt(a, teacher, number)
            attempts.append(attempt)
            pending.append((a, attempt))
        result.stored += store.add_attempts(attempts)
        verdicts = [
            Verdict(
                query_id=at.query_id,
                teacher=teacher,
                attempt=at.attempt,
                verifier=a.verifier,
                score=a.score,
                details={"source": "import"},
            )
            for a, at in pending
            if a.score is not None
        ]
        result.scored += len(verdicts)
        to_verify = [(a, at) for a, at in pending if a.score is None]
        if to_verify:
            verdicts += _verify(to_verify, verify_config, workers, result, progress)
        store.add_verdicts(verdicts)
        for v in verdicts:
            result.passed += v.score >= PASS_THRESHOLD
            result.by_verifier[v.verifier] = result.by_verifier.get(v.verifier, 0) + 1


def _existing(path: Path, teacher: str, query_ids: set[str]) -> dict[str, dict]:
    """``query_id -> {(text, think): (attempt, has verdict)}`` of what the store holds."""
    found: dict[str, dict] = {}
    conn = sqlite3.connect(path)
    try:
        ids = sorted(query_ids)
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for qid, number, text, think, verdict in conn.execute(
                "SELECT a.query_id, a.attempt, a.text, a.think, v.score FROM attempts a"
                " LEFT JOIN verdicts v USING (query_id, teacher, attempt)"
                f" WHERE a.teacher = ? AND a.query_id IN ({marks})",
                (teacher, *chunk),
            ):
                found.setdefault(qid, {})[(text, think)] = (number, verdict is not None)
    finally:
        conn.close()
    return found


def _attempt(a: _Answer, teacher: str, number: int) -> Attempt:
    params: dict[str, Any] = {"imported": True}
    if a.ppl is not None:
        params["ppl"] = a.ppl
    return Attempt(
        query_id=a.query.query_id,
        teacher=teacher,
        attempt=number,
        params=params,
        text=a.text,
        think=a.think,
        answer=a.answer,
        finish_reason=a.finish_reason,
        prompt_tokens=a.prompt_tokens,
        completion_tokens=a.completion_tokens,
        model=a.model,
    )


def _verify(
    items: list[tuple[_Answer, Attempt]],
    config: Any,
    workers: int | None,
    result: ImportResult,
    progress: bool,
) -> list[Verdict]:
    from tqdm import tqdm

    from hubtools.verify import VerifyPool

    async def run() -> list[Verdict]:
        verdicts = []
        bar = tqdm(total=len(items), unit="answer", desc="verify", disable=not progress)
        async with VerifyPool(config, workers=workers) as pool:
            for start in range(0, len(items), _BATCH):
                chunk = items[start : start + _BATCH]
                texts = [(a.query, _response(a)) for a, _ in chunk]
                for (a, at), score in zip(chunk, await pool.score_batch(texts), strict=True):
                    if score.details.get("retryable"):
                        result.not_stored += 1
                        continue
                    name = pool.verifier(a.query.category).name
                    verdicts.append(score.verdict(at.query_id, at.teacher, at.attempt, name))
                    result.verified += 1
                bar.update(len(chunk))
        bar.close()
        return verdicts

    return asyncio.run(run())


def _response(a: _Answer) -> str:
    """What the verifier reads: the final answer after the reasoning."""
    if a.think is not None:
        return f"<think>{a.think}</think>{a.answer or ''}"
    return a.answer or ""


# -- reading the file ----------------------------------------------------------------------


def _to_answer(
    record: Any, line: int, file: Path, category: Category, source: str, model: str
) -> _Answer:
    try:
        return _parse(record, category, source, model, line)
    except (ValueError, TypeError) as err:
        raise InputFileError(str(file), line, str(err)) from None


def _parse(record: Any, category: Category, source: str, model: str, line: int) -> _Answer:
    query = query_from_record(record, category=category, source=source, other_fields=ANSWER_FIELDS)
    answer = {k: record[k] for k in ANSWER_FIELDS if record.get(k) is not None}
    output = answer.get("output")
    if not isinstance(output, str):
        raise ValueError("'output' (the teacher's response text) must be a string")
    reasoning = answer.get("reasoning", answer.get("reasoning_content"))
    if reasoning is not None and not isinstance(reasoning, str):
        raise ValueError("'reasoning' must be a string")
    score = answer.get("score")
    if score is not None and not (
        isinstance(score, int | float)
        and not isinstance(score, bool)
        and math.isfinite(score)
        and 0 <= score <= 1
    ):
        raise ValueError(f"'score' must be a number in [0, 1], got {score!r}")
    for key in ("prompt_tokens", "completion_tokens"):
        value = answer.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise ValueError(f"{key!r} must be an integer")
    ppl = answer.get("ppl")
    if ppl is not None and not isinstance(ppl, int | float):
        raise ValueError("'ppl' must be a number")
    split = split_reasoning(output, reasoning)
    return _Answer(
        line=line,
        query=query,
        text=output,
        think=split.think,
        answer=split.answer,
        score=float(score) if score is not None else None,
        verifier=str(answer.get("verifier") or IMPORTED),
        model=str(answer.get("model") or model),
        finish_reason=str(answer.get("finish_reason") or ("length" if split.truncated else "stop")),
        prompt_tokens=answer.get("prompt_tokens"),
        completion_tokens=answer.get("completion_tokens"),
        ppl=float(ppl) if ppl is not None else None,
    )
