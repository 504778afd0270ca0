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


class AdaptiveLimiter:
    def __init__(self, limit: int, *, minimum: int = 1, decrease: float = 0.7, cooldown_s=1.0):
        self.maximum = max(minimum, limit)
        self.limit = self.maximum
        self.minimum, self.decrease, self.cooldown_s = minimum, decrease, cooldown_s
        self.in_flight = 0
        self._successes = 0
        self._last_cut = 0.0
        self._cond = asyncio.Condition()

    async def __aenter__(self) -> AdaptiveLimiter:
        async with self._cond:
            await self._cond.wait_for(lambda: self.in_flight < self.limit)
            self.in_flight += 1
        return self

    async def __aexit__(self, *exc: object) -> None:
        async with self._cond:
            self.in_flight -= 1
            self._cond.notify(1)  # one slot freed: wake one waiter, not all of them

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
        async def notify() -> None:
            async with self._cond:
                self._cond.notify(1)

        asyncio.get_running_loop().create_task(notify())
