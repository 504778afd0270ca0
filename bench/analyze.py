"""``hubtools analyze`` at 100k and 1M responses: time and peak RSS, next to a pandas peer.

For each size: a synthetic run of four teachers, ``size / 4`` queries in the paper's
category shares, every teacher passing every query once, each attempt with a stored
``ResponseScore`` (token counts and ppl drawn from log-normals shaped like the paper's
Figures 4-5). Written straight through the run's own writers (one Parquet part of
queries; attempts, verdicts and scores with ``AttemptStore``). Then, each in its own
process so the peak RSS is that step's alone (its ``VmHWM``):

- ``hubtools analyze RUN --teachers a,b,c,d --out DIR`` (the CLI, figures included);
- the peer: what one writes by hand, ``pandas.read_sql`` of the joined numbers, then
  ``groupby`` for the same medians and means (no figures, no join on common queries).

Usage: ``python bench/analyze.py [--sizes 100000,1000000]``. Writes bench/analyze.json
and bench/analyze.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
CATEGORIES = ["math", "code", "science", "if", "chat", "general"]
WEIGHTS = [0.295, 0.171, 0.084, 0.031, 0.209, 0.21]  # the paper's category shares
# teacher: (median tokens, log-sigma, median ppl) ~ the paper's Figures 4-5
TEACHERS = {"am": (1860, 1.0, 2.15), "qwen3": (2910, 0.8, 2.61), "r1": (2540, 0.7, 2.19),
            "other": (2200, 0.9, 2.4)}  # fmt: skip
BATCH = 20_000
TEXT = "<think>...</think>..."  # the numbers come from the scores; texts are never read


def synthesize(run_dir: Path, responses: int) -> None:
    from hubtools.records import Attempt, ResponseScore, Verdict, query_id_for
    from hubtools.run import QUERY_SCHEMA, Run

    queries = responses // len(TEACHERS)
    run = Run.create(run_dir, {f"teacher:{t}": {"threshold": 0.9} for t in TEACHERS})
    rng = np.random.default_rng(0)
    categories = rng.choice(len(CATEGORIES), size=queries, p=WEIGHTS)
    prompts = [f"Problem {i}: compute {i * 7919 % 100003}." for i in range(queries)]
    ids = [query_id_for([{"role": "user", "content": p}]) for p in prompts]
    table = pa.table(
        {
            "query_id": ids,
            "category": [CATEGORIES[c] for c in categories],
            "source": ["bench/synthetic"] * queries,
            "messages": [[{"role": "user", "content": p}] for p in prompts],
            "reference": [None] * queries,
            "tests": [None] * queries,
            "constraints": [None] * queries,
            "meta": ["{}"] * queries,
        },
        schema=QUERY_SCHEMA,
    )
    pq.write_table(table, run.path / "queries" / "part-00000.parquet")
    del table, prompts
    with run.store() as store:
        for teacher, (median, sigma, ppl_median) in TEACHERS.items():
            for start in range(0, queries, BATCH):
                n = min(BATCH, queries - start)
                tokens = np.maximum(1, rng.lognormal(np.log(median), sigma, n)).astype(int)
                ppl = 1 + (ppl_median - 1) * rng.lognormal(0, 0.3, n)
                keys = [(ids[i], teacher, 0) for i in range(start, start + n)]
                store.add_attempts(Attempt(query_id=q, teacher=t, attempt=a, text=TEXT)
                                   for q, t, a in keys)  # fmt: skip
                store.add_verdicts(Verdict(query_id=q, teacher=t, attempt=a, verifier="bench",
                                           score=1.0) for q, t, a in keys)  # fmt: skip
                store.add_scores(
                    ResponseScore(query_id=q, teacher=t, attempt=a, scorer="bench", backend="bench",
                                  ppl=float(p), scored_tokens=int(k), think_tokens=int(k) - 50,
                                  answer_tokens=50, total_tokens=int(k), token_source="bench")
                    for (q, t, a), k, p in zip(keys, tokens, ppl, strict=True)
                )  # fmt: skip


def measured(args: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """(seconds, peak RSS in MB, stdout) of ``python args`` in its own process; the peak is
    the child's own ``VmHWM``, read as it ends (``ru_maxrss`` keeps the parent's pages)."""
    code = (
        "import runpy, sys\nsys.argv = sys.argv[1:]\ntry:\n    runpy.run_path(sys.argv[0],"
        " run_name='__main__') if sys.argv[0].endswith('.py') else runpy.run_module("
        "'hubtools', run_name='__main__', alter_sys=True)\nexcept SystemExit as e:\n"
        "    assert not e.code, e.code\nprint('VmHWM', next(l.split()[1] for l in"
        " open('/proc/self/status') if l.startswith('VmHWM:')), file=sys.stderr)"
    )
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True,
                          text=True)  # fmt: skip
    seconds = time.monotonic() - start
    if proc.returncode != 0:
        raise RuntimeError(f"step failed ({proc.returncode}): {args}\n{proc.stderr[-2000:]}")
    return seconds, int(proc.stderr.rsplit("VmHWM", 1)[1].split()[0]) / 1024, proc.stdout


PEER = """
import sqlite3, sys
import pandas as pd
db = sys.argv[1]
frame = pd.read_sql(
    "SELECT a.query_id, a.teacher, s.total_tokens, s.ppl FROM attempts a JOIN verdicts v"
    " USING (query_id, teacher, attempt) JOIN scores s USING (query_id, teacher, attempt)"
    " WHERE v.score >= 0.9", sqlite3.connect(db))
print(frame.groupby("teacher")[["total_tokens", "ppl"]].agg(["mean", "median"]))
"""


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bench_releases(top: Path, responses: int, env: dict[str, str]) -> dict:
    """The same synthetic answers as four parallel releases on a local Hub, then
    ``analyze --releases`` with a tokenizer (release rows carry no token counts)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from tiny_models import make_tokenizer

    run = top / "release-run"
    synthesize(run, responses)
    port = free_port()
    hub = subprocess.Popen([sys.executable, "-m", "hubtools", "hub", "serve", "--root",
                            str(top / "hub"), "--port", str(port)], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        token = subprocess.run([sys.executable, "-m", "hubtools", "hub", "token", "create",
                                "--root", str(top / "hub"), "--user", "bench", "--write",
                                "--init"], env=env, capture_output=True, text=True,
                               check=True).stdout.strip()  # fmt: skip
        time.sleep(2)
        env = {**env, "HF_ENDPOINT": f"http://127.0.0.1:{port}", "HF_TOKEN": token,
               "HF_HUB_DISABLE_XET": "1", "HF_HOME": str(top / "hf"),
               "HF_HUB_DISABLE_PROGRESS_BARS": "1"}  # fmt: skip
        made = 0.0
        for teacher in TEACHERS:
            folder = top / f"release-{teacher}"
            build_s, _, _ = measured(["-m", "build", str(run), "--teacher", teacher,
                                      "--parallel", ",".join(TEACHERS), "--out", str(folder),
                                      "--quiet"], env)  # fmt: skip
            publish_s, _, _ = measured(["-m", "publish", str(folder), "--repo",
                                        f"bench/{teacher}", "--version", "1.0.0"], env)  # fmt: skip
            made += build_s + publish_s
        tokenizer = make_tokenizer(top / "tokenizer")
        spec = ",".join(f"bench/{t}@v1.0.0" for t in TEACHERS)
        seconds, rss, out = measured(["-m", "analyze", "--releases", spec, "--tokenizer",
                                      str(tokenizer), "--out", str(top / "release-out"),
                                      "--quiet", "--json"], env)  # fmt: skip
        result = json.loads(out)
        return {"responses": result["responses"], "queries": result["instances"],
                "build_publish_s": made, "analyze_s": seconds, "analyze_rss_mb": rss}  # fmt: skip
    finally:
        hub.terminate()
        hub.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--release-sizes", default="1000000", help="Responses, as releases.")
    parser.add_argument("--keep", action="store_true", help="Keep the synthetic runs.")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    top = Path(tempfile.mkdtemp(prefix="hubtools-bench-analyze-"))
    peer = top / "peer.py"
    peer.write_text(PEER)
    results, releases = [], []
    try:
        for size in (int(s) for s in args.sizes.split(",")):
            run = top / f"run-{size}"
            began = time.monotonic()
            synthesize(run, size)
            made = time.monotonic() - began
            db = run / "db" / "shard-00000-of-00001.sqlite"
            seconds, rss, out = measured(
                ["-m", "analyze", str(run), "--teachers", ",".join(TEACHERS), "--out",
                 str(top / f"out-{size}"), "--quiet", "--json"], env,
            )  # fmt: skip
            result = json.loads(out)
            peer_s, peer_rss, _ = measured([str(peer), str(db)], env)
            stats = json.loads((top / f"out-{size}" / "stats.json").read_text())
            results.append({
                "responses": result["responses"], "queries": result["instances"],
                "store_mb": db.stat().st_size / 1e6, "synthesize_s": made,
                "analyze_s": seconds, "analyze_rss_mb": rss, "peer_s": peer_s,
                "peer_rss_mb": peer_rss,
                "medians": {t: stats["all"]["teachers"][t]["length"]["median"] for t in TEACHERS},
            })  # fmt: skip
            print(json.dumps(results[-1]), flush=True)
            if not args.keep:
                shutil.rmtree(run)
        for size in (int(s) for s in args.release_sizes.split(",") if s):
            releases.append(bench_releases(top / f"releases-{size}", size, env))
            print(json.dumps(releases[-1]), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(top, ignore_errors=True)
    machine = {
        "cores": os.cpu_count(),
        "cpu": next(
            (
                line.split(":", 1)[1].strip()
                for line in open("/proc/cpuinfo")
                if line.startswith("model name")
            ),
            platform.processor(),
        ),  # fmt: skip
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9),
        "python": platform.python_version(),
        "load": os.getloadavg()[0],
    }
    (ROOT / "bench" / "analyze.json").write_text(
        json.dumps({"machine": machine, "results": results, "releases": releases}, indent=2) + "\n"
    )
    (ROOT / "bench" / "analyze.md").write_text(report(machine, results, releases))
    print(json.dumps(machine))


def report(machine: dict, results: list[dict], releases: list[dict]) -> str:
    lines = [
        "# analyze: time and peak memory at 100k and 1M responses",
        "",
        f"Machine: {machine['cores']} cores ({machine['cpu']}), {machine['memory_gb']} GB RAM, "
        f"Python {machine['python']}; 1-minute load average {machine['load']:.2f} when the "
        "report was written (other work shared the cores). Produced by "
        "`python bench/analyze.py`; raw numbers in `analyze.json`.",
        "",
        "Data: a synthetic run of four teachers, every one passing every query once, each "
        "answer with a stored `ResponseScore` (token counts and ppl from log-normals shaped "
        "like the paper's Figures 4-5); categories in the paper's shares. Each step runs in "
        "its own process; peak RSS is that process's own `VmHWM`. `analyze` is the CLI, "
        "start-up, the join on common queries, the four figures, `stats.json` and "
        "`report.md` included.",
        "",
        "| responses | queries | run store | analyze | responses/s | analyze peak RSS "
        "| peer (pandas) | peer peak RSS |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['responses']:,} | {r['queries']:,} | {r['store_mb']:,.0f} MB "
            f"| {r['analyze_s']:.1f} s | {r['responses'] / r['analyze_s']:,.0f} "
            f"| {r['analyze_rss_mb']:,.0f} MB | {r['peer_s']:.1f} s | {r['peer_rss_mb']:,.0f} MB |"
        )
    lines += ["", NOTES, ""]
    if releases:
        lines += [
            "## From published releases",
            "",
            "The same synthetic answers built as four parallel releases (`build --parallel`, "
            "which draws the figures into `assets/` too) and published to a local Hub on "
            "loopback, then `analyze --releases A@v1.0.0,...,D@v1.0.0 --tokenizer TINY`: "
            "every row streamed with `load_dataset(..., streaming=True)`, its prompt hashed "
            "for the join, its think and answer counted by a tiny byte-level BPE tokenizer "
            "(release rows carry no token counts).",
            "",
            "| responses | queries | build + publish (4 releases) | analyze --releases "
            "| responses/s | peak RSS |",
            "|---|---|---|---|---|---|",
        ]
        for r in releases:
            lines.append(
                f"| {r['responses']:,} | {r['queries']:,} | {r['build_publish_s']:.0f} s "
                f"| {r['analyze_s']:.1f} s | {r['responses'] / r['analyze_s']:,.0f} "
                f"| {r['analyze_rss_mb']:,.0f} MB |"
            )
        lines += ["", RELEASE_NOTES]
    return "\n".join(lines) + "\n"


RELEASE_NOTES = """Per row, a release keeps a 32-byte join key and six numbers in numpy chunks
(~80 MB for 1M rows), whatever the length of the texts, which stream in batches of
1,000 rows. Most of the peak is the libraries: `datasets`, pyarrow and transformers
loaded, the same command on 8,000 rows peaked at 431 MB (a trial run of this script).
The time is the streaming reader (column batches of every row, texts included), the
prompt hash of the join and the tokenizer (its Rust batch encoder); on real reasoning
traces, thousands of tokens each, the tokenizer dominates. `build + publish` includes
each parallel build's own teacher comparison (an `analyze` of the run, ~25 s at 1M
responses) and the read-back of every config by `publish`."""

NOTES = """The peer is what one writes by hand: `pandas.read_sql` of every passed answer's
numbers, then `groupby` for means and medians. It draws no figure, does not restrict
to the queries every teacher passed, nor pick one answer per query, and holds
every row in a DataFrame: its memory grows with the data. `analyze` keeps 8 bytes per
response and number (numpy-compatible `array`s) and streams the run store a page of
2,000 queries at a time, so its peak grows by tens of MB for ten times the responses;
most of it is the libraries (numpy, pyarrow, matplotlib) and SQLite's page cache.
Where the time goes (cProfile at 200k responses, 8 s under load): reading the first
passing attempt per teacher and query, a paged SQL join per teacher, ~30%; the Python
bookkeeping per response (merge join, appending to the arrays) ~25%; drawing the four
figures and writing the files ~2 s whatever the size; the missing-count check, a scan
of the passes and their scores, ~10%. Reading every teacher in one paged pass instead of
one per teacher would save part of the SQL time (each per-teacher pass walks the
primary-key index of all teachers). Texts are never read when every answer has a
stored count; when a tokenizer must count, the tokenizer's speed bounds the run."""


if __name__ == "__main__":
    main()
