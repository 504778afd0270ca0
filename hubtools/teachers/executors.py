"""Shards as Ray tasks, for runs larger than one machine.

Each task runs the same `generate_shard` as the local executor, on its own
shard database, so the store never sees two writers; `hubtools build` merges
the shards. The run directory must be on storage every Ray node sees.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from hubtools import aio
from hubtools.errors import HubtoolsError, UsageError
from hubtools.run import Run
from hubtools.teachers.progress import GenerateSummary
from hubtools.teachers.runner import TeacherStats


def _shard_task(run: str, config_path: str, i: int, n: int, wait: bool = False) -> dict:
    import yaml

    from hubtools.teachers.config import GenerateConfig
    from hubtools.teachers.generate import GC_THRESHOLD, generate_shard

    config = GenerateConfig.load(Path(config_path))
    raw = yaml.safe_load(Path(config_path).read_text())
    summary = aio.run(
        generate_shard(Path(run), config, raw.get("verify"), (i, n), False, wait),
        gc_threshold=GC_THRESHOLD,
    )
    return summary.to_dict()


def _summary(data: dict) -> GenerateSummary:
    teachers = []
    for t in data["teachers"]:
        stats = TeacherStats(**{k: v for k, v in t.items() if not k.endswith("by_category")})
        stats.passed_by_category = Counter(t["passed_by_category"])
        stats.done_by_category = Counter(t["done_by_category"])
        teachers.append(stats)
    return GenerateSummary(data["run"], tuple(data["shard"]), data["seconds"], teachers)


def run_on_ray(
    run: Path, config_path: Path, shards: int, *, wait: bool = False
) -> list[GenerateSummary]:
    """Run every shard as a Ray task on a local or existing cluster (RAY_ADDRESS).

    Each task holds its own shard's lock. A shard written by another process is refused
    here, before Ray starts (unless ``wait``: then its task waits for it).
    """
    try:
        import ray
    except ImportError:
        raise UsageError("--executor ray needs Ray: pip install 'hubtools[ray]'") from None
    if shards < 1:
        raise UsageError("--shards must be >= 1")
    if not wait:
        opened = Run.open(run)
        for i in range(shards):
            with opened.shard_lock((i, shards), "generate"):
                pass  # free now; the task takes it for good
    ray.init(address=os.environ.get("RAY_ADDRESS") or None, ignore_reinit_error=True,
             log_to_driver=False, include_dashboard=False)  # fmt: skip
    task = ray.remote(_shard_task)
    refs = [task.remote(str(Path(run).resolve()), str(Path(config_path).resolve()), i, shards,
                        wait) for i in range(shards)]  # fmt: skip
    try:
        return [_summary(d) for d in ray.get(refs)]
    except ray.exceptions.RayTaskError as err:  # a task's own error, e.g. a busy shard
        if isinstance(cause := getattr(err, "cause", None), HubtoolsError):
            raise cause from None
        raise
