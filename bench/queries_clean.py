"""Throughput and peak memory of `hubtools queries clean`, next to datasketch's MinHashLSH.

    python bench/queries_clean.py --sizes 200000 2000000 --datasketch-max 200000

For each size N: a synthetic pool of N queries (bench/queries_synthetic.py: Zipf words,
a number per query, ~10% planted exact copies, one-word edits and number variants) is
built once under --work; then, each in a fresh process whose whole process tree is
sampled for resident memory (psutil, every 50 ms):

- ours: `hubtools queries clean --benchmarks none` (filters, exact dedup, MinHash/LSH near
  dedup, the removed rows and the kept query set written) with its default workers;
- datasketch: the same shingles (word 3-grams of the lower-cased text) through
  `MinHash.bulk` (its vectorised path) and `MinHashLSH` (threshold 0.7, 80 permutations as
  ours), each query looked up before it is inserted (greedy, as ours).

Decontamination is measured on its own (it needs benchmarks): the n-gram index of the
real benchmark problems in ../shared/data/benchmarks against the synthetic tokens.
Results go to --out (JSON); bench/queries_clean.md is written from them by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def build_pool(work: Path, size: int) -> Path:
    """A run directory whose pool holds ``size`` synthetic queries (built once)."""
    from queries_synthetic import synthetic_queries

    from hubtools.run import Run

    base = work / f"pool-{size}"
    if (base / "pulled" / "queries").exists():
        return base
    Run.create(base)
    pool = Run.create(base / "pulled")
    queries = synthetic_queries(size)
    while True:  # parts of 200k, as pull commits chunks
        chunk = [q for _, q in zip(range(200_000), queries, strict=False)]
        if not chunk:
            return base
        pool.add_queries(chunk)


def measure(command: list[str]) -> dict:
    """Run ``command``; wall time and the peak summed RSS of its process tree."""
    start = time.monotonic()
    proc = psutil.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            try:
                tree = [proc, *proc.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
            except psutil.Error:
                pass
            time.sleep(0.05)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    out, err = proc.communicate()
    done.set()
    thread.join()
    if proc.returncode:
        raise SystemExit(f"{command} failed:\n{err[-3000:]}")
    return {"seconds": round(time.monotonic() - start, 1), "peak_rss_mb": round(peak / 2**20),
            "stdout": out}  # fmt: skip


def run_ours(work: Path, size: int) -> dict:
    pool = build_pool(work, size)
    run = work / f"run-{size}"
    subprocess.run(["rm", "-rf", str(run)], check=True)
    run.mkdir()
    from hubtools.run import Run

    Run.create(run)
    (run / "pulled").symlink_to(pool / "pulled")
    result = measure(
        [sys.executable, "-m", "hubtools", "queries", "clean", "--run", str(run),
         "--benchmarks", "none", "--quiet", "--json"]
    )  # fmt: skip
    funnel = json.loads(result.pop("stdout"))
    result["queries_per_s"] = round(size / result["seconds"])
    result["removed"] = {f["name"]: f["removed"] for f in funnel["filters"] if f["removed"]}
    result["quality"] = quality_ours(run, size)
    return result


def planted(pool: Path) -> list[str]:
    """The planted label of each pool row, in pool order."""
    import pyarrow.parquet as pq

    labels = []
    for part in sorted((pool / "pulled" / "queries").glob("part-*.parquet")):
        for meta in pq.read_table(part, columns=["meta"])["meta"].to_pylist():
            labels.append(json.loads(meta).get("planted", "original"))
    return labels


def quality_ours(run: Path, size: int) -> dict:
    import pyarrow.parquet as pq

    labels = dict(zip(_ids(run / "pulled"), planted(run), strict=True))
    removed = pq.read_table(run / "clean" / "removed.parquet", columns=["query_id"])
    return score(labels, {q for q in removed["query_id"].to_pylist()})


def _ids(pool: Path) -> list[str]:
    import pyarrow.parquet as pq

    ids = []
    for part in sorted((pool / "queries").glob("part-*.parquet")):
        ids += pq.read_table(part, columns=["query_id"])["query_id"].to_pylist()
    return ids


def score(labels: dict[str, str], flagged: set[str]) -> dict:
    """Recall on planted exact/near copies; number variants and originals flagged."""
    out = {}
    for kind in ("exact", "near", "number", "original"):
        mine = [q for q, k in labels.items() if k == kind]
        out[f"{kind}_flagged"] = round(sum(q in flagged for q in mine) / max(len(mine), 1), 4)
    return out


def run_datasketch(work: Path, size: int) -> dict:
    build_pool(work, size)
    result = measure([sys.executable, __file__, "_datasketch", str(work), str(size)])
    stats = json.loads(result.pop("stdout"))
    result["queries_per_s"] = round(size / result["seconds"])
    result["quality"] = stats
    return result


def _datasketch(work: Path, size: int) -> None:
    """Child process: datasketch over the pool's texts; prints the quality as JSON."""
    import pyarrow.parquet as pq
    from datasketch import MinHash, MinHashLSH

    pool = work / f"pool-{size}"
    words = re.compile(r"[^\W_]+")
    texts, ids = [], []
    for part in sorted((pool / "pulled" / "queries").glob("part-*.parquet")):
        table = pq.read_table(part, columns=["query_id", "messages"])
        ids += table["query_id"].to_pylist()
        texts += [m[-1]["content"] for m in table["messages"].to_pylist()]
    lsh = MinHashLSH(threshold=0.7, num_perm=80)
    flagged = set()
    batch = 10_000
    for start in range(0, len(texts), batch):
        shingles = []
        for text in texts[start : start + batch]:
            tokens = words.findall(text.lower())
            grams = {" ".join(tokens[k : k + 3]) for k in range(max(len(tokens) - 2, 1))}
            shingles.append([g.encode() for g in grams])
        hashes = MinHash.bulk(shingles, num_perm=80)
        with lsh.insertion_session() as session:
            for offset, minhash in enumerate(hashes):
                key = ids[start + offset]
                if lsh.query(minhash):
                    flagged.add(key)
                else:
                    session.insert(key, minhash)
    labels = dict(zip(ids, planted(pool), strict=True))
    print(json.dumps(score(labels, flagged)))


def run_decontamination(work: Path, size: int) -> dict:
    """N-gram decontamination against the real benchmarks, in this process."""
    import numpy as np
    import pyarrow.parquet as pq

    from hubtools.queries.decontaminate import NgramContamination
    from hubtools.queries.text import conversation_texts, lowered, tokenize

    shared = HERE.parent.parent / "shared" / "data" / "benchmarks"
    problems = []
    for name, field in (("aime_2024", "problem"), ("aime_2025", "problem"),
                        ("math500", "problem"), ("ifeval_input_data", "prompt"),
                        ("livecodebench_v5_prompts", "prompt")):  # fmt: skip
        problems += [json.loads(line)[field] for line in (shared / f"{name}.jsonl").open()]
    start = time.monotonic()
    index = NgramContamination(problems)
    built = time.monotonic() - start
    pool = build_pool(work, size)
    seconds, flagged = 0.0, 0
    for part in sorted((pool / "pulled" / "queries").glob("part-*.parquet")):
        for batch in pq.ParquetFile(part).iter_batches(batch_size=10_000, columns=["messages"]):
            tokens = tokenize(lowered(conversation_texts(batch.column(0), roles=False)))
            tick = time.monotonic()
            flagged += int((index.find(tokens).item >= 0).sum())
            seconds += time.monotonic() - tick
    return {"problems": len(problems), "index_seconds": round(built, 2),
            "find_seconds": round(seconds, 1), "queries_per_s": round(size / seconds),
            "flagged": int(np.int64(flagged))}  # fmt: skip


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), "?")  # fmt: skip
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total
            / 2**30), "load_before": [round(x, 2) for x in os.getloadavg()],
            "python": sys.version.split()[0]}  # fmt: skip


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_datasketch":
        _datasketch(Path(sys.argv[2]), int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[200_000, 2_000_000])
    parser.add_argument("--datasketch-max", type=int, default=200_000)
    parser.add_argument("--work", type=Path, default=Path("/tmp/hubtools-bench-queries"))
    parser.add_argument("--out", type=Path, default=HERE / "queries_clean.json")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    results = {"machine": machine(), "sizes": {}}
    for size in args.sizes:
        entry = {"ours": run_ours(args.work, size)}
        print(size, "ours", entry["ours"], flush=True)
        entry["load_after_ours"] = [round(x, 2) for x in os.getloadavg()]
        if size <= args.datasketch_max:
            entry["datasketch"] = run_datasketch(args.work, size)
            print(size, "datasketch", entry["datasketch"], flush=True)
        entry["decontamination"] = run_decontamination(args.work, size)
        print(size, "decontamination", entry["decontamination"], flush=True)
        results["sizes"][str(size)] = entry
    results["load_after"] = [round(x, 2) for x in os.getloadavg()]
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
