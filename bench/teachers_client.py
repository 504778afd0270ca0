"""Teacher clients under load: hubtools generate vs open-r1's loop vs distilabel, one server.

One local server (bench/sim_server.py: continuous batching, ``step_ms`` per token, each answer
``tokens`` +-50% long) runs pinned to core 0; each client runs alone against a fresh server,
with everything it starts, on both cores (the server needs a few percent of one). Every
100 ms the bench samples the server's active-request count (``/stats``) and the CPU time of
the client's process tree (``/proc``).

Throughput rows, at 100, 1,000 and 5,000 concurrent requests: after a warm-up of two mean
answer lengths (the first wave, sent all at once, is back; what is in flight now is what the
client keeps there), a fixed window measures in-flight requests (mean, p5), answers per
second, and client CPU per answer (the main process alone, and with its children: hubtools
verifies every answer with Math-Verify in its process pool). The client is then killed;
hubtools' run store makes that safe, and nothing after the window is measured.

Fault rows: ``--fault-rate 0.05`` on the server (429, 503, 500 part-way, TCP reset part-way,
evenly), one wave of queries run to the end, then every query is looked for in what the
client stored: the run store for hubtools (an attempt with its verdict), the JSONL for
open-r1, the generations for distilabel (None where the request failed).

Stack rows: each HTTP stack alone (aiohttp, httpx2, hubtools' AsyncInferenceClient), 1,000 in
flight against short answers, nothing else in the process: what one request costs.

The clients:
- hubtools: ``python -m hubtools generate RUN --config run.yaml`` (the CLI, progress bars on,
  ``stream: false``, SQLite ``synchronous=FULL`` commits per batch), math queries verified by
  Math-Verify in hubtools' process pool (2 workers).
- open-r1: a re-implementation of ``scripts/generate_reasoning.py``'s loop: uvloop, one
  aiohttp session (TCPConnector limit = concurrency), at most `concurrency` example tasks
  (``asyncio.wait(FIRST_COMPLETED)`` when full), a 0-100 ms random sleep before each POST,
  ``response.json(content_type=None)`` whatever the status, 10 retries 10 s apart on
  exceptions, each result appended with aiofiles under a lock (flush, no fsync), tqdm.
  ``num_generations`` 1 so that one example is one request.
- distilabel 1.5.3: ``InferenceEndpointsLLM(base_url=...)`` with ``api_key="EMPTY"``, its async
  ``agenerate`` driven by `concurrency` tasks behind a semaphore (more in flight than its
  own pipelines keep: they gather one input batch at a time), generations appended to a
  JSONL file in batches of 50.

open-r1 and distilabel run with the peer venv's python (``--peer-python``), made with the
lines below (distilabel 1.5.3 imports ``requests``, which huggingface_hub >= 1.0 no longer
brings; it then works with huggingface_hub 2.4)::

    python -m venv /tmp/distilabel-venv
    /tmp/distilabel-venv/bin/pip install distilabel==1.5.3 requests aiohttp uvloop aiofiles tqdm

    python bench/teachers_client.py [--quick] [--out bench/teachers_client.md]

About 10 minutes (``--quick``: shorter answers and windows, about 5). Without the peer venv
only hubtools runs. ``--client-cores 1`` keeps the client off the server's core.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from teachers_client_peers import client_distilabel, client_openr1, client_stack, problem
from teachers_client_report import CLIENT_CPU, SERVER_CPU, report, versions, warm_s

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PEER_PYTHON = "/tmp/distilabel-venv/bin/python"
SAMPLE_S = 0.1
TICK = os.sysconf("SC_CLK_TCK")


def prepare_hubtools(workdir: Path, url: str, concurrency: int, queries: int, max_tokens: int):
    """A run with `queries` math queries and the run.yaml naming the server as the teacher."""
    from hubtools.records import Query
    from hubtools.run import Run

    run = Run.create(workdir / "run", {})
    run.add_queries(
        Query.from_prompt(p, category="math", source="bench", reference=str(r))
        for p, r in map(problem, range(queries))
    )
    config = workdir / "run.yaml"
    config.write_text(
        "teachers:\n"
        f"  - {{name: sim, endpoint: '{url}', model: sim, max_concurrency: {concurrency},"
        " stream: false}\n"
        f"sampling: {{temperature: 0.6, top_p: 0.95, max_tokens: {max_tokens}}}\n"
        "max_attempts: 4\n"
    )
    return run.path, config


# -- measuring ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_stats(port: int) -> dict | None:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(b"GET /stats HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        return json.loads(data.split(b"\r\n\r\n", 1)[1])
    except (OSError, ValueError, IndexError):
        return None


def tree_cpu(root: int) -> tuple[float, float]:
    """(CPU seconds of `root`, of its descendants alive now), from /proc."""
    parent, cpu = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry)
        parent[pid] = int(fields[1])
        cpu[pid] = (int(fields[11]) + int(fields[12])) / TICK
    own, children, frontier = cpu.get(root, 0.0), 0.0, [root]
    kids: dict[int, list[int]] = {}
    for pid, ppid in parent.items():
        kids.setdefault(ppid, []).append(pid)
    while frontier:
        for kid in kids.get(frontier.pop(), []):
            children += cpu[kid]
            frontier.append(kid)
    return own, children


def machine_cpu() -> float:
    """CPU seconds used by everything on the machine (all cores), from /proc/stat."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:]
    busy = sum(int(x) for x in fields[:8]) - int(fields[3]) - int(fields[4])  # minus idle, iowait
    return busy / TICK


def pinned(cpus: set[int]):
    return lambda: (os.sched_setaffinity(0, cpus), os.setsid())


class Server:
    def __init__(self, args: argparse.Namespace, fault_rate: float, workdir: Path):
        self.port = free_port()
        ready = workdir / "server.ready"
        cmd = [sys.executable, str(HERE / "sim_server.py"), "--port", str(self.port),
               "--step-ms", str(args.step_ms), "--tokens", str(args.tokens),
               "--fault-rate", str(fault_rate), "--cpu", str(SERVER_CPU),
               "--ready-file", str(ready)]  # fmt: skip
        self.log = open(workdir / "server.log", "w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while not ready.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"sim_server did not start: {(workdir / 'server.log').read_text()}"
                )
            time.sleep(0.02)
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> dict | None:
        final = get_stats(self.port)
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        return final


def client_command(args, approach: str, url: str, concurrency: int, queries: int, workdir: Path):
    common = ["--url", url, "--concurrency", str(concurrency), "--queries", str(queries),
              "--workdir", str(workdir), "--max-tokens", str(args.max_tokens)]  # fmt: skip
    if approach == "hubtools":
        run, config = prepare_hubtools(workdir, url, concurrency, queries, args.max_tokens)
        return [sys.executable, "-m", "hubtools", "generate", str(run), "--config", str(config),
                "--json"]  # fmt: skip
    return [args.peer_python, str(Path(__file__).resolve()), "--client", approach, *common]


def stop_client(proc: subprocess.Popen) -> None:
    """End the client and everything it started (its own session: pool workers included)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # leftovers: the forkserver and its workers
    except ProcessLookupError:
        pass
    proc.wait()


def measure(args, approach: str, concurrency: int, *, fault_rate=0.0, queries=None) -> dict:
    """One client against a fresh server; a throughput window, or a run to the end."""
    latency = args.step_ms * args.tokens / 1000
    warm = warm_s(args)
    to_end = queries is not None
    if queries is None:  # enough work for the window, never running dry
        queries = int(concurrency * (1 + 1.6 * (warm + args.window) / latency)) + 100
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{approach}-{concurrency}-", dir=args.tmp))
    row = {"approach": approach, "concurrency": concurrency, "fault_rate": fault_rate,
           "queries": queries}  # fmt: skip
    server = Server(args, fault_rate, workdir)
    log = open(workdir / "client.log", "w")
    proc = None
    samples = []
    try:
        cmd = client_command(args, approach, server.url, concurrency, queries, workdir)
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, cwd=ROOT,
                                preexec_fn=pinned(args.client_cpus))  # fmt: skip
        started = time.time()
        limit = args.run_timeout if to_end else warm + args.window + 60
        while True:
            stats = get_stats(server.port)
            own, kids = tree_cpu(proc.pid)
            now = time.time()
            if stats:
                samples.append((now, stats, own, kids, machine_cpu()))
            first = stats and stats.get("first_request")
            if proc.poll() is not None:
                break
            if not to_end and first and now >= first + warm + args.window:
                break
            if now - started > limit:
                row["error"] = f"stopped after {limit:.0f}s"
                break
            time.sleep(SAMPLE_S)
        exited = proc.poll()
    finally:
        if proc is not None:
            stop_client(proc)
        final = server.stop()
        log.close()
    row["server_final"] = final
    stdout = proc.stdout.read().decode() if proc and proc.stdout else ""
    if to_end:
        row.update(count_lost(approach, workdir, queries, stdout))
        row["seconds"] = samples[-1][0] - samples[0][0] if samples else None
    else:
        if exited is not None:
            row["error"] = f"client exited ({exited}) before the window ended"
        row.update(window_metrics(samples, warm, args.window, latency, concurrency))
    if "error" in row or (to_end and row.get("lost")):
        row["client_log_tail"] = (workdir / "client.log").read_text()[-1500:]
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return row


def window_metrics(samples, warm, window, latency, concurrency) -> dict:
    firsts = [s[1]["first_request"] for s in samples if s[1].get("first_request")]
    if not firsts:
        return {"error": "the client never reached the server"}
    lo, hi = firsts[0] + warm, firsts[0] + warm + window
    inside = [s for s in samples if lo <= s[0] <= hi]
    if len(inside) < 10:
        return {"error": f"too few samples in the window ({len(inside)})"}
    (t0, a, own0, kids0, all0), (t1, b, own1, kids1, all1) = inside[0], inside[-1]
    seconds = t1 - t0
    done = b["completed"] - a["completed"]
    active = sorted(s[1]["active"] for s in inside)
    mean_active = statistics.fmean(active)
    per = (lambda x: x / done * 1000) if done else (lambda x: float("nan"))
    return {
        "window_s": round(seconds, 2),
        "in_flight_mean": round(mean_active, 1),
        "in_flight_p5": active[int(0.05 * (len(active) - 1))],
        "saturation": round(mean_active / concurrency, 3),
        "rps": round(done / seconds, 1),
        "rps_max_at_target": round(concurrency / latency, 1),
        "rps_max_at_in_flight": round(mean_active / latency, 1),
        "client_cpu_ms": round(per(own1 - own0), 3),
        "client_cpu_children_ms": round(per(own1 - own0 + kids1 - kids0), 3),
        "client_core_util": round((own1 - own0 + kids1 - kids0) / seconds, 3),
        "server_core_util": round((b["cpu_s"] - a["cpu_s"]) / seconds, 3),
        # Everything else on the machine (the bench itself, other users): contention.
        "other_cores": round(
            (all1 - all0 - (own1 - own0 + kids1 - kids0) - (b["cpu_s"] - a["cpu_s"])) / seconds, 2
        ),
        "server_late_steps": b["late_steps"] - a["late_steps"],
        "server_steps": b["step"] - a["step"],
        "server_max_lag_ms": b["max_lag_ms"],
    }


def count_lost(approach: str, workdir: Path, queries: int, stdout: str) -> dict:
    """Queries without a stored answer at the end of the run."""
    if approach == "hubtools":
        import sqlite3

        answered, errored, attempts = set(), set(), 0
        for db in (workdir / "run" / "db").glob("shard-*.sqlite"):
            conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
            attempts += conn.execute("SELECT COUNT(*) FROM attempts").fetchone()[0]
            answered |= {q for (q,) in conn.execute(
                "SELECT a.query_id FROM attempts a JOIN verdicts v USING (query_id, teacher,"
                " attempt) WHERE a.error IS NULL")}  # fmt: skip
            errored |= {q for (q,) in conn.execute(
                "SELECT query_id FROM attempts WHERE error IS NOT NULL")}  # fmt: skip
            conn.close()
        retries = None
        try:
            retries = json.loads(stdout)[0]["teachers"][0]["retries"]
        except (ValueError, LookupError, TypeError):
            pass
        return {
            "answered": len(answered),
            "lost": queries - len(answered | errored),
            "errored": len(errored - answered),
            "attempts": attempts,
            "retries": retries,
        }
    path = workdir / f"{approach}.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    if approach == "distilabel":
        answered = {r["uuid"] for r in rows if r["generation"] is not None}
        nones = sum(r["generation"] is None for r in rows)
        return {"answered": len(answered), "lost": queries - len(answered), "stored_none": nones}
    answered = {r["uuid"] for r in rows}
    return {"answered": len(answered), "lost": queries - len(answered)}


def measure_stacks(args, concurrency: int = 1000, requests: int = 4000) -> list[dict]:
    """Each HTTP stack alone against one server of short answers (0.5 s): CPU per request."""
    rows = []
    workdir = Path(tempfile.mkdtemp(prefix="bench-stacks-", dir=args.tmp))
    fast = argparse.Namespace(**{**vars(args), "tokens": 25})
    for stack in ("aiohttp", "httpx2", "httpx2-pools", "hf-httpx", "hf"):
        server = Server(fast, 0.0, workdir)
        # hf: hubtools' default transport (aiohttp); hf-httpx: httpx2's own pools.
        env = {**os.environ, "HUBTOOLS_HTTP_TRANSPORT": "httpx" if stack == "hf-httpx" else
               "aiohttp"}  # fmt: skip
        try:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--client", f"stack-{stack}",
                   "--url", server.url, "--concurrency", str(concurrency), "--queries",
                   str(requests), "--workdir", str(workdir)]  # fmt: skip
            before = machine_cpu()
            wall = time.monotonic()
            done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300,
                                  preexec_fn=pinned(args.client_cpus), env=env)  # fmt: skip
            wall = time.monotonic() - wall
            row = json.loads(done.stdout.strip().splitlines()[-1])
            row["machine_cores_busy"] = round((machine_cpu() - before) / wall, 2)
        except (subprocess.SubprocessError, ValueError, IndexError) as err:
            row = {"stack": stack, "error": f"{type(err).__name__}: {err}"[:300]}
        finally:
            server.stop()
        rows.append(row)
        print(json.dumps(row), flush=True)
    shutil.rmtree(workdir, ignore_errors=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short windows, fewer fault runs")
    parser.add_argument("--out", type=Path, default=HERE / "teachers_client.md")
    parser.add_argument("--json-out", type=Path, default=None, help="raw rows as JSON")
    parser.add_argument("--levels", type=int, nargs="+", default=[100, 1000, 5000])
    parser.add_argument("--approaches", nargs="+", default=["hubtools", "openr1", "distilabel"])
    parser.add_argument("--peer-python", default=PEER_PYTHON)
    parser.add_argument("--step-ms", type=float, default=20.0)
    parser.add_argument("--tokens", type=int, default=None, help="mean (default 500, quick 250)")
    parser.add_argument("--max-tokens", type=int, default=1024)
    parser.add_argument("--window", type=float, default=None, help="seconds (default 12, quick 5)")
    parser.add_argument("--fault-rate", type=float, default=0.05)
    parser.add_argument("--fault-levels", type=int, nargs="*", default=None)
    parser.add_argument("--no-stacks", action="store_true", help="skip the HTTP stack table")
    parser.add_argument("--run-timeout", type=float, default=150.0)
    parser.add_argument(
        "--client-cores", default="all", help="cores for the client: 'all' (both; the server "
        "stays on core 0) or '1' (core 1 only)",
    )  # fmt: skip
    parser.add_argument("--tmp", default=None, help="where runs and logs go (default: /tmp)")
    parser.add_argument("--keep", action="store_true", help="keep each run's directory")
    parser.add_argument("--from-json", type=Path, help="rewrite --out from a --json-out file")
    parser.add_argument("--client", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--queries", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        if args.client.startswith("stack-"):
            client_stack(args)
        else:
            {"openr1": client_openr1, "distilabel": client_distilabel}[args.client](args)
        return
    args.client_cpus = {CLIENT_CPU} if args.client_cores == "1" else os.sched_getaffinity(0)
    if args.from_json:
        raw = json.loads(args.from_json.read_text())
        vars(args).update(raw["args"])
        text = report(args, raw["rows"], raw["faults"], raw["stacks"], raw["info"], raw["elapsed"])
        args.out.write_text(text + "\n")
        return
    if args.window is None:
        args.window = 5.0 if args.quick else 12.0
    if args.tokens is None:
        args.tokens = 250 if args.quick else 500
    if args.fault_levels is None:
        args.fault_levels = [1000] if args.quick else [1000, 5000]
    approaches = list(args.approaches)
    if not Path(args.peer_python).exists():
        print(f"no peer venv at {args.peer_python}: running hubtools only", file=sys.stderr)
        approaches = [a for a in approaches if a == "hubtools"]
    start = time.monotonic()
    info = versions(args.peer_python)
    info["load"] = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    rows, faults, stacks = [], [], []
    for concurrency in args.levels:
        for approach in approaches:
            row = measure(args, approach, concurrency)
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "server_final"}), flush=True)
    for concurrency in args.fault_levels:
        for approach in approaches:
            if approach != "hubtools" and concurrency > 1000:
                continue  # peers lose requests at any level; one level shows it
            # One wave of queries; distilabel keeps 100 in flight whatever the concurrency.
            queries = min(concurrency, 300) if approach == "distilabel" else concurrency
            row = measure(args, approach, concurrency, fault_rate=args.fault_rate,
                          queries=queries)  # fmt: skip
            faults.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "server_final"}), flush=True)
    if not args.no_stacks:
        stacks = measure_stacks(args, requests=2000 if args.quick else 4000)
    elapsed = time.monotonic() - start
    args.out.write_text(report(args, rows, faults, stacks, info, elapsed) + "\n")
    if args.json_out:
        keep = ("quick", "levels", "step_ms", "tokens", "window", "client_cores")
        raw = {"rows": rows, "faults": faults, "stacks": stacks, "info": info,
               "elapsed": elapsed, "args": {k: getattr(args, k) for k in keep}}  # fmt: skip
        args.json_out.write_text(json.dumps(raw, indent=1))
    print(f"wrote {args.out} in {elapsed / 60:.1f} min")


if __name__ == "__main__":
    main()
