"""Adaptive concurrency per endpoint: back off on overload, creep back up after.

Continuous-batching servers are saturated by many requests in flight, but TGI
rejects everything past `--max-concurrent-requests` with 429 and vLLM queues
without bound. The limit starts at the configured maximum (or TGI's advertised
one), shrinks multiplicatively on an overload signal (at most once per
cooldown, so one burst of 429s counts once) and grows additively with
successes, the AIMD rule TCP uses for the same problem.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque


class AdaptiveLimiter:
    def __init__(self, limit: int, *, minimum: int = 1, decrease: float = 0.7, cooldown_s=1.0):
        self.maximum = max(minimum, limit)
        self.limit = self.maximum
        self.minimum, self.decrease, self.cooldown_s = minimum, decrease, cooldown_s
        self.in_flight = 0
        self._successes = 0
        self._last_cut = 0.0
        # Requests waiting for a slot, first come first served. A slot is handed over by
        # counting it in `in_flight` before the waiter wakes; a cancelled waiter is skipped.
        # (An asyncio.Condition costs a lock round trip on every enter and exit: ~25 us of
        # CPU per request with thousands in flight.)
        self._waiters: deque[asyncio.Future] = deque()

    async def __aenter__(self) -> AdaptiveLimiter:
        if self.in_flight < self.limit and not self._waiters:
            self.in_flight += 1
            return self
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._wake()  # the queue may hold only cancelled waiters
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():  # a slot came with the cancellation
                self.in_flight -= 1
                self._wake()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.in_flight -= 1
        self._wake()

    def on_success(self) -> None:
        self._successes += 1
        if self._successes >= self.limit and self.limit < self.maximum:
            self._successes = 0
            self.limit += 1
            self._wake()

    def on_overload(self) -> None:
        now = time.monotonic()
        if now - self._last_cut < self.cooldown_s:
            return
        self._last_cut = now
        self._successes = 0
        self.limit = max(self.minimum, int(self.limit * self.decrease))

    def _wake(self) -> None:
        waiters = self._waiters
        while waiters and self.in_flight < self.limit:
            waiter = waiters.popleft()
            if not waiter.done():
                self.in_flight += 1
                waiter.set_result(None)
