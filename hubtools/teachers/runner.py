"""Incremental distillation for one teacher: ask, verify, re-ask until it passes.

For each query the teacher gets attempt 0, 1, ... until one scores >= the
threshold or `max_attempts` are used. Each attempt and its verdict go to the
run store through the `StoreWriter`, so a restart sends only what was never
committed. Transport failures are retried inside one attempt (they are not
samples); a dead endpoint stops this teacher only, with a reason.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from hubtools.endpoints import REJECT, RETRY, Failure, backoff_delay, classify
from hubtools.records import Attempt, Query, Verdict
from hubtools.run import Run
from hubtools.teachers.client import Completion, TeacherClient
from hubtools.teachers.config import GenerateConfig, TeacherConfig
from hubtools.teachers.limiter import AdaptiveLimiter
from hubtools.teachers.writer import StoreWriter

QUERY_CHUNK = 2000
VERIFY_TRIES = 3


class EndpointDown(Exception):
    """The endpoint failed for too long (or is misconfigured): stop this teacher."""


@dataclass
class TeacherStats:
    name: str
    queries: int = 0  # queries of the shard this teacher still had to solve
    done: int = 0  # queries finished: passed, attempts exhausted, or rejected
    passed: int = 0
    failed: int = 0
    rejected: int = 0
    unverified: int = 0  # attempts whose verification failed for now (not the answer)
    attempts: int = 0
    retries: int = 0
    in_flight: int = 0
    concurrency: int = 0  # the adaptive limit when last seen
    prompt_tokens: int = 0
    completion_tokens: int = 0
    started: float = field(default_factory=time.monotonic)
    passed_by_category: Counter = field(default_factory=Counter)
    done_by_category: Counter = field(default_factory=Counter)
    down: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in vars(self).items() if k not in ("started", "in_flight")}
        out["passed_by_category"] = dict(self.passed_by_category)
        out["done_by_category"] = dict(self.done_by_category)
        return out


class TeacherRunner:
    def __init__(
        self,
        teacher: TeacherConfig,
        config: GenerateConfig,
        run: Run,
        shard: tuple[int, int],
        writer: StoreWriter,
        verify,  # async (Query, raw text) -> (verifier name, Score)
        on_progress=None,
    ):
        self.teacher, self.config, self.run, self.shard = teacher, config, run, shard
        self.writer, self.verify = writer, verify
        self.client = TeacherClient(teacher, config.sampling_for(teacher), config.system_prompt)
        self.stats = TeacherStats(teacher.name)
        self.on_progress = on_progress or (lambda stats: None)
        self.limiter: AdaptiveLimiter | None = None
        self._last_success = 0.0

    # -- one request, with retries ----------------------------------------------------------
    async def _request(self, query: Query, params: dict[str, Any]) -> Completion | Failure:
        """The completion, or a Failure to record; retries transport trouble meanwhile.

        A request that keeps failing while others succeed is the request's problem: it is
        given up after `max_retries` and recorded. One that fails while nothing succeeds is
        the endpoint's: it waits, up to `down_after_s`, then the teacher stops.
        """
        first_failure = None
        for retry in itertools.count():
            async with self.limiter:
                self.stats.in_flight += 1
                try:
                    completion = await self.client.complete(query, params)
                except Exception as exc:  # classify() re-raises what is not an endpoint failure
                    failure = classify(exc)
                else:
                    self.limiter.on_success()
                    self._last_success = time.monotonic()
                    return completion
                finally:
                    self.stats.in_flight -= 1
            if failure.kind == REJECT:
                return failure
            if failure.kind != RETRY:
                raise EndpointDown(f"{self.teacher.endpoint} answered {failure.message}")
            if failure.overload:
                self.limiter.on_overload()
            now = time.monotonic()
            first_failure = first_failure or now
            if self._last_success > first_failure and retry >= self.config.max_retries:
                return Failure(REJECT, f"gave up after {retry} retries: {failure.message}")
            if now - max(first_failure, self._last_success) > self.config.down_after_s:
                raise EndpointDown(
                    f"{self.teacher.endpoint} failed for {self.config.down_after_s:.0f}s "
                    f"without a success: {failure.message}"
                )
            self.stats.retries += 1
            await asyncio.sleep(backoff_delay(min(retry, 7), failure))
        raise AssertionError("unreachable")

    # -- one query: attempts until it passes ------------------------------------------------
    async def _solve(self, query: Query, attempt: int, pending: Attempt | None = None) -> None:
        passed: bool | None = False
        if pending is not None:  # committed before a crash, never verified
            passed = await self._judge(query, pending)
            attempt = pending.attempt + 1
        while passed is False and attempt < self.config.max_attempts:
            record = await self._ask(query, attempt)
            if record is None:  # rejected (422): asking again gets the same answer
                self._finish(query, "rejected")
                return
            passed = await self._judge(query, record)
            attempt += 1
        self._judged(query, passed)

    async def _sample(self, query: Query, attempt: int, pending: Attempt | None = None) -> None:
        """Eval's sampling mode (``sample_all``): one sample and its verdict, pass or not.

        Stats then count samples, not queries: ``queries`` samples to make, ``done`` made.
        """
        record = pending or await self._ask(query, attempt)
        if record is None:
            self._finish(query, "rejected")
            return
        self._judged(query, await self._judge(query, record))

    async def _ask(self, query: Query, attempt: int) -> Attempt | None:
        """One request for ``attempt``, stored; None if the endpoint rejected it (stored too)."""
        params = self.client.params(query, attempt)
        started = time.time()
        result = await self._request(query, params)
        record = self._attempt(query, attempt, params, started, result)
        self.writer.put(record)
        self.stats.attempts += 1
        if isinstance(result, Failure):
            return None
        self.stats.prompt_tokens += result.prompt_tokens or 0
        self.stats.completion_tokens += result.completion_tokens or 0
        return record

    def _judged(self, query: Query, passed: bool | None) -> None:
        if passed is None:  # left unverified: the next run verifies it and goes on from there
            self.stats.unverified += 1
            self.on_progress(self.stats)
            return
        self._finish(query, "passed" if passed else "failed")

    async def _judge(self, query: Query, attempt: Attempt) -> bool | None:
        """Verify and commit the verdict; None when no verdict could be had.

        A score marked `retryable` (the judge endpoint down, a verification worker lost)
        is not a verdict on the answer: it is tried again, then left out rather than
        stored as a wrong answer.
        """
        for tries in range(VERIFY_TRIES):
            verifier, score = await self.verify(query, attempt.text)
            if not score.details.get("retryable"):
                break
            await asyncio.sleep(2**tries)
        else:
            return None
        details = dict(score.details)
        if attempt.finish_reason == "length":
            details["truncated"] = True
        self.writer.put(Verdict(query_id=query.query_id, teacher=self.teacher.name,
                                attempt=attempt.attempt, verifier=verifier, score=score.value,
                                details=details))  # fmt: skip
        return score.value >= self.config.threshold

    def _attempt(self, query, attempt, params, started, result) -> Attempt:
        common = dict(query_id=query.query_id, teacher=self.teacher.name, attempt=attempt,
                      params=params, started_at=started, finished_at=time.time())  # fmt: skip
        if isinstance(result, Failure):
            return Attempt(**common, error=result.message, model=self.teacher.model)
        return Attempt(
            **common, text=result.text, think=result.think, answer=result.answer,
            finish_reason=result.finish_reason, prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens, latency_s=result.latency_s,
            model=result.model or self.teacher.model,
        )  # fmt: skip

    def _finish(self, query: Query, outcome: str) -> None:
        s = self.stats
        s.concurrency = self.limiter.limit
        s.done += 1
        s.done_by_category[query.category.value] += 1
        if outcome == "passed":
            s.passed += 1
            s.passed_by_category[query.category.value] += 1
        elif outcome == "failed":
            s.failed += 1
        else:
            s.rejected += 1
        self.on_progress(s)

    # -- the whole shard ---------------------------------------------------------------------
    async def distil(self) -> TeacherStats:
        advertised = await self.client.max_concurrent_requests()
        start = min(self.teacher.max_concurrency, advertised or self.teacher.max_concurrency)
        if self.limiter is None:  # eval shares one limiter between its benchmarks' runners
            self.limiter = AdaptiveLimiter(start)
        start = min(start, self.limiter.maximum)
        name, k, threshold = self.teacher.name, self.config.max_attempts, self.config.threshold
        sample_all = self.config.sample_all
        pending = await self.writer.call(lambda store: list(store.iter_unverified(name)))
        resumable: dict[str, list[Attempt]] = {}  # a query's attempts awaiting their verdict
        for attempt in pending:
            resumable.setdefault(attempt.query_id, []).append(attempt)
        # Enough queries in play to fill the endpoint, few enough to bound memory.
        slots = asyncio.Semaphore(start * 2)
        tasks: set[asyncio.Task] = set()
        failure: list[BaseException] = []

        async def solve(query: Query, attempt: int, resumed: Attempt | None) -> None:
            try:
                await (self._sample if sample_all else self._solve)(query, attempt, resumed)
            except EndpointDown as down:
                failure.append(down)
            finally:
                slots.release()

        queries = self.run.iter_queries(shard=self.shard)
        while not failure and (chunk := list(itertools.islice(queries, QUERY_CHUNK))):
            by_id = {q.query_id: q for q in chunk}
            resumed = [a for qid in by_id for a in resumable.get(qid, ())]
            if sample_all:  # every stored sample's verdict, then every sample not stored
                todo = [(a.query_id, a.attempt, a) for a in resumed]
                todo += await self.writer.call(
                    lambda store, ids=list(by_id): [
                        (qid, attempt, None) for qid, attempt in store.missing(name, ids, samples=k)
                    ]
                )
            else:  # a query with an attempt awaiting its verdict resumes from that attempt
                todo = await self.writer.call(
                    lambda store, ids=list(by_id): [
                        (qid, attempt, None)
                        for qid, attempt in store.unfinished(
                            name, ids, max_attempts=k, threshold=threshold
                        )
                    ]
                )
                last = {a.query_id: a for a in sorted(resumed, key=lambda a: a.attempt)}
                todo += [(qid, -1, a) for qid, a in last.items()]
            self.stats.queries += len(todo)
            self.on_progress(self.stats)
            for query_id, attempt, stored in todo:
                await slots.acquire()
                if failure:
                    slots.release()
                    break
                task = asyncio.create_task(solve(by_id[query_id], attempt, stored))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        if failure:
            for task in list(tasks):
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if failure:
            self.stats.down = str(failure[0])
        return self.stats
