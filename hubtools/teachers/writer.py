"""Batched, ordered commits to the run store from the event loop.

SQLite connections belong to one thread, and one fsynced transaction per
batch is what keeps thousands of answers per second durable, so a single
thread owns the store: the event loop hands it attempts and verdicts, and it
commits them in arrival order (an attempt always before its verdict), every
`batch_size` records or `interval_s`, whichever comes first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from hubtools.records import Attempt, Verdict
from hubtools.run import AttemptStore, Run

T = TypeVar("T")


class StoreWriter:
    def __init__(self, run: Run, shard: tuple[int, int], batch_size=512, interval_s=0.1):
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="hubtools-store")
        self._store: AttemptStore | None = None
        self.run, self.shard = run, shard
        self.batch_size, self.interval_s = batch_size, interval_s
        self._queue: list[Attempt | Verdict] = []
        self._waiters: list[asyncio.Future] = []
        self._wake = asyncio.Event()
        self._closed = False
        self._task: asyncio.Task | None = None
        self.committed = 0

    async def call(self, fn: Callable[[AttemptStore], T]) -> T:
        """Run `fn(store)` on the store's thread (reads like `unfinished`)."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, self._open())

    def _open(self) -> AttemptStore:
        if self._store is None:
            self._store = self._thread.submit(self.run.store, self.shard).result()
        return self._store

    async def start(self) -> None:
        await self.call(lambda store: None)  # opens the database on its own thread
        self._task = asyncio.get_running_loop().create_task(self._loop())

    def put(self, record: Attempt | Verdict) -> None:
        self._queue.append(record)
        if len(self._queue) >= self.batch_size:
            self._wake.set()

    async def flush(self) -> None:
        """Wait until everything put so far is committed."""
        if not self._queue:
            return
        done = asyncio.get_running_loop().create_future()
        self._waiters.append(done)
        self._wake.set()
        await done

    async def _loop(self) -> None:
        while not (self._closed and not self._queue):
            try:
                await asyncio.wait_for(self._wake.wait(), self.interval_s)
            except TimeoutError:
                pass
            self._wake.clear()
            batch, self._queue = self._queue, []
            waiters, self._waiters = self._waiters, []
            if batch:
                await asyncio.get_running_loop().run_in_executor(self._thread, self._commit, batch)
                self.committed += len(batch)
            for w in waiters:
                if not w.done():
                    w.set_result(None)

    def _commit(self, batch: list[Any]) -> None:
        store = self._open()
        attempts = [r for r in batch if isinstance(r, Attempt)]
        verdicts = [r for r in batch if isinstance(r, Verdict)]
        if attempts:
            store.add_attempts(attempts)
        if verdicts:
            store.add_verdicts(verdicts)

    async def close(self) -> None:
        self._closed = True
        self._wake.set()
        if self._task is not None:
            await self._task
        if self._store is not None:
            self._thread.submit(self._store.close).result()
        self._thread.shutdown()
