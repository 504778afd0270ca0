"""Where verification runs: CPU-bound checks in worker processes, judges on the event loop.

Math-Verify times out with ``signal.alarm`` (main thread only) and sympy holds the GIL,
so CPU-bound verifiers run in a ``ProcessPoolExecutor`` with one worker per core (or
``VerifyConfig.workers``), fed in chunks so that millions of answers keep every core
busy at a small IPC cost. Verifiers that wait on the network (``averify``: the LLM
judge, free-form science) run concurrently on the caller's event loop instead, bounded
by the judge's ``max_concurrency``.

Workers start from a forkserver that has already imported the verifiers and their
libraries (``_preload``): forking the caller directly would copy its threads' locks
(uvicorn, asyncio, the judge's client) mid-use, and spawning would re-import sympy and
lm-eval for every worker. Like any forkserver or spawn pool, a script that uses it must
guard its entry point with ``if __name__ == "__main__":``.

``VerifyPool.verify_async(query, text)`` never blocks the loop, which is what the
generate stage calls for each finished attempt; ``score_batch`` scores many at once.
Both take the raw response: the final answer (``extract.final_answer``) is taken here,
once, for every verifier.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from hubtools.errors import HubtoolsError
from hubtools.records import Category, Query
from hubtools.verify.base import Score, Verifier, VerifyConfig, verifier_for
from hubtools.verify.extract import final_answer
from hubtools.verify.math import MathThreadError

_PRELOAD = ["hubtools.verify._preload"]
_OWNER_POLL_S = 1.0
_worker_config: VerifyConfig | None = None
_worker_verifiers: dict[Category, Verifier] = {}


def run_verifier(verifier: Verifier, query: Query, text: str) -> Score:
    """Score a raw response with a sync verifier; a failure of one answer becomes its score."""
    answer = final_answer(text)
    if not answer.strip():
        return Score(0.0, {"reason": "no final answer (empty, or cut off inside <think>)"})
    try:
        return verifier.verify(query, answer)
    except (HubtoolsError, MathThreadError):
        raise
    except Exception as err:  # one malformed answer must not stop a million-answer stage
        return Score(0.0, {"error": f"{verifier.name} failed: {type(err).__name__}: {err}"[:500]})


async def arun_verifier(verifier: Verifier, query: Query, text: str) -> Score:
    """``run_verifier`` for network-bound verifiers, on the event loop."""
    answer = final_answer(text)
    if not answer.strip():
        return Score(0.0, {"reason": "no final answer (empty, or cut off inside <think>)"})
    return await verifier.averify(query, answer)


def _init_worker(config: dict[str, Any], owner: int) -> None:
    global _worker_config
    _worker_config = VerifyConfig.from_dict(config)
    _worker_verifiers.clear()
    threading.Thread(target=_exit_with, args=(owner,), name="owner-watch", daemon=True).start()


def _exit_with(owner: int) -> None:
    """End this worker once the pool's owner is gone (killed, not shut down cleanly).

    A worker waits on a queue whose write end it holds itself, and the forkserver lives
    while any worker does, so without this a SIGKILLed stage leaves both running forever.
    """
    while True:
        time.sleep(_OWNER_POLL_S)
        try:
            os.kill(owner, 0)
        except ProcessLookupError:
            os._exit(1)
        except PermissionError:
            pass  # alive, as another user (pid reuse would need the owner to be gone anyway)


def _verify_chunk(items: Sequence[tuple[Query, str]]) -> list[Score]:
    """Runs in a worker: score a chunk with verifiers built once per worker."""
    assert _worker_config is not None, "worker not initialised"
    scores = []
    for query, text in items:
        verifier = _worker_verifiers.get(query.category)
        if verifier is None:
            verifier = _worker_verifiers[query.category] = verifier_for(
                query.category, _worker_config
            )
        scores.append(run_verifier(verifier, query, text))
    return scores


def _pid(_: int) -> int:
    return os.getpid()


def default_workers(config: VerifyConfig) -> int:
    return max(1, config.workers or os.cpu_count() or 1)


class VerifyPool:
    """Worker processes plus the routing between them and the event loop.

    Use as a context manager (``with`` or ``async with``); workers start on first use.
    """

    def __init__(self, config: VerifyConfig | None = None, *, workers: int | None = None):
        self.config = config or VerifyConfig()
        self.workers = workers or default_workers(self.config)
        self._executor: ProcessPoolExecutor | None = None
        self._started = False
        self._starting: asyncio.Future | None = None
        self._lock = threading.Lock()
        self._verifiers: dict[Category, Verifier] = {}

    def verifier(self, category: Category | str) -> Verifier:
        """This process's verifier for a category (it decides sync or async, and runs async)."""
        category = Category.parse(category)
        if category not in self._verifiers:
            self._verifiers[category] = verifier_for(category, self.config)
        return self._verifiers[category]

    def runs_async(self, query: Query) -> bool:
        verifier = self.verifier(query.category)
        hook = getattr(verifier, "is_async_for", None)
        return hook(query) if hook is not None else verifier.is_async

    @property
    def executor(self) -> ProcessPoolExecutor:
        if self._executor is None:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(_PRELOAD)
            self._executor = ProcessPoolExecutor(
                max_workers=self.workers, mp_context=context, initializer=_init_worker,
                initargs=(self.config.to_dict(), os.getpid()),
            )  # fmt: skip
        return self._executor

    def start(self) -> ProcessPoolExecutor:
        """Start every worker now; blocks while the forkserver imports the verifiers."""
        with self._lock:
            executor = self.executor
            if not self._started:
                list(executor.map(_pid, range(self.workers)))  # one task each: spawns them all
                self._started = True
        return executor

    async def _ready(self) -> ProcessPoolExecutor:
        """The started executor, started off the event loop (it takes seconds the first time)."""
        if not self._started:
            loop = asyncio.get_running_loop()
            if self._starting is None or self._starting.get_loop() is not loop:
                self._starting = asyncio.ensure_future(asyncio.to_thread(self.start))
            await asyncio.shield(self._starting)
        return self.executor

    async def _in_worker(self, chunk: list[tuple[Query, str]]) -> list[Score]:
        """Score a chunk in a worker; a pool broken under it (a worker killed, or out of
        memory) is replaced and the chunk tried once more, then left unscored (retryable)."""
        for _ in range(2):
            executor = await self._ready()
            try:
                return await asyncio.get_running_loop().run_in_executor(
                    executor, _verify_chunk, chunk
                )
            except BrokenProcessPool:
                self._replace(executor)
        error = "a verification worker died on this batch (killed, or out of memory)"
        return [Score(0.0, {"error": error, "retryable": True}) for _ in chunk]

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._executor is broken:  # the first of the chunks that saw it break
                broken.shutdown(wait=False, cancel_futures=True)
                self._executor, self._started, self._starting = None, False, None

    async def verify_async(self, query: Query, text: str) -> Score:
        """Score one raw response without blocking the running event loop."""
        if self.runs_async(query):
            return await arun_verifier(self.verifier(query.category), query, text)
        [score] = await self._in_worker([(query, text)])
        return score

    async def score_batch(
        self, items: Sequence[tuple[Query, str]], *, chunk_size: int | None = None
    ) -> list[Score]:
        """Scores for ``items`` in order: sync ones spread over the workers in chunks,
        async ones concurrently on this loop."""
        scores: list[Score | None] = [None] * len(items)
        on_loop = [self.runs_async(query) for query, _ in items]
        sync = [i for i, a in enumerate(on_loop) if not a]
        size = chunk_size or max(1, min(64, -(-len(sync) // (self.workers * 4))))

        async def run_chunk(indices: list[int]) -> None:
            done = await self._in_worker([items[i] for i in indices])
            for i, score in zip(indices, done, strict=True):
                scores[i] = score

        async def run_one(i: int) -> None:
            query, text = items[i]
            scores[i] = await arun_verifier(self.verifier(query.category), query, text)

        tasks = [run_chunk(sync[i : i + size]) for i in range(0, len(sync), size)]
        tasks += [run_one(i) for i, a in enumerate(on_loop) if a]
        await asyncio.gather(*tasks)
        assert all(s is not None for s in scores)
        return scores  # type: ignore[return-value]

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the workers: politely, then by force after `timeout_s`.

        `shutdown(wait=True)` alone can hang forever after a worker was killed (the
        executor's manager thread waits on a sibling that never exits), which would hang
        the whole stage at its very end; so it does not wait, and stragglers are killed.
        """
        executor = self._executor
        if executor is None:
            return
        processes = list((getattr(executor, "_processes", None) or {}).values())
        executor.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + timeout_s
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join(1.0)
        self._executor, self._started, self._starting = None, False, None

    async def aclose(self) -> None:
        try:
            for verifier in self._verifiers.values():
                closer = getattr(verifier, "aclose", None)
                if closer is not None:
                    await closer()
        finally:
            self.close()

    def __enter__(self) -> VerifyPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> VerifyPool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
