"""The report of bench/teachers_client.py: tables, the reading, and what changed.

Split from the measuring script so each stays readable; `python bench/teachers_client.py
--from-json FILE` rewrites the report from saved rows with this module alone.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys

SERVER_CPU, CLIENT_CPU = 0, 1  # the server's core; the client's with --client-cores 1


def versions(peer_python: str) -> dict[str, str]:
    def pkgs(python: str, names: list[str]) -> str:
        code = (
            "import importlib.metadata as m, sys\nfor n in sys.argv[1:]:\n"
            "    try: print(n, m.version(n))\n    except m.PackageNotFoundError: pass"
        )
        try:
            out = subprocess.run(
                [python, "-c", code, *names], capture_output=True, text=True, timeout=60
            )
        except OSError:
            return "not installed"
        return ", ".join(out.stdout.splitlines()) or "not installed"

    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                  if line.startswith("model name")), platform.processor())  # fmt: skip
    return {
        "machine": f"{os.cpu_count()} cores ({model}), Linux {platform.release()}, "
        f"Python {platform.python_version()}",
        "hubtools env": pkgs(
            sys.executable, ["huggingface_hub", "httpx2", "aiohttp", "uvloop", "math-verify"]
        ),
        "peer venv": pkgs(
            peer_python,
            [
                "distilabel",
                "huggingface_hub",
                "httpx2",
                "aiohttp",
                "uvloop",
                "aiofiles",
                "requests",
            ],
        ),  # fmt: skip
    }


def fmt(value, digits=2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def warm_s(args) -> float:
    """Two answer lengths: the first wave (all sent at once) is back, later ones dominate."""
    return 2 * args.step_ms * args.tokens / 1000 + 2


def report(args, rows, faults, stacks, info: dict, elapsed: float) -> str:
    latency = args.step_ms * args.tokens / 1000
    client_where = (f"pinned to core {CLIENT_CPU}" if args.client_cores == "1"
                    else "free to use both cores")  # fmt: skip
    lines = [
        "# Teacher clients under load",
        "",
        f"Produced by `python bench/teachers_client.py{' --quick' if args.quick else ''}` "
        f"in {elapsed / 60:.1f} min (script docstring: what each client does).",
        "",
        f"- Machine: {info['machine']}; load average {info['load']} when the bench started.",
        f"- hubtools environment: {info['hubtools env']}.",
        f"- Peer venv (open-r1 loop and distilabel): {info['peer venv']}.",
        f"- Server: bench/sim_server.py pinned to core {SERVER_CPU}; each client {client_where}"
        f" with its children. Steps of {args.step_ms:g} ms, answers of {args.tokens} tokens "
        f"+-50% (mean latency {latency:g} s, ~{4 * args.tokens / 1000:g} kB of text): the best "
        f"rate at n in flight is n / {latency:g} s.",
        f"- Window: {args.window:g} s after a {warm_s(args):g} s warm-up from the first "
        "request; in flight sampled from the server every 100 ms; CPU from /proc.",
        "- Client CPU/answer: the client's main process; in brackets with its children "
        "(hubtools: the 2 Math-Verify workers that verify every answer; the peers verify "
        "nothing). *other cores*: CPU used by everything else on the machine during the "
        "window (this machine is shared: other users' jobs compete with the bench).",
        "",
    ]
    for concurrency in args.levels:
        level = [r for r in rows if r["concurrency"] == concurrency]
        if not level:
            continue
        lines += [
            f"## {concurrency:,} concurrent requests",
            "",
            "| client | in flight mean / p5 | answers/s (best possible) | client CPU/answer "
            "(with children) | client cores used | server core, late steps | other cores |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in level:
            if "in_flight_mean" not in r:
                lines.append(f"| {r['approach']} | failed: {r.get('error')} | | | | | |")
                continue
            note = f" ({r['error']})" if r.get("error") else ""
            lines.append(
                f"| {r['approach']}{note} | {fmt(r['in_flight_mean'], 0)} / "
                f"{fmt(r['in_flight_p5'])} | {fmt(r['rps'], 1)} ({fmt(r['rps_max_at_target'], 0)})"
                f" | {fmt(r['client_cpu_ms'], 2)} ms ({fmt(r['client_cpu_children_ms'], 2)} ms) | "
                f"{r['client_core_util']:.2f} | {r['server_core_util']:.0%}, "
                f"{r['server_late_steps']}/{r['server_steps']} | {r['other_cores']:.2f} |"
            )
        lines.append("")
    if faults:
        lines += [
            f"## Lost requests with {faults[0]['fault_rate']:.0%} injected faults",
            "",
            "429, 503, 500 part-way through the answer, TCP reset part-way through, in equal "
            "shares; a fixed number of queries run to the end, then each query is looked for "
            "in what the client stored.",
            "",
            "| client | concurrency | queries | answered | lost | notes |",
            "|---|---|---|---|---|---|",
        ]
        for r in faults:
            notes = []
            if r.get("retries") is not None:
                notes.append(f"{r['retries']:,} requests retried, {r['attempts']:,} attempts "
                             f"in the run store, {r['errored']} ended with an error")  # fmt: skip
            if r.get("stored_none"):
                notes.append(f"{r['stored_none']:,} stored as None")
            final = r.get("server_final") or {}
            injected = sum(v for k, v in final.items() if k.startswith("fault_"))
            notes.append(f"{injected:,} faults injected, {fmt(r.get('seconds'), 0)} s")
            if r.get("error"):
                notes.append(r["error"])
            lines.append(
                f"| {r['approach']} | {r['concurrency']:,} | {r['queries']:,} | "
                f"{fmt(r.get('answered'))} | {fmt(r.get('lost'))} | {'; '.join(notes)} |"
            )
        lines.append("")
    if stacks:
        lines += [
            "## The HTTP stacks alone",
            "",
            "Each stack against the same server with short answers (0.5 s), 1,000 in flight, "
            "nothing else in the process (no store, no verification; asyncio's default loop and "
            "collector settings for all, not hubtools.aio's): the CPU one request costs. *hf* "
            "is hubtools' TeacherClient: huggingface_hub's AsyncInferenceClient.chat_completion "
            "over hubtools' aiohttp transport, 32 connections per client; *hf-httpx* the same "
            "over httpx2's own pools (`HUBTOOLS_HTTP_TRANSPORT=httpx`); *httpx2* is one httpx2 "
            "pool of 1,016 connections, *httpx2-pools* pools of 32.",
            "",
            "| stack | CPU/request | requests/s | client cores used | machine cores busy |",
            "|---|---|---|---|---|",
        ]
        for r in stacks:
            if "cpu_ms" not in r:
                lines.append(f"| {r['stack']} | failed: {r.get('error')} | | | |")
                continue
            lines.append(f"| {r['stack']} | {r['cpu_ms']:.3f} ms | {r['rps']:,.0f} | "
                         f"{r['core_util']:.2f} | {r['machine_cores_busy']:.2f} |")  # fmt: skip
        lines.append("")
    lines += reading(args, rows, faults, stacks)
    return "\n".join(lines)


FIXES = """\
## What changed in hubtools because of this bench

Earlier rows come from this bench while it was being written; the machine was shared then
(load 2-5), so only the before/after gaps within one table mean much.

- *Small connection pools* (`hubtools/endpoints.py`, `hubtools/teachers/client.py`).
  hubtools gave each teacher one httpx pool of `max_concurrency` connections. httpcore's
  pool walks all its connections twice per request (assigning requests, releasing
  responses), so at 5,000 that walk dominated everything: 180 ms of client CPU per answer,
  20 requests in flight out of 5,000, 5 answers/s; at 1,000, 5.8 ms per answer. Now an
  endpoint gets one AsyncInferenceClient per 32 requests in flight and each request takes
  a free slot of one of them (the clients share one SSL context, ~20 ms of CPU each to
  build). After: 3.6 ms per answer at 1,000 and 3.7 ms at 5,000 (1,400 in flight).
- *Batched verification* (`hubtools/teachers/generate.py`). Every answer made its own
  round trip to the process pool (pickling, two helper threads, a pipe write, an event-loop
  wake-up, a task in a worker). Answers arriving within 100 ms now go as one batch split
  over the workers: the executor's threads went from ~0.3 to ~0.02 ms per answer and the
  workers from ~1.8 to ~1.2-1.5 ms per answer (Math-Verify itself is ~0.8 ms of that).
- *aiohttp under AsyncInferenceClient* (`hubtools/endpoints_transport.py`). The endpoint
  clients are still huggingface_hub's AsyncInferenceClient, but their `httpx2.AsyncClient`
  sends through an httpx2 transport backed by one aiohttp session per client: httpx2 keeps
  its client layer (event hooks, headers, redirects, timeouts, decoding) and aiohttp does
  the HTTP/1.1 exchange in place of httpcore2 + h11, its errors raised as the httpx2
  exceptions the default transport raises for the same failure
  (`HUBTOOLS_HTTP_TRANSPORT=httpx` goes back to httpx2's pools). With it, the limiter hands
  slots to a FIFO of futures instead of an `asyncio.Condition` (27 -> 4 us of CPU per
  request with 2,000 tasks contending). Stack table at the time (1,000 in flight, short
  answers, load 4): aiohttp 0.170 ms, httpx2-pools 0.772 ms, hf over httpx2 1.000 ms, hf
  over aiohttp 0.530 ms per request. hubtools rows, run alternately (load 1.9-2.6): at
  1,000 in flight 1.70-1.74 -> 1.16-1.26 ms per answer; at 5,000 1.99 -> 1.13-1.19 ms, and
  in flight 3,370-3,505 -> 4,873-4,942 of 5,000.
- *The garbage collector, uvloop, the store's rows* (`hubtools/aio.py`,
  `hubtools/run/store.py`, `hubtools/records.py`). CPU per thread and per answer
  (`/proc/PID/task`) showed the main thread at ~0.94 of ~1.0 ms, and CPython's collector
  at a quarter of it: a request in flight holds a few dozen coroutines, futures and dicts,
  so the allocation count passes the first threshold (700) all the time; young collections
  promote the in-flight requests, and about one collection in a hundred is a full one over
  ~750,000 live objects, 0.2-0.4 s each (13 of them in 14 s at 5,000 in flight). `generate`
  now runs with a first threshold of 10,000 (restored afterwards): in steady state almost
  nothing is collected, since requests' objects die of their reference counts; cycles are
  still collected, in fewer batches. 3,000 gave 0.75 ms, 10,000 0.62-0.64 ms, 100,000 no
  better; `gc.freeze()` after start-up added nothing measurable. The loop is uvloop
  (`HUBTOOLS_EVENT_LOOP=asyncio` keeps asyncio's): ~7% less CPU per answer. The store
  writer builds rows from the records' attributes instead of `to_dict()` (whose
  `dataclasses.asdict` deep-copied every value: 17 us per attempt; `to_dict` itself is now
  a shallow copy of containers, 6 us). Alternating runs on an idle machine (1-minute load
  0.4-1.1 when each started; *old* is commit e096ba6, *asyncio* is the new code with
  `HUBTOOLS_EVENT_LOOP=asyncio`, i.e. the collector and store changes alone):

  | code | run | 1,000: CPU/answer (children) | 5,000: in flight | 5,000: CPU/answer (children) |
  |---|---|---|---|---|
  | old | 1 | 0.98 ms (1.87 ms) | 4,971 | 0.98 ms (1.74 ms) |
  | asyncio | 1 | 0.93 ms (1.92 ms) | 4,992 | 0.70 ms (1.48 ms) |
  | new | 1 | 0.88 ms (1.72 ms) | 4,997 | 0.59 ms (1.34 ms) |
  | old | 2 | 1.00 ms (1.89 ms) | 4,967 | 0.95 ms (1.69 ms) |
  | asyncio | 2 | 1.00 ms (1.96 ms) | 4,992 | 0.68 ms (1.42 ms) |
  | new | 2 | 0.89 ms (1.77 ms) | 4,997 | 0.61 ms (1.39 ms) |

  The old code's 5,000 rows vary most between runs (0.95-1.13 ms on this machine today,
  1.13-1.19 ms under load): how many full collections land in a 12 s window decides them.
- *Streaming keeps memory flat* (`hubtools/teachers/client.py`). huggingface_hub 2.4's
  `AsyncInferenceClient` pushes every streamed response's context on its exit stack and
  releases them only when the client closes: `stream: true` grew the client's RSS by
  ~14 kB per answer (310 -> 815 MB over 35,000 answers at 1,000 in flight; 260 MB flat
  without streaming). A client is now replaced after 128 streamed requests and closed
  once its last request ends: RSS levels off at ~345 MB over 40,000 streamed answers.

Streaming's CPU, measured apart (1,000 in flight, `stream: true`, sim_server's
`--stream-every`, per-thread CPU from /proc over 15 s): 2.76 ms per answer with 20 SSE
events per answer, 8.70 ms with 100, so ~74 us per event on top of ~1.3 ms. Real servers
send an event per token: a 32k-token answer would cost ~2.4 s of client CPU streamed,
against well under 1 ms whole. That is why `stream: false` (with a 3600 s read timeout)
is hubtools' default, and why the tables above use it.

Durability differs between the clients: hubtools
fsyncs each SQLite batch (`synchronous=FULL`); open-r1's loop flushes its JSONL without
fsync; the distilabel driver here writes JSONL batches without fsync.
"""


def reading(args, rows, faults, stacks) -> list[str]:
    """A few sentences read off the tables (numbers from this run)."""
    latency = args.step_ms * args.tokens / 1000
    by = {(r["approach"], r["concurrency"]): r for r in rows if "in_flight_mean" in r}
    top = max(args.levels)
    out = ["## Reading", ""]
    measured = [r for r in rows if "in_flight_mean" in r]
    if measured:
        late = sum(r["server_late_steps"] for r in measured)
        util = max(r["server_core_util"] for r in measured)
        ratio = [r["rps"] / r["rps_max_at_in_flight"] for r in measured if r["in_flight_mean"]]
        out.append(
            f"- The server was never the bottleneck: at most {util:.0%} of its core, {late} late "
            f"steps in all windows, and every row's answers/s is "
            f"{min(ratio):.2f}-{max(ratio):.2f}x the rate its mean in-flight count gives "
            f"(in flight / {latency:g} s; above 1 where in flight was falling during the "
            "window): it answers whatever the client keeps in flight."
        )
    h = by.get(("hubtools", top))
    if h:
        out.append(
            f"- hubtools at {top:,}: {h['in_flight_mean']:,.0f} in flight on average "
            f"({h['saturation']:.0%} of the target), {h['rps']:.0f} answers/s, "
            f"{h['client_cpu_ms']:.2f} ms of CPU per answer in the main process and "
            f"{h['client_cpu_children_ms']:.2f} ms with the verification workers. It is "
            f"CPU-bound: it used {h['client_core_util']:.2f} cores while other jobs on this "
            f"machine used {h['other_cores']:.2f}. Keeping {top:,} in flight with {latency:g} s "
            f"answers means {top / latency:.0f} answers/s, i.e. "
            f"{top / latency * h['client_cpu_children_ms'] / 1000:.1f} cores at this cost per "
            "answer, verification included"
            + (" (the rest of this machine was idle during the window)."
               if h["other_cores"] < 0.2 else " (this machine was shared during the window).")
            + " Real teachers' answers take minutes, not seconds, so the same in-flight count "
            "needs a tenth of that rate or less."
        )  # fmt: skip
    per_level = [by[("hubtools", c)] for c in args.levels if ("hubtools", c) in by]
    if len(per_level) > 1:
        out.append(
            "- hubtools' CPU per answer falls as the load grows ("
            + ", ".join(f"{r['client_cpu_ms']:.2f} ms at {r['concurrency']:,}" for r in per_level)
            + "): what runs per cycle rather than per answer (a verification batch and a "
            "store commit every 100 ms, progress bars, each pass of the event loop) is shared "
            "by more answers."
        )
    o = by.get(("openr1", top))
    if o:
        out.append(
            f"- open-r1's loop holds up to 1,000 but not at {top:,}: {o['in_flight_mean']:,.0f} "
            f"in flight, {o['client_cpu_ms']:.1f} ms of CPU per answer. Each time the task set "
            "is full it calls `asyncio.wait(tasks, FIRST_COMPLETED)` on every task, which "
            "registers and removes a callback on each: O(in flight) per answer."
        )
    d = by.get(("distilabel", top))
    if d:
        out.append(
            f"- distilabel keeps {d['in_flight_mean']:,.0f} in flight whatever the concurrency: "
            "InferenceEndpointsLLM builds a plain AsyncInferenceClient, whose httpx pool holds "
            "100 connections, and never sizes it; the other requests queue inside httpx."
        )
    for r in faults:
        if r["approach"] == "openr1" and r.get("lost"):
            out.append(
                f"- Under {r['fault_rate']:.0%} faults open-r1's loop lost {r['lost']} of "
                f"{r['queries']:,} examples: a 429/503/500 body is parsed as a completion and "
                "the example dies on `KeyError: 'choices'` without a retry (resets are retried "
                "after 10 s)."
            )
        if r["approach"] == "distilabel" and r.get("lost"):
            out.append(
                f"- distilabel stored {r.get('stored_none', 0)} of {r['queries']:,} generations "
                "as None: `agenerate` catches every error, logs a warning and returns None; "
                "nothing retries."
            )
    hub_faults = [r for r in faults if r["approach"] == "hubtools"]
    if hub_faults:
        lost = sum(r.get("lost") or 0 for r in hub_faults)
        out.append(
            f"- hubtools lost {lost} queries under faults: every query ended with one committed "
            "attempt and its verdict (transport failures are retried inside the attempt)."
        )
    hf = next((r for r in stacks if r.get("stack") == "hf" and "cpu_ms" in r), None)
    if h:
        lost = sum(r.get("lost") or 0 for r in hub_faults) if hub_faults else None
        saturated, cheap = h["saturation"] >= 0.95, h["client_cpu_ms"] < 1.0
        out.append(
            "- The issue's target, read off this run: "
            + (f"no lost request under {hub_faults[0]['fault_rate']:.0%} faults: "
               f"{'met' if not lost else f'NOT met ({lost} lost)'}; " if hub_faults else "")
            + f"server saturated at {top:,} in flight: {'met' if saturated else 'NOT met'} "
            f"({h['saturation']:.0%} of the target in flight); under 1 ms of client CPU per "
            f"request: {'met' if cheap else 'NOT met'}, {h['client_cpu_ms']:.2f} ms in the main "
            "process"
            + (f" (huggingface_hub's AsyncInferenceClient alone, stack table: "
               f"{hf['cpu_ms']:.2f} ms per request on the default loop)." if hf else ".")
        )  # fmt: skip
    out += ["", FIXES]
    return out
