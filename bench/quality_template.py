"""The template filter (token 20-grams in more than 20 responses) at 100k, 1M, 2M responses.

Each size runs in its own process, so its peak RSS (``VmHWM``) is its own. Responses are
synthetic and streamed (never held): 120-280 words drawn from a 30,000-word vocabulary,
with 0.5% carrying one of 10 planted 30-token boilerplates, so the flagged set is known
and checked (recall and precision). Results: quality_template.json and .md beside this.

    python bench/quality_template.py [--sizes 100000,1000000,2000000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PLANT_EVERY = 200  # 0.5%


def responses(n: int, seed: int = 0):
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(30_000)]
    boilers = [" ".join(f"tpl{k}x{i}" for i in range(30)) for k in range(10)]
    for i in range(n):
        words = rng.choices(vocab, k=rng.randint(120, 280))
        if i % PLANT_EVERY == 0:
            words.insert(rng.randrange(len(words)), boilers[(i // PLANT_EVERY) % 10])
        yield f"r{i}", " ".join(words)


def vm_hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def one(n: int) -> dict:
    from hubtools.quality.template import count_templates

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as work:
        found = count_templates(responses(n), n=20, max_count=20, workdir=work)
    seconds = time.perf_counter() - started
    planted = {f"r{i}" for i in range(0, n, PLANT_EVERY)}
    hit = len(planted & set(found.flagged))
    gen_started = time.perf_counter()
    for _ in responses(min(n, 100_000)):
        pass
    gen_s = (time.perf_counter() - gen_started) * n / min(n, 100_000)
    return {
        "responses": n,
        "seconds": round(seconds, 1),
        "generate_seconds_est": round(gen_s, 1),
        "responses_per_s": round(n / seconds),
        "ngram_pairs": found.ngrams,
        "spill_gb": round(found.spill_bytes / 1e9, 2),
        "peak_rss_mb": round(vm_hwm_mb(), 1),
        "flagged": len(found.flagged),
        "recall": hit / len(planted),
        "precision": hit / max(1, len(found.flagged)),
    }


def peer(n: int) -> dict:
    """The usual in-memory way: a Counter of every response's distinct 20-grams."""
    from collections import Counter

    from hubtools.quality.template import tokens

    started = time.perf_counter()
    counts: Counter[int] = Counter()
    for _, text in responses(n):
        words = tokens(text)
        counts.update({hash(tuple(words[i : i + 20])) for i in range(len(words) - 19)})
    frequent = {h for h, c in counts.items() if c > 20}
    flagged = 0
    for _, text in responses(n):
        words = tokens(text)
        flagged += any(hash(tuple(words[i : i + 20])) in frequent for i in range(len(words) - 19))
    return {
        "responses": n,
        "method": "peer: collections.Counter in memory",
        "seconds": round(time.perf_counter() - started, 1),
        "peak_rss_mb": round(vm_hwm_mb(), 1),
        "distinct_ngrams": len(counts),
        "flagged": flagged,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="100000,1000000,2000000")
    parser.add_argument("--one", type=int)
    parser.add_argument("--peer", type=int, help="run only the peer at this size, print JSON")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one)))
        return
    if args.peer:
        print(json.dumps(peer(args.peer)))
        return
    results = []
    for n in (int(s) for s in args.sizes.split(",")):
        out = subprocess.run(
            [sys.executable, __file__, "--one", str(n)], capture_output=True, text=True, check=True
        )
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(results[-1], flush=True)
    for n in (100_000, 200_000):  # the peer grows with the data: two sizes show the slope
        out = subprocess.run(
            [sys.executable, __file__, "--peer", str(n)], capture_output=True, text=True, check=True
        )
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(results[-1], flush=True)
    machine = {
        "cpu": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "note": "2 vCPUs shared with other jobs; one process, one core used",
    }
    (HERE / "quality_template.json").write_text(
        json.dumps({"machine": machine, "results": results}, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
