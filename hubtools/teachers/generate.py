"""`hubtools generate`: every teacher, every query of a shard, until verified.

Teachers run concurrently on one event loop and share the verification pool
and the store writer; each has its own endpoint client and concurrency limit,
so a slow or dead endpoint never holds the others back.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from hubtools import aio
from hubtools.checks import parse_shard
from hubtools.errors import UsageError
from hubtools.run import Run
from hubtools.teachers.config import GenerateConfig
from hubtools.teachers.progress import GenerateSummary, Progress
from hubtools.teachers.runner import TeacherRunner
from hubtools.teachers.writer import StoreWriter

# The collector's first threshold while generating (CPython's default is 700): see
# hubtools.aio. 10,000 took generate from 0.93 to 0.63 ms of CPU per answer at 5,000 in
# flight; larger values gained nothing more.
GC_THRESHOLD = 10_000


class VerifyBatcher:
    """Answers to verify in worker processes go to the pool together, not one by one.

    A round trip to the process pool per answer (pickling, pipes, two helper threads and
    a wake-up of the event loop) cost more client CPU than the request that produced the
    answer (bench/teachers_client.md). Answers that arrive within `interval_s` of each
    other (or `max_batch` of them) go as one `score_batch`, split evenly over the workers.
    Network-bound verifiers (judges) are not batched: a slow judge call must not hold
    back the answers batched with it. If a batch fails, its answers are verified one by
    one, so a failure stays with the answer that caused it.
    """

    def __init__(self, pool, *, interval_s: float = 0.1, max_batch: int = 256):
        self.pool, self.interval_s, self.max_batch = pool, interval_s, max_batch
        self._items: list[tuple[Any, str, asyncio.Future]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task] = set()

    async def verify(self, query, text: str):
        if self.pool.runs_async(query):
            return await self.pool.verify_async(query, text)
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._items.append((query, text, future))
        if len(self._items) >= self.max_batch:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(self.interval_s, self._flush)
        return await future

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        items, self._items = self._items, []
        if items:
            task = asyncio.get_running_loop().create_task(self._score(items))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _score(self, items: list[tuple[Any, str, asyncio.Future]]) -> None:
        chunk = -(-len(items) // self.pool.workers)
        try:
            scores = await self.pool.score_batch([(q, t) for q, t, _ in items], chunk_size=chunk)
        except Exception:
            await asyncio.gather(*(self._one(*item) for item in items))
            return
        for (_, _, future), score in zip(items, scores, strict=True):
            if not future.done():
                future.set_result(score)

    async def _one(self, query, text: str, future: asyncio.Future) -> None:
        try:
            score = await self.pool.verify_async(query, text)
        except Exception as err:
            if not future.done():
                future.set_exception(err)
        else:
            if not future.done():
                future.set_result(score)


def frozen_sections(config: GenerateConfig, raw: dict[str, Any]) -> dict[str, Any]:
    """What run.yaml freezes: everything that shapes the data, not where endpoints live.

    One section per teacher, so teachers can be added to a run later, but a teacher's
    model, sampling or prompts never change under it. `verify` is frozen too.
    """
    sections: dict[str, Any] = {}
    for t in config.teachers:
        sampling = config.sampling_for(t)
        sections[f"teacher:{t.name}"] = {
            "model": t.model, "protocol": t.protocol, "chat_template": t.chat_template,
            "sampling": {k: getattr(sampling, k) for k in sampling.__slots__},
            "system_prompt": config.system_prompt, "max_attempts": config.max_attempts,
            "threshold": config.threshold,
        }  # fmt: skip
    sections["verify"] = raw.get("verify") or {}
    return sections


async def generate_shard(
    run_path: Path,
    config: GenerateConfig,
    verify_config: dict[str, Any] | None = None,
    shard: tuple[int, int] = (0, 1),
    progress: bool = True,
    wait: bool = False,
) -> GenerateSummary:
    """One shard, holding its lock: a second writer is refused (``RunBusyError``) or waits."""
    run = Run.open(run_path)
    lock = run.shard_lock(shard, "generate", wait=wait)
    await lock.acquire_async()
    try:
        return await _generate_locked(run, config, verify_config, shard, progress)
    finally:
        lock.release()


async def _generate_locked(
    run: Run,
    config: GenerateConfig,
    verify_config: dict[str, Any] | None,
    shard: tuple[int, int],
    progress: bool,
) -> GenerateSummary:
    from hubtools.verify.base import VerifyConfig
    from hubtools.verify.pool import VerifyPool

    start = time.monotonic()
    bars = Progress([t.name for t in config.teachers], enabled=progress)
    writer = StoreWriter(run, shard)
    await writer.start()
    async with VerifyPool(VerifyConfig.from_dict(verify_config)) as pool:
        batcher = VerifyBatcher(pool)

        async def verify(query, text):
            score = await batcher.verify(query, text)
            return pool.verifier(query.category).name, score

        runners = [
            TeacherRunner(t, config, run, shard, writer, verify, on_progress=bars)
            for t in config.teachers
        ]
        try:
            stats = await asyncio.gather(*(r.distil() for r in runners))
        finally:
            await writer.close()
            bars.close()
    return GenerateSummary(str(run.path), shard, time.monotonic() - start, list(stats))


def generate(
    run: Path,
    config_path: Path,
    *,
    shard: str | None = None,
    executor: str = "local",
    shards: int | None = None,
    progress: bool = True,
    wait: bool = False,
) -> list[GenerateSummary]:
    """Distil every query of the run (or of one shard) from every configured teacher.

    Each shard is written by one process at a time: another ``generate`` (or ``verify``,
    ``import``) on it makes this one fail at once with ``RunBusyError``, or, with
    ``wait``, wait for it to finish.
    """
    import yaml

    config = GenerateConfig.load(config_path)
    raw = yaml.safe_load(Path(config_path).read_text())
    Run.create(run, frozen_sections(config, raw))  # refuses a changed config, says what changed
    if executor == "ray":
        from hubtools.teachers.executors import run_on_ray

        return run_on_ray(run, config_path, shards or 1, wait=wait)
    if executor != "local":
        raise UsageError(f"--executor must be 'local' or 'ray', got {executor!r}")
    if shards is not None:
        raise UsageError("--shards is for --executor ray; run one shard here with --shard i/N")
    selected = parse_shard(shard) if shard else (0, 1)
    summary = aio.run(
        generate_shard(run, config, raw.get("verify"), selected, progress, wait),
        gc_threshold=GC_THRESHOLD,
    )
    return [summary]
