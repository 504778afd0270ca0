"""hubtools.aio: the loop and collector settings the generate stage runs with."""

from __future__ import annotations

import asyncio
import gc

import pytest
import uvloop

from hubtools import aio
from hubtools.errors import UsageError


async def _seen() -> tuple[type, tuple[int, int, int]]:
    return type(asyncio.get_running_loop()), gc.get_threshold()


def test_runs_on_uvloop_with_the_threshold_and_restores_it(monkeypatch):
    monkeypatch.delenv(aio.LOOP_ENV, raising=False)
    before = gc.get_threshold()
    loop_type, inside = aio.run(_seen(), gc_threshold=12_345)
    assert issubclass(loop_type, uvloop.Loop)
    assert inside == (12_345, *before[1:])
    assert gc.get_threshold() == before


def test_threshold_is_restored_when_the_stage_fails():
    before = gc.get_threshold()

    async def fail():
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        aio.run(fail(), gc_threshold=50_000)
    assert gc.get_threshold() == before


def test_asyncio_loop_on_request(monkeypatch):
    monkeypatch.setenv(aio.LOOP_ENV, "asyncio")
    loop_type, inside = aio.run(_seen())
    assert not issubclass(loop_type, uvloop.Loop)
    assert inside == gc.get_threshold()


def test_bad_loop_name_is_a_usage_error(monkeypatch):
    monkeypatch.setenv(aio.LOOP_ENV, "trio")
    with pytest.raises(UsageError, match="HUBTOOLS_EVENT_LOOP must be"):
        aio.loop_factory()
    stage = _seen()
    with pytest.raises(UsageError, match="HUBTOOLS_EVENT_LOOP must be"):
        aio.run(stage, gc_threshold=12_345)
    assert stage.cr_frame is None  # closed, not left to warn "never awaited"
