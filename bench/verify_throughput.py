"""Verifications per second for math and instruction following, in one process and in the pool.

Math: every MATH-500 and AIME 2024/2025 reference answer, each with one correct and one
wrong response of reasoning-trace length (about 1.5 kB, the answer boxed at the end).
The peer row is Math-Verify used as its README shows (default, lenient extraction over
the whole response), on the same items. IF: Google's 541 IFEval prompts with their
instructions, one ~170-word response each, checked by lm-eval's IFEval checkers.

Rows: in-process (the verifier called in a loop: one core, no IPC), and ``VerifyPool``
with 1 and with every core's worker, warm (imports done) before the clock starts.

    python bench/verify_throughput.py [--out bench/verify_throughput.md] [--repeat 2] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import subprocess
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from hubtools.records import Query
from hubtools.verify import VerifyConfig, VerifyPool, verifier_for
from hubtools.verify.pool import run_verifier

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "benchmarks"
TRACE = (
    "Let me set up the problem carefully. We know the constraints, so we write the "
    "equations, substitute, and simplify step by step, checking each case. "
) * 10
RESPONSE = (
    "Sleep Like a Sailor\n\nA hammock holds you the way a wave holds a boat: it rocks you "
    "gently and keeps your spine in a soft curve. Many people find they fall asleep faster "
    "because the motion calms the nervous system. It also takes up little space, folds "
    "into a bag and goes wherever you travel.\n\nThere are trade-offs. Sleeping on your "
    "stomach is hard, and a poorly hung hammock can strain your back. Hang it with a "
    "gentle sag, lie on a diagonal, and use a pillow under your knees. Try it for a week "
    "before you decide. Most of all, listen to your body: good sleep is the goal, not the "
    "furniture. If you wake rested, the hammock is doing its job, and you may never go "
    "back to a mattress again.\n\nP.S. Bring a blanket; hammocks get cold underneath."
)


def _jsonl(name: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / name).read_text().splitlines() if line.strip()]


def math_items() -> list[tuple[Query, str]]:
    rows = _jsonl("math500.jsonl") + _jsonl("aime_2024.jsonl") + _jsonl("aime_2025.jsonl")
    items = []
    for row in rows:
        gold = str(row["answer"])
        query = Query.from_prompt(row["problem"], source="bench", category="math", reference=gold)
        items.append((query, f"<think>{TRACE}</think>{TRACE}So the answer is $\\boxed{{{gold}}}$."))
        items.append((query, f"<think>{TRACE}</think>{TRACE}So the answer is $\\boxed{{-7}}$."))
    return items


def if_items() -> list[tuple[Query, str]]:
    items = []
    for row in _jsonl("ifeval_input_data.jsonl"):
        constraints = {"instruction_id_list": row["instruction_id_list"], "kwargs": row["kwargs"]}
        query = Query.from_prompt(
            row["prompt"], source="bench", category="if", constraints=constraints
        )
        items.append((query, RESPONSE))
    return items


ITEMS = {"math": math_items, "IF": if_items}


def in_process(category: str, repeat: int) -> tuple[float, float]:
    items = ITEMS[category]() * repeat
    verifiers = {q.category: verifier_for(q.category, VerifyConfig()) for q, _ in items}
    for query, text in items[:40]:  # warm: imports, parsers
        run_verifier(verifiers[query.category], query, text)
    wall, cpu = time.perf_counter(), time.process_time()
    for query, text in items:
        run_verifier(verifiers[query.category], query, text)
    return len(items) / (time.perf_counter() - wall), len(items) / (time.process_time() - cpu)


def math_verify_readme_way(category: str, repeat: int) -> tuple[float, float]:
    """The peer: Math-Verify's own extraction over the whole response, as its README shows."""
    from math_verify import parse, verify

    items = ITEMS[category]() * repeat
    for query, text in items[:40]:
        verify(parse(f"${query.reference}$"), parse(text))
    wall, cpu = time.perf_counter(), time.process_time()
    for query, text in items:
        verify(parse(f"${query.reference}$"), parse(text))
    return len(items) / (time.perf_counter() - wall), len(items) / (time.process_time() - cpu)


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of processes, from /proc (the pool's workers)."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def pooled(category: str, repeat: int, workers: int) -> tuple[float, float]:
    items = ITEMS[category]() * repeat

    async def run() -> tuple[float, float]:
        async with VerifyPool(VerifyConfig(), workers=workers) as pool:
            await pool.score_batch(items[: workers * 40])  # warm every worker
            pids = list(pool.executor._processes)
            wall, cpu = time.perf_counter(), time.process_time() + _cpu_seconds(pids)
            await pool.score_batch(items)
            cpu = time.process_time() + _cpu_seconds(pids) - cpu
            return len(items) / (time.perf_counter() - wall), len(items) / cpu

    return asyncio.run(run())


def fresh(fn, *args) -> tuple[float, float]:
    """Run one measurement in a new process, so no cache of an earlier one helps it."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as one:
        return one.submit(fn, *args).result()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path(__file__).with_suffix(".md"))
    parser.add_argument("--repeat", type=int, default=2, help="items are repeated this often")
    parser.add_argument("--runs", type=int, default=3, help="fresh runs per row (best, median)")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    load_before = os.getloadavg()[0]
    rows = []
    for name in ITEMS:
        n = len(ITEMS[name]()) * args.repeat
        measures = [("in-process loop (1 core, no pool)", in_process, ())]
        if name == "math":
            peer = "peer: Math-Verify README way, in-process"
            measures.append((peer, math_verify_readme_way, ()))
        for workers in sorted({1, cores}):
            label = f"VerifyPool, {workers} worker{'s' if workers > 1 else ''}"
            measures.append((label, pooled, (workers,)))
        for label, fn, extra in measures:
            runs = [fresh(fn, name, args.repeat, *extra) for _ in range(args.runs)]
            walls, cpus = sorted(r[0] for r in runs), sorted(r[1] for r in runs)
            rows.append((name, label, n, walls[-1], walls[len(walls) // 2], cpus[len(cpus) // 2]))
    load_after = os.getloadavg()[0]

    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
    model = next((ln.split(":", 1)[1].strip() for ln in cpu if "Model name" in ln), "?")
    lines = [
        "# Verification throughput (math and IF)",
        "",
        f"Machine: {cores} cores ({model}), Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}; 1-minute load average "
        f"{load_before:.1f} before, {load_after:.1f} after. Produced by "
        "`python bench/verify_throughput.py`.",
        "",
        f"Each row: {args.runs} runs, each in a fresh process after a warm-up. Wall-clock",
        "rate: best and median run; per CPU-second: answers over the CPU time of every",
        "process involved (the pool's owner and its workers), median run.",
        "",
        "| category | how | answers | verifications/s, best | median | per CPU-second |",
        "|---|---|---|---|---|---|",
        *[
            f"| {c} | {how} | {n:,} | {best:,.0f} | {mid:,.0f} | {cpu:,.0f} |"
            for c, how, n, best, mid, cpu in rows
        ],
        "",
        "Reading it: the pool's worth is the wall-clock rate with every core busy; a",
        "1-worker pool costs about what the in-process loop does (IPC is small next to a",
        "verification). A load average above 0 before the run means other jobs shared the",
        "cores: wall-clock rates are then lower bounds, while the per-CPU-second rate still",
        "says what one verification costs. The math peer parses the reference for every",
        "answer and runs Math-Verify's regexes over the whole response; hubtools caches the",
        "parsed reference and parses only the boxed or stated answer.",
        "",
    ]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
