"""`hubtools eval`: every problem sampled k times through the teachers' client, each verified.

An eval is one run per benchmark under ``OUT/runs/NAME``: the problems are its queries,
the evaluated model its one teacher, each sample an attempt 0..k-1 made by
``TeacherRunner`` in its sampling mode (``GenerateConfig.sample_all``: all k samples,
passed or not, in flight together). So kill -9 and the same command resume without
re-sending a stored sample, and a larger k sends only the samples not stored. The
benchmarks share one endpoint limit (AIMD), one verification pool and one event loop.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hubtools import aio
from hubtools.errors import HubtoolsError, UsageError
from hubtools.eval import results as results_file
from hubtools.eval.settings import BenchmarkSettings, EvalSettings
from hubtools.run import Run

TEACHER = "model"  # the evaluated model's name in each benchmark's run
_FROZEN = ("model", "dataset", "split", "temperature", "top_p", "max_new_tokens",
           "system_prompt", "suffix")  # fmt: skip


@dataclass(slots=True)
class EvalResult:
    out: Path
    results: dict[str, Any]
    seconds: float
    stopped: list[str] = field(default_factory=list)  # why sampling stopped early, if it did

    @property
    def complete(self) -> bool:
        return not self.stopped and all(b["complete"] for b in self.results["benchmarks"].values())

    def to_dict(self) -> dict[str, Any]:
        return self.results

    def __str__(self) -> str:
        lines = [results_file.markdown(self.results).split("\n\n", 2)[2].rstrip()]
        lines.append(f"written to {self.out}/results.json, results.md, problems/ "
                     f"in {self.seconds:.1f}s")  # fmt: skip
        for name, b in self.results["benchmarks"].items():
            if not b["complete"]:
                want = b["problems"] * b["samples_per_problem"]
                lines.append(f"{name}: {b['samples']:,} of {want:,} samples so far: "
                             "run the same command again to finish")  # fmt: skip
        lines += [f"STOPPED: {why}" for why in self.stopped]
        return "\n".join(lines)


def _run_path(out: Path, name: str) -> Path:
    return out / "runs" / name


def _frozen(settings: EvalSettings, bench: BenchmarkSettings, loaded) -> dict[str, Any]:
    return {"eval": {
        "benchmark": bench.name, "model": settings.model, "dataset": loaded.dataset,
        "revision": loaded.revision, "split": loaded.split, **bench.sampling(),
    }}  # fmt: skip


def _recorded(settings: EvalSettings, bench: BenchmarkSettings) -> str | None:
    """The revision an earlier eval in ``--out`` read, after checking it sampled the same way."""
    path = _run_path(settings.out, bench.name)
    if not (path / "run.yaml").is_file():
        return None
    before = Run.open(path).config.get("eval") or {}
    now = {"model": settings.model, **bench.sampling()}
    changed = [k for k in _FROZEN if k in now and before.get(k) != now[k]]
    if changed:
        what = ", ".join(f"{k} {before.get(k)!r} -> {now[k]!r}" for k in changed)
        raise UsageError(
            f"{settings.out} holds an eval of {bench.name} made with other settings ({what}); "
            "give another --out (only --samples and --limit may change between runs)"
        )
    return before.get("revision")


def evaluate(settings: EvalSettings, *, progress: bool = True, wait: bool = False) -> EvalResult:
    """Load the benchmarks, sample and verify what is not stored, write the results.

    One writer per ``--out``: a second eval of it is refused (``RunBusyError``), or with
    ``wait`` waits for the first to finish."""
    from hubtools.endpoints import endpoint_key
    from hubtools.eval.benchmarks import load

    endpoint_key(settings.endpoint, settings.api_key_env)  # a key variable that is not set
    start = time.monotonic()
    check_endpoint(settings)
    revisions = {b.name: _recorded(settings, b) for b in settings.benchmarks}
    loaded = {
        b.name: load(b.name, revision=revisions[b.name], suffix=b.suffix, limit=settings.limit)
        for b in settings.benchmarks
    }
    runs = {}
    for bench in settings.benchmarks:
        frozen = _frozen(settings, bench, loaded[bench.name])
        path = _run_path(settings.out, bench.name)
        runs[bench.name] = Run.create(path, frozen, queries=loaded[bench.name].queries)
    from hubtools.teachers.generate import GC_THRESHOLD

    sizes = {name: len(got.queries) for name, got in loaded.items()}
    try:
        stopped = aio.run(_sample(settings, runs, sizes, progress, wait), gc_threshold=GC_THRESHOLD)
    except KeyboardInterrupt:  # Ctrl-C: the results of what is stored, then exit 130
        results, problems = collect(settings, loaded, runs)
        results_file.write(settings.out, results, problems)
        raise
    results, problems = collect(settings, loaded, runs)
    results_file.write(settings.out, results, problems)
    return EvalResult(settings.out, results, time.monotonic() - start, stopped)


def check_endpoint(settings: EvalSettings) -> None:
    """Refuse an endpoint nothing listens on before any work (the client would retry it
    for ``down_after_s``); a slow or erroring one is the run's business."""
    import httpx2

    url = settings.endpoint.rstrip("/") + "/v1/models"
    try:
        httpx2.get(url, timeout=10)
    except httpx2.ConnectError as err:
        raise HubtoolsError(
            f"cannot connect to --endpoint {settings.public_endpoint()} ({err}); "
            "is the model server running?"
        ) from None
    except httpx2.HTTPError:
        pass


def _configs(settings: EvalSettings, bench: BenchmarkSettings):
    from hubtools.teachers.config import GenerateConfig, Sampling, TeacherConfig

    teacher = TeacherConfig(
        name=TEACHER, endpoint=settings.endpoint, model=settings.model,
        api_key_env=settings.api_key_env, max_concurrency=settings.max_concurrency,
        request_timeout_s=settings.request_timeout_s,
    )  # fmt: skip
    sampling = Sampling(bench.temperature, bench.top_p, bench.max_new_tokens)
    config = GenerateConfig(
        teachers=[teacher], sampling=sampling, system_prompt=bench.system_prompt,
        max_attempts=bench.samples, threshold=results_file.PASS_SCORE, sample_all=True,
        down_after_s=settings.down_after_s,
    )  # fmt: skip
    return teacher, config


async def _sample(
    settings: EvalSettings, runs: dict[str, Run], sizes, progress, wait: bool
) -> list[str]:
    """Every missing sample of every benchmark, then every stored one's missing verdict."""
    from hubtools.eval.livecodebench import ALL_TESTS
    from hubtools.eval.progress import EvalProgress
    from hubtools.teachers.generate import VerifyBatcher
    from hubtools.teachers.limiter import AdaptiveLimiter
    from hubtools.teachers.runner import TeacherRunner
    from hubtools.teachers.writer import StoreWriter
    from hubtools.verify.base import SandboxConfig, VerifyConfig
    from hubtools.verify.pool import VerifyPool

    ks = {b.name: b.samples for b in settings.benchmarks}
    totals = {name: sizes[name] * k for name, k in ks.items()}
    bars = EvalProgress(runs, ks, totals, TEACHER, enabled=progress)
    limiter = AdaptiveLimiter(settings.max_concurrency)  # one endpoint: one limit
    async with AsyncExitStack() as stack:
        for run in runs.values():
            lock = run.shard_lock((0, 1), "eval", wait=wait)
            await lock.acquire_async()
            stack.callback(lock.release)
        config = VerifyConfig(code=SandboxConfig(max_tests=ALL_TESTS))  # LiveCodeBench: every case
        pool = await stack.enter_async_context(VerifyPool(config))
        batcher = VerifyBatcher(pool)

        async def verify(query, text):
            score = await batcher.verify(query, text)
            return pool.verifier(query.category).name, score

        runners = []
        for bench in settings.benchmarks:
            teacher, config = _configs(settings, bench)
            run = runs[bench.name]
            writer = StoreWriter(run, (0, 1))
            await writer.start()
            stack.push_async_callback(writer.close)
            runner = TeacherRunner(
                teacher, config, run, (0, 1), writer, verify, on_progress=bars.for_(bench.name)
            )
            runner.limiter = limiter
            runners.append(runner)
        try:
            stats = await asyncio.gather(*(r.distil() for r in runners))
        finally:
            bars.close()
    return [
        f"{b.name}: {s.down}" for b, s in zip(settings.benchmarks, stats, strict=True) if s.down
    ]


def collect(settings: EvalSettings, loaded, runs: dict[str, Run]):
    """results.json's content and the per-problem lines, from the runs' stores."""
    from hubtools import __version__

    benchmarks, problems = {}, {}
    for bench in settings.benchmarks:
        got = loaded[bench.name]
        order = [(q.query_id, q.meta["problem_id"]) for q in got.queries]
        with runs[bench.name].store() as store:
            summary, lines = results_file.summarize(
                order, store.iter_samples(TEACHER, below=bench.samples), bench.samples
            )
        benchmarks[bench.name] = {
            "dataset": got.dataset, "revision": got.revision, "split": got.split,
            **summary, "settings": bench.sampling(),
        }  # fmt: skip
        problems[bench.name] = lines
    results = {
        "model": settings.model,
        "endpoint": settings.public_endpoint(),
        "hubtools_version": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "settings": settings.to_dict(),
        "benchmarks": benchmarks,
    }
    return results, problems
