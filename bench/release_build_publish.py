"""Build + publish throughput and peak memory at 100k and 1M rows of long reasoning texts.

For each size: synthesize a run store straight through the run's own writers (queries as
one Parquet part, attempts and verdicts with ``AttemptStore``), then time, each in its
own process so peak RSS is that step's alone (its ``VmHWM``):

- ``hubtools build`` (streaming Parquet writer),
- ``hubtools publish`` to a local Hub on loopback (hash, LFS upload, one commit, then
  ``load_dataset`` of every config at the new commit with the content check, then tag),
- the peer: ``datasets.Dataset.from_generator`` + ``push_to_hub`` per config, the usual
  way to publish a dataset from Python (no verification, no version tag), 100k only.

Usage: ``python bench/release_build_publish.py [--sizes 100000,1000000] [--words 220]``.
Writes bench/release_build_publish.md.
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


def synthesize(run_dir: Path, rows: int, words: int) -> int:
    """A run with ``rows`` queries, each with one passing attempt of ~``words`` words."""
    from hubtools.records import Attempt, Verdict, query_id_for
    from hubtools.run import QUERY_SCHEMA, Run

    run = Run.create(run_dir, {"teacher:bench": {"model": "bench/teacher", "threshold": 0.9}})
    rng = np.random.default_rng(0)
    vocab = np.array([f"w{i:x}" + "abcdefg"[i % 7 :] for i in range(5000)], dtype=object)
    categories = rng.choice(len(CATEGORIES), size=rows, p=WEIGHTS)
    prompts = [
        f"Problem {i}: compute the value of expression {i * 7919 % 100003}." for i in range(rows)
    ]
    ids = [query_id_for([{"role": "user", "content": p}]) for p in prompts]
    table = pa.table(
        {
            "query_id": ids,
            "category": [CATEGORIES[c] for c in categories],
            "source": ["bench/synthetic"] * rows,
            "messages": [[{"role": "user", "content": p}] for p in prompts],
            "reference": [str(i) for i in range(rows)],
            "tests": [None] * rows,
            "constraints": [None] * rows,
            "meta": ["{}"] * rows,
        },
        schema=QUERY_SCHEMA,
    )
    pq.write_table(table, run.path / "queries" / "part-00000.parquet")
    del table, prompts
    text_bytes = 0
    with run.store() as store:
        for start in range(0, rows, 10_000):
            count = min(10_000, rows - start)
            picks = vocab[rng.integers(0, len(vocab), size=(count, words))]
            attempts, verdicts = [], []
            for k in range(count):
                i = start + k
                think = " ".join(picks[k])
                answer = f"The answer is \\boxed{{{i}}}."
                text_bytes += len(think) + len(answer)
                attempts.append(Attempt(query_id=ids[i], teacher="bench", attempt=0, think=think,
                                        answer=answer, completion_tokens=words * 2))  # fmt: skip
                verdicts.append(Verdict(query_id=ids[i], teacher="bench", attempt=0,
                                        verifier="math-verify", score=1.0))  # fmt: skip
            store.add_attempts(attempts)
            store.add_verdicts(verdicts)
    return text_bytes


def measured(code: str, env: dict[str, str]) -> tuple[float, float, str]:
    """(seconds, peak RSS in MB, stdout) of ``python -c code`` in its own process.

    The peak is the child's own ``VmHWM``, read by the child as it ends. ``ru_maxrss``
    from ``wait4`` is not used: it keeps the high-water mark from before ``exec``, when
    the forked child still counted the bench's own pages (~1 GB after synthesizing 1M
    rows), which made build look like it grew with the data.
    """
    start = time.monotonic()
    code += (
        "\nimport sys\nprint('VmHWM', next(l.split()[1] for l in open('/proc/self/status')"
        " if l.startswith('VmHWM:')), file=sys.stderr)"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    seconds = time.monotonic() - start
    if proc.returncode != 0:
        raise RuntimeError(f"step failed ({proc.returncode}): {code}\n{proc.stderr[-2000:]}")
    peak_kb = int(proc.stderr.rsplit("VmHWM", 1)[1].split()[0])
    return seconds, peak_kb / 1024, proc.stdout


def start_hub(root: Path, port: int) -> tuple[subprocess.Popen, str]:
    cmd = [
        sys.executable,
        "-m",
        "hubtools",
        "hub",
        "serve",
        "--root",
        str(root),
        "--port",
        str(port),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    token = subprocess.run([sys.executable, "-m", "hubtools", "hub", "token", "create", "--root",
                            str(root), "--user", "bench", "--write", "--init"], capture_output=True,
                           text=True, check=True).stdout.strip()  # fmt: skip
    time.sleep(2)
    return proc, token


def bench_size(rows: int, words: int, work: Path, port: int, peer: bool) -> dict:
    run_dir, out_dir = work / "run", work / "release"
    t0 = time.monotonic()
    text_bytes = synthesize(run_dir, rows, words)
    synth_s = time.monotonic() - t0
    hub_proc, token = start_hub(work / "hub", port)
    env = {**os.environ, "HF_ENDPOINT": f"http://127.0.0.1:{port}", "HF_HUB_DISABLE_XET": "1",
           "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
           "HF_HOME": str(work / "hf"), "HF_TOKEN": token}  # fmt: skip
    try:
        build_s, build_mb, out = measured(
            "from hubtools.release.build import build; import json; "
            f"r = build({str(run_dir)!r}, teacher='bench', out={str(out_dir)!r}, progress=False); "
            "print(json.dumps(r.to_dict()))",
            env,
        )
        built = json.loads(out.strip().splitlines()[-1])
        pub_s, pub_mb, out = measured(
            "from hubtools.release.publish import publish; "
            f"print(publish({str(out_dir)!r}, repo='bench/release', version='1.0.0').action)",
            env,
        )
        assert out.strip() == "published", out
        result = {
            "rows": rows, "text_mb": text_bytes / 1e6, "synth_s": synth_s,
            "parquet_mb": built["bytes"] / 1e6, "files": len(built["files"]),
            "build_s": build_s, "build_rss_mb": build_mb,
            "publish_s": pub_s, "publish_rss_mb": pub_mb,
        }  # fmt: skip
        if peer:
            shutil.rmtree(work / "hf", ignore_errors=True)
            peer_s, peer_mb, _ = measured(_PEER.replace("RUN", repr(str(run_dir))), env)
            result.update(peer_s=peer_s, peer_rss_mb=peer_mb)
        return result
    finally:
        hub_proc.terminate()
        hub_proc.wait()


_PEER = """
import pathlib, tempfile
from datasets import Dataset, Features, Value
from hubtools.records import RELEASE_FEATURES
from hubtools.release.rows import QueryIndex, passed_in_all, release_row, with_queries
from hubtools.run import Run

run = Run.open(RUN)

def rows():
    with tempfile.TemporaryDirectory() as tmp, run.store() as store:
        index = QueryIndex(run, pathlib.Path(tmp) / "q.sqlite")
        for query, passed in with_queries(passed_in_all(store, ["bench"], 0.9), index):
            attempt, verdict = passed["bench"]
            row = release_row(query, attempt, verdict, system="", model_name="bench/teacher")
            yield {**row, "category": query.category.value}
        index.close()

features = Features({**RELEASE_FEATURES, "category": Value("string")})
ds = Dataset.from_generator(rows, features=features)
for category in sorted(set(ds.unique("category"))):
    part = ds.filter(lambda c: c == category, input_columns="category", batched=False)
    part.remove_columns("category").push_to_hub("bench/peer", config_name=category)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--words", type=int, default=220)
    parser.add_argument("--port", type=int, default=8791)
    parser.add_argument("--out", default=str(ROOT / "bench" / "release_build_publish.md"))
    args = parser.parse_args()
    results = []
    for rows in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory(prefix="hubtools-bench-", dir="/var/tmp") as work:
            result = bench_size(rows, args.words, Path(work), args.port, peer=rows <= 100_000)
            print(json.dumps(result), flush=True)
            results.append(result)
    Path(args.out).write_text(report(results, args.words))


def report(results: list[dict], words: int) -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), platform.processor())  # fmt: skip
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    lines = [
        "# Release: build + publish throughput and peak memory",
        "",
        f"Machine: {os.cpu_count()} cores ({cpu}), {memory:.0f} GB RAM, Python "
        f"{platform.python_version()}, Linux {platform.release()}. Local Hub on loopback "
        "(fsync on), same machine. Produced by `python bench/release_build_publish.py`; "
        f"1-minute load average {os.getloadavg()[0]:.2f} when the report was written.",
        "",
        f"Rows: one verified answer per query, reasoning of {words} random words from a "
        "5,000-word vocabulary (~1.5 KB, compresses ~3x like real text), categories in the "
        "paper's shares. Each step runs in its own process; peak RSS is that process's own "
        "`VmHWM` (see `measured`). `publish` includes hashing the folder, the LFS uploads, "
        "the commit, reading every config back with `load_dataset` (download + Arrow conversion + "
        "content hash: the `all` config reads every file a second time) and the tag.",
        "",
        "| rows | reasoning text | Parquet | files | build | build rows/s | build peak RSS | "
        "publish (incl. read-back) | publish peak RSS |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['rows']:,} | {r['text_mb']:,.0f} MB | {r['parquet_mb']:,.0f} MB | {r['files']} "
            f"| {r['build_s']:.1f} s | {r['rows'] / r['build_s']:,.0f} "
            f"| {r['build_rss_mb']:,.0f} MB "
            f"| {r['publish_s']:.1f} s | {r['publish_rss_mb']:,.0f} MB |"
        )
    peers = [r for r in results if "peer_s" in r]
    if peers:
        lines += ["", "Peer (`Dataset.from_generator` + `push_to_hub`, one call per config, no "
                  "read-back, no tag; rows generated by the same row code):", "",
                  "| rows | build + push | peak RSS | hubtools build + publish | "
                  "peak RSS (max of the two) |",
                  "|---|---|---|---|---|"]  # fmt: skip
        for r in peers:
            lines.append(
                f"| {r['rows']:,} | {r['peer_s']:.1f} s | {r['peer_rss_mb']:,.0f} MB | "
                f"{r['build_s'] + r['publish_s']:.1f} s | "
                f"{max(r['build_rss_mb'], r['publish_rss_mb']):,.0f} MB |"
            )
    lines += ["", "Raw results:", "", "```json", *[json.dumps(r) for r in results], "```", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
