"""`hubtools eval` at 5,000 samples in flight vs the usual way (OpenAI client loop + math-verify).

One simulated endpoint (bench/sim_server.py: continuous batching, ``step_ms`` per token,
answers ``tokens`` +-50% long that end in ``The answer is $\\boxed{A+B}$``) and one local Hub
(``hubtools hub serve``) holding a synthetic ``HuggingFaceH4/MATH-500`` of "What is A + B?"
problems (each distinct, so no verification is a cache hit). Each client runs alone against
a fresh server, to the end, in its own process tree:

- hubtools: ``python -m hubtools eval --benchmarks math500 --samples K --max-concurrency C``
  (the CLI: dataset read from the Hub at a commit, every sample stored in the run store,
  verified by Math-Verify in hubtools' process pool, results.json written);
- plain: the usual script: ``openai.AsyncOpenAI`` (its default HTTP client), one task per
  sample behind an ``asyncio.Semaphore(C)``, each answer verified as it arrives with
  ``math_verify.verify(parse(gold), parse(answer))`` in the same process, results kept in
  memory and written once at the end (nothing survives a crash).

Two workloads: ``in-flight`` (answers of ``--tokens`` tokens: 10 s each by default, so C
samples in flight is what the client must keep up) and ``throughput`` (answers of 25 tokens,
0.5 s: the server is never the limit; samples verified per second is what the client can do).
Measured (server ``/stats`` every 100 ms): samples in flight, the mean over the time at
least C samples were still unanswered (what a client could keep in flight); the time from
the first requests to the last answer and to the client's exit (every sample verified,
results written); samples verified per second over the latter; and client CPU per sample:
the CPU of the client's whole process tree (every pid's own user + system time, read from
/proc every 100 ms: the verify pool's forkserver workers are never waited for, so
getrusage would miss them) minus the same client's CPU for a 1-problem, 1-sample run
(start-up, imports, the dataset read, the pool's start), divided by the samples.

    python bench/eval.py [--quick] [--out bench/eval.md] [--json-out bench/eval.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from teachers_client import Server, get_stats

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SAMPLE_S = 0.1
TICK = os.sysconf("SC_CLK_TCK")
DATASET = "HuggingFaceH4/MATH-500"


def problem(i: int) -> tuple[str, int]:
    a, b = 1000 + i, (7919 * i) % 100_003
    return f"Problem {i}. What is {a} + {b}?", a + b


# -- the local Hub with the synthetic benchmark ---------------------------------------------


class Hub:
    def __init__(self, root: Path):
        from teachers_client import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(root.parent / "hub.log", "w")
        cmd = [sys.executable, "-m", "hubtools", "hub", "serve", "--root", str(root),
               "--port", str(self.port)]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = time.monotonic() + 60
        while get_stats_hub(self.url) is None:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the local Hub did not start")
            time.sleep(0.1)
        made = subprocess.run(
            [sys.executable, "-m", "hubtools", "hub", "token", "create", "--root", str(root),
             "--user", "bench", "--org", DATASET.split("/")[0], "--write"],
            capture_output=True, text=True, check=True, cwd=ROOT,
        )  # fmt: skip
        self.token = made.stdout.strip()

    def env(self) -> dict[str, str]:
        return {"HF_ENDPOINT": self.url, "HF_HUB_DISABLE_XET": "1", "HF_TOKEN": self.token,
                "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_OFFLINE": "0"}  # fmt: skip

    def seed(self, problems: int, workdir: Path) -> None:
        """The synthetic MATH-500 (test split), pushed by a child process set up for this Hub."""
        rows = workdir / "rows.jsonl"
        with rows.open("w") as f:
            for i in range(problems):
                text, answer = problem(i)
                f.write(json.dumps({"problem": text, "answer": str(answer),
                                    "unique_id": f"bench/{i}.json"}) + "\n")  # fmt: skip
        code = ("import sys; from datasets import load_dataset; "
                "load_dataset('json', data_files=sys.argv[1], split='train')"
                f".push_to_hub({DATASET!r}, split='test')")  # fmt: skip
        env = {**os.environ, **self.env(), "HF_HOME": str(workdir / "hf-home")}
        subprocess.run([sys.executable, "-c", code, str(rows)], env=env, check=True,
                       capture_output=True, cwd=ROOT)  # fmt: skip

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self.log.close()


def tree_cpu(root: int) -> dict[int, float]:
    """CPU seconds (user + system, own only) of ``root`` and every live descendant, by pid.

    Sampled every 100 ms and merged, the last value seen per pid: the verify pool's
    forkserver workers are never waited for by the client, so getrusage misses them.
    """
    parent, cpu = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        parent[int(entry)] = int(fields[1])
        cpu[int(entry)] = (int(fields[11]) + int(fields[12])) / TICK
    kids: dict[int, list[int]] = {}
    for pid, ppid in parent.items():
        kids.setdefault(ppid, []).append(pid)
    found, frontier = {}, [root]
    while frontier:
        pid = frontier.pop()
        if pid in cpu:
            found[pid] = cpu[pid]
        frontier += kids.get(pid, [])
    return found


def get_stats_hub(url: str) -> dict | None:
    from urllib.request import urlopen

    try:
        with urlopen(f"{url}/healthz", timeout=1) as resp:
            return json.load(resp)
    except OSError:
        return None


# -- the clients ----------------------------------------------------------------------------


def command(approach: str, url: str, problems: int, samples: int, concurrency: int,
            max_tokens: int, workdir: Path) -> list[str]:  # fmt: skip
    if approach == "hubtools":
        return [sys.executable, "-m", "hubtools", "eval", "--endpoint", url, "--model", "sim",
                "--benchmarks", "math500", "--samples", str(samples), "--limit", str(problems),
                "--max-concurrency", str(concurrency), "--max-new-tokens", str(max_tokens),
                "--out", str(workdir / "eval"), "--quiet", "--json"]  # fmt: skip
    return [sys.executable, str(Path(__file__).resolve()), "--client", "plain", "--url", url,
            "--problems", str(problems), "--samples", str(samples), "--concurrency",
            str(concurrency), "--max-tokens", str(max_tokens)]  # fmt: skip


WRAPPER = """
import json, resource, subprocess, sys, time
start = time.time()
proc = subprocess.run(sys.argv[2:], stdout=subprocess.PIPE, stderr=open(sys.argv[1], "w"))
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"rc": proc.returncode, "cpu": usage.ru_utime + usage.ru_stime,
                  "wall": time.time() - start, "stdout": proc.stdout.decode()[-20000:]}))
"""


def run_client(args, approach: str, problems: int, samples: int, tokens: int, hub: Hub) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-eval-{approach}-", dir=args.tmp))
    server_args = argparse.Namespace(step_ms=args.step_ms, tokens=tokens)
    server = Server(server_args, 0.0, workdir)
    cmd = command(approach, server.url, problems, samples, args.concurrency, args.max_tokens,
                  workdir)  # fmt: skip
    env = {**os.environ, **hub.env(), "HF_HOME": str(workdir / "hf-home"),
           "PYTHONPATH": str(ROOT)}  # fmt: skip
    wrapper = subprocess.Popen([sys.executable, "-c", WRAPPER, str(workdir / "client.log"), *cmd],
                               stdout=subprocess.PIPE, env=env, cwd=ROOT)  # fmt: skip
    seen, cpu = [], {}
    while wrapper.poll() is None:
        stats = get_stats(server.port)
        if stats:
            seen.append((time.time(), stats))
        cpu.update(tree_cpu(wrapper.pid))
        time.sleep(SAMPLE_S)
    out = json.loads(wrapper.stdout.read().decode().strip().splitlines()[-1])
    ended = time.time()
    server.stop()
    row = {"approach": approach, "problems": problems, "samples_per_problem": samples,
           "samples": problems * samples, "tokens": tokens, "rc": out["rc"],
           "cpu_s": sum(cpu.values()) - cpu.get(wrapper.pid, 0.0),
           "cpu_rusage_s": out["cpu"], "processes": len(cpu) - 1}  # fmt: skip
    row["trace"] = [(round(t - seen[0][0], 2), s["active"], s.get("completed", 0))
                    for t, s in seen][::5]  # fmt: skip
    row.update(timeline(seen, ended, problems * samples, args.concurrency))
    row["result"] = parse_result(approach, out["stdout"], workdir)
    if out["rc"] != 0:
        row["log_tail"] = (workdir / "client.log").read_text()[-1500:]
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return row


def timeline(seen: list[tuple[float, dict]], ended: float, total: int, limit: int) -> dict:
    """When the answers came, and how many samples were in flight while enough were left.

    The clock starts when requests first pile up (more than one in flight); ``in_flight``
    is the mean over the time at least ``limit`` samples were still unanswered, i.e. while
    a client could have kept ``limit`` in flight.
    """
    first = next((t for t, s in seen if s["active"] > 1), None)
    if first is None:
        return {}
    after = [(t, s) for t, s in seen if t >= first]
    answered = next((t for t, s in after if s.get("completed", 0) >= total), ended)
    busy = [s["active"] for t, s in after if total - s.get("completed", 0) >= limit]
    return {"seconds": ended - first, "answers_s": answered - first,
            "in_flight_mean": statistics.fmean(busy) if busy else None,
            "in_flight_max": max(s["active"] for _, s in after)}  # fmt: skip


def parse_result(approach: str, stdout: str, workdir: Path) -> dict:
    try:
        data = json.loads(stdout[stdout.index("{") :]) if approach == "hubtools" else None
    except ValueError:
        data = None
    if approach == "hubtools":
        if not data:
            path = workdir / "eval" / "results.json"
            data = json.loads(path.read_text()) if path.exists() else {}
        b = (data.get("benchmarks") or {}).get("math500") or {}
        return {"avg_at_k": b.get("avg_at_k"), "verified": b.get("samples")}
    try:
        return json.loads(stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {}


def client_plain(args: argparse.Namespace) -> None:
    """The usual eval script: AsyncOpenAI + asyncio.gather + math_verify per answer."""
    import asyncio

    from math_verify import parse, verify
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=f"{args.url}/v1", api_key="EMPTY", max_retries=5)
    gate = asyncio.Semaphore(args.concurrency)
    golds: dict[int, object] = {}
    scores: list[float] = []

    async def sample(i: int) -> None:
        text, answer = problem(i)
        async with gate:
            response = await client.chat.completions.create(
                model="sim", messages=[{"role": "user", "content": text}],
                temperature=0.6, top_p=0.95, max_tokens=args.max_tokens,
            )  # fmt: skip
        content = response.choices[0].message.content or ""
        if i not in golds:
            golds[i] = parse(f"${answer}$")
        scores.append(float(verify(golds[i], parse(content.split("</think>")[-1]))))

    async def main() -> None:
        tasks = [sample(i) for i in range(args.problems) for _ in range(args.samples)]
        await asyncio.gather(*tasks)

    asyncio.run(main())
    print(json.dumps({"avg_at_k": sum(scores) / len(scores), "verified": len(scores)}))


# -- the report -----------------------------------------------------------------------------


def marginal(rows: list[dict], tiny: dict[str, dict]) -> None:
    for row in rows:
        base = tiny.get(row["approach"], {}).get("cpu_s", 0.0)
        row["startup_cpu_s"] = base
        row["cpu_ms_per_sample"] = 1000 * (row["cpu_s"] - base) / max(1, row["samples"] - 1)
        if row.get("seconds"):
            row["verified_per_s"] = row["samples"] / row["seconds"]


def report(rows: list[dict], args, started: float) -> str:
    import platform

    load = os.getloadavg()
    lines = ["# `hubtools eval` under load", "",
             f"Produced by `python bench/eval.py{' --quick' if args.quick else ''}` in "
             f"{(time.time() - started) / 60:.1f} min (the script's docstring says what each "
             "client does and how each number is measured).", "",
             f"- Machine: {os.cpu_count()} cores, Python {platform.python_version()}; load "
             f"average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the end (a shared machine: "
             "other jobs compete with the bench).",
             f"- Server: bench/sim_server.py, steps of {args.step_ms:g} ms; {args.concurrency:,} "
             "samples allowed in flight for both clients.", ""]  # fmt: skip
    for workload in ("in-flight", "throughput"):
        chosen = [r for r in rows if r["workload"] == workload]
        if not chosen:
            continue
        tokens = chosen[0]["tokens"]
        lines += [f"## {workload}: answers of {tokens} tokens (+-50%), "
                  f"{tokens * args.step_ms / 1000:g} s each", "",
                  "| client | samples | in flight mean / max | last answer | all verified, exit | "
                  "samples verified/s | client CPU/sample | start-up CPU | avg@k | exit code |",
                  "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for r in chosen:
            res = r.get("result") or {}
            avg = res.get("avg_at_k")
            mean, nan = r.get("in_flight_mean"), float("nan")
            lines.append(
                f"| {r['approach']} | {r['samples']:,} | "
                f"{'—' if mean is None else f'{mean:,.0f}'} / {r.get('in_flight_max', 0):,} | "
                f"{r.get('answers_s', nan):.1f} s | {r.get('seconds', nan):.1f} s | "
                f"{r.get('verified_per_s', float('nan')):,.0f} | "
                f"{r['cpu_ms_per_sample']:.2f} ms | {r['startup_cpu_s']:.1f} s | "
                f"{'—' if avg is None else f'{100 * avg:.1f}%'} | {r['rc']} |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples")
    parser.add_argument("--out", type=Path, default=HERE / "eval.md")
    parser.add_argument("--json-out", type=Path, default=HERE / "eval.json")
    parser.add_argument("--approaches", nargs="+", default=["hubtools", "plain"])
    parser.add_argument("--workloads", nargs="+", default=["in-flight", "throughput"])
    parser.add_argument("--concurrency", type=int, default=5000)
    parser.add_argument("--samples", type=int, default=4, help="per problem")
    parser.add_argument("--problems", type=int, default=None, help="default 2x concurrency/k")
    parser.add_argument("--step-ms", type=float, default=20.0)
    parser.add_argument("--tokens", type=int, default=500)
    parser.add_argument("--max-tokens", type=int, default=1024)
    parser.add_argument("--tmp", default=None)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--client", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client == "plain":
        return client_plain(args)
    started = time.time()
    problems = args.problems or (2 * args.concurrency // args.samples)
    if args.quick:
        problems //= 4
    top = Path(tempfile.mkdtemp(prefix="bench-eval-hub-", dir=args.tmp))
    hub = Hub(top / "hub")
    rows: list[dict] = []
    try:
        hub.seed(problems, top)
        tiny = {a: run_client(args, a, 1, 1, 25, hub) for a in args.approaches}
        for workload in args.workloads:
            tokens = args.tokens if workload == "in-flight" else 25
            for approach in args.approaches:
                row = run_client(args, approach, problems, args.samples, tokens, hub)
                row["workload"] = workload
                rows.append(row)
                print(json.dumps(row), file=sys.stderr)
        marginal(rows, tiny)
    finally:
        hub.stop()
        shutil.rmtree(top, ignore_errors=True)
    args.json_out.write_text(json.dumps({"rows": rows, "tiny": tiny}, indent=1) + "\n")
    args.out.write_text(report(rows, args, started))
    print(args.out.read_text())


if __name__ == "__main__":
    _ = resource  # the wrapper's getrusage runs in a child (see WRAPPER)
    main()
