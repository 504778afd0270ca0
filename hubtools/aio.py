"""How hubtools runs a stage with thousands of requests in flight: loop and collector.

The event loop: uvloop where it is installed. The loop's own work (epoll, socket reads
and writes, callbacks) is a measurable share of the client's CPU per request, and
uvloop does it in C (~7% less CPU per answer at 5,000 in flight,
bench/teachers_client.md). `HUBTOOLS_EVENT_LOOP=asyncio` keeps the standard loop.

The garbage collector: CPython starts a young collection each time 700 more container
objects exist than at the last one. A request in flight holds a few dozen coroutines,
futures and dicts, so at 5,000 in flight the count swings past 700 all the time; each
young collection promotes the live requests' objects, and about one in a hundred is a
full collection over the whole heap (~750,000 objects, 0.2-0.4 s each). That was a
quarter of `generate`'s CPU. `gc_threshold` raises the first threshold while the stage
runs: requests' objects die of their reference counts, and cycles are still collected,
only in fewer, larger batches.
"""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from hubtools.errors import UsageError

T = TypeVar("T")
LOOP_ENV = "HUBTOOLS_EVENT_LOOP"


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop factory, or None for asyncio's default loop."""
    choice = os.environ.get(LOOP_ENV, "auto").lower()
    if choice not in ("auto", "uvloop", "asyncio"):
        raise UsageError(f"${LOOP_ENV} must be 'auto', 'uvloop' or 'asyncio', got {choice!r}")
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise UsageError(
                f"${LOOP_ENV}=uvloop but uvloop is not installed: pip install uvloop"
            ) from None
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T], *, gc_threshold: int | None = None) -> T:
    """`asyncio.run` on the loop `loop_factory` picks, with `gc_threshold` (the collector's
    first threshold) while it runs; the previous thresholds come back afterwards."""
    try:
        factory = loop_factory()
    except UsageError:
        main.close()  # never started: no "coroutine was never awaited" warning after the error
        raise
    before = gc.get_threshold()
    if gc_threshold is not None:
        gc.set_threshold(gc_threshold, *before[1:])
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(main)
    finally:
        gc.set_threshold(*before)
