"""Start-up cost of every verb: CPU and wall time to exit, before and after a change.

Runs each verb as a user does (`python -m hubtools ...`, fresh interpreter) N times for
each tree: this checkout ("after") and a git ref extracted to a temp folder ("before",
default fba5a52, the code issue 10 measured). Runs of the two trees alternate, so load
from other work on the machine falls on both alike; medians are reported. CPU time is
the child's user+sys from `wait4` (its rusage), which load inflates far less than wall
time. A fresh interpreter per verb also reports the heavy libraries it imported.

    python bench/startup.py [--reps 15] [--before fba5a52] [--out bench/startup.md]
    python bench/startup.py --from-json bench/startup.json   # rewrite the report only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUDGET_S = 0.3  # CPU seconds a light verb may take to start (issue 10, item 10)
HEAVY = ("datasets", "torch", "transformers", "math_verify", "lm_eval", "nltk", "sympy",
         "gradio", "pandas", "pyarrow", "huggingface_hub")  # fmt: skip
PROBE = """
import json, runpy, sys
report, sys.argv = sys.argv[1], ["hubtools", *sys.argv[2:]]
try:
    runpy.run_module("hubtools", run_name="__main__", alter_sys=True)
except SystemExit:
    pass
json.dump(sorted({m.split(".")[0] for m in sys.modules}), open(report, "w"))
"""


def cases(work: Path, verbs: list[tuple[str, ...]]) -> list[dict]:
    """What is timed: light verbs (held to the budget), then heavier verbs to first error."""
    run = str(work / "run")
    light = [
        ("--help", ["--help"]),
        ("--version", ["--version"]),
        ("status (tiny run)", ["status", run]),
        ("status --json (tiny run)", ["status", run, "--json"]),
        ("status (tiny run without stored counts)", ["status", str(work / "old-run")]),
        ("hub token create", ["hub", "token", "create", "--root", str(work / "hub"),
                              "--user", "ann"]),
        ("hub env", ["hub", "env"]),
    ]  # fmt: skip
    light += [(f"{' '.join(v)} --help", [*v, "--help"]) for v in verbs if v]
    heavy = [
        ("build (tiny run, to exit)",
         ["build", run, "--teacher", "r1", "--out", str(work / "rel-{i}"), "--quiet"]),
        ("verify --input missing.jsonl (to the error)",
         ["verify", "--input", str(work / "missing.jsonl"), "--output", str(work / "x.jsonl")]),
        ("verify RUN --teacher r1 (nothing to verify)", ["verify", run, "--teacher", "r1"]),
        ("import missing.jsonl (to the error)",
         ["import", str(work / "missing.jsonl"), "--run", run, "--teacher", "r1"]),
        ("queries add missing.jsonl (to the error)",
         ["queries", "add", str(work / "missing.jsonl"), "--run", run]),
        ("generate --config missing.yaml (to the error)",
         ["generate", run, "--config", str(work / "missing.yaml")]),
    ]  # fmt: skip
    return [{"name": n, "args": a, "light": True} for n, a in light] + [
        {"name": n, "args": a, "light": False} for n, a in heavy
    ]


def verbs_of_cli() -> list[tuple[str, ...]]:
    """Every command and group of this checkout's CLI, as the words that name it."""
    import typer.main

    sys.path.insert(0, str(ROOT))
    from hubtools.cli import app

    def walk(command, path: tuple[str, ...]) -> list[tuple[str, ...]]:
        found = [path]
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            found += walk(sub, (*path, name))
        return found

    return walk(typer.main.get_command(app), ())


def tiny_run(work: Path) -> None:
    """Three queries and two imported answers, made with this checkout's CLI."""
    (work / "q.jsonl").write_text(
        '{"prompt": "What is 1+1?", "category": "math", "reference": "2", "source": "t"}\n'
        '{"prompt": "Say hi", "category": "chat", "source": "t"}\n'
        '{"prompt": "Print 1", "category": "code", "source": "t"}\n'
    )
    (work / "out.jsonl").write_text(
        '{"prompt": "What is 1+1?", "category": "math", "reference": "2", "source": "t", '
        '"output": "<think>1+1=2</think>$\\\\boxed{2}$", "score": 1.0}\n'
        '{"prompt": "Say hi", "category": "chat", "source": "t", "output": "hi", "score": 1.0}\n'
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for args in (["queries", "add", "q.jsonl", "--run", "run"],
                 ["import", "out.jsonl", "--run", "run", "--teacher", "r1"]):  # fmt: skip
        subprocess.run([sys.executable, "-m", "hubtools", *args], cwd=work, env=env, check=True,
                       capture_output=True)  # fmt: skip
    # A run as made before the per-part counts were stored: status reads the parts.
    shutil.copytree(work / "run", work / "old-run")
    for counts in (work / "old-run" / "queries").glob("*.categories.json"):
        counts.unlink()


def extract(ref: str, dest: Path) -> Path:
    """The tree of `ref` (the package and its dataset_cards/) in `dest`, repo untouched."""
    blob = subprocess.run(["git", "archive", ref], cwd=ROOT, check=True,
                          capture_output=True).stdout  # fmt: skip
    with tarfile.open(fileobj=BytesIO(blob)) as tar:
        tar.extractall(dest, filter="data")
    return dest


def once(tree: Path, args: list[str], cwd: Path) -> tuple[float, float, int]:
    """One start of `python -m hubtools ARGS` from `tree`: (CPU s, wall s, exit code)."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "hubtools", *args], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_utime + usage.ru_stime, wall, proc.returncode


def imported(tree: Path, args: list[str], cwd: Path) -> list[str]:
    """The heavy libraries a fresh interpreter holds after the verb."""
    with tempfile.NamedTemporaryFile(suffix=".json") as report:
        env = {**os.environ, "PYTHONPATH": str(tree)}
        subprocess.run([sys.executable, "-c", PROBE, report.name, *args], cwd=cwd, env=env,
                       capture_output=True, timeout=300)  # fmt: skip
        loaded = json.loads(Path(report.name).read_text() or "[]")
    return [m for m in HEAVY if m in loaded]


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), platform.processor())  # fmt: skip
    versions = {}
    for name in ("typer", "pyarrow", "datasets", "numpy", "pydantic"):
        try:
            from importlib.metadata import version

            versions[name] = version(name)
        except Exception:  # noqa: BLE001 - a missing package is reported as such
            versions[name] = "absent"
    return {
        "cores": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
        "kernel": platform.release(), "packages": versions,
    }  # fmt: skip


def measure(reps: int, before_ref: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="hubtools-startup-") as tmp:
        work, old = Path(tmp) / "work", Path(tmp) / "before"
        work.mkdir()
        trees = {"before": extract(before_ref, old), "after": ROOT}
        tiny_run(work)
        (work / "hub").mkdir()
        results = {"machine": machine(), "before_ref": before_ref, "reps": reps,
                   "load_start": list(os.getloadavg()), "rows": [], "cases": []}  # fmt: skip
        for case in cases(work, verbs_of_cli()):
            summary = {"name": case["name"], "light": case["light"],
                       "load": list(os.getloadavg())}  # fmt: skip
            for label, tree in trees.items():  # warm-up, not counted: .pyc files, page cache
                once(tree, [a.replace("{i}", f"{label}-warm") for a in case["args"]], work)
            for i in range(reps):
                for label, tree in trees.items():  # alternate: the same load on both
                    args = [a.replace("{i}", f"{label}-{i}") for a in case["args"]]
                    cpu, wall, rc = once(tree, args, work)
                    results["rows"].append({"case": case["name"], "tree": label, "rep": i,
                                            "cpu_s": round(cpu, 4), "wall_s": round(wall, 4),
                                            "rc": rc})  # fmt: skip
            for label, tree in trees.items():
                rows = [r for r in results["rows"]
                        if r["case"] == case["name"] and r["tree"] == label]  # fmt: skip
                summary[label] = {
                    "cpu_s": statistics.median(r["cpu_s"] for r in rows),
                    "wall_s": statistics.median(r["wall_s"] for r in rows),
                    "rc": statistics.mode(r["rc"] for r in rows),
                    "imports": imported(tree, [a.replace("{i}", "probe") for a in case["args"]],
                                        work),
                }  # fmt: skip
            results["cases"].append(summary)
            print(f"{case['name']:<48} before {summary['before']['cpu_s']:.3f} s CPU  "
                  f"after {summary['after']['cpu_s']:.3f} s CPU", file=sys.stderr)  # fmt: skip
        results["load_end"] = list(os.getloadavg())
    results["category_counting"] = category_counting(2_000_000)
    return results


def category_counting(n: int) -> dict:
    """`status`'s per-category count of one n-query part, the old way and the new (best of 3)."""
    import random
    from collections import Counter

    import pyarrow as pa
    import pyarrow.compute  # noqa: F401 - loaded up front: the old way's import is not timed
    import pyarrow.parquet as pq

    names = ["math", "code", "science", "if", "chat", "general"]
    with tempfile.TemporaryDirectory() as tmp:
        part = Path(tmp) / "part-00000.parquet"
        pq.write_table(pa.table({"category": random.choices(names, k=n)}), part)

        def old() -> None:
            pq.read_table(part, columns=["category"])["category"].value_counts()

        def new() -> None:
            table = pq.ParquetFile(part, read_dictionary=["category"]).read(["category"])
            for chunk in table["category"].chunks:
                Counter(chunk.indices.to_pylist())

        timings = {}
        for name, way in (("read_table + value_counts", old), ("ParquetFile + Counter", new)):
            best = float("inf")
            for _ in range(3):
                start = time.perf_counter()
                way()
                best = min(best, time.perf_counter() - start)
            timings[name] = round(best, 4)
    light, heavy = "import pyarrow.parquet", "import pyarrow.parquet, pyarrow.dataset, pandas"
    extra = statistics.median(cpu_of(heavy) - cpu_of(light) for _ in range(7))
    return {"queries": n, "seconds": timings, "old_way_import_cpu_s": round(extra, 4)}


def cpu_of(code: str) -> float:
    proc = subprocess.Popen([sys.executable, "-c", code])
    usage = os.wait4(proc.pid, 0)[2]
    return usage.ru_utime + usage.ru_stime


def report(results: dict) -> str:
    m = results["machine"]
    load = results["load_start"] + results["load_end"]
    counting = results["category_counting"]
    cpu = {c["name"]: c["after"]["cpu_s"] for c in results["cases"]}
    new_status = cpu["status (tiny run)"]
    old_status = cpu["status (tiny run without stored counts)"]
    packages = ", ".join(f"{k} {v}" for k, v in m["packages"].items())
    lines = [
        "# Start-up time of each verb",
        "",
        f"Produced by `python bench/startup.py --reps {results['reps']}` (raw rows in "
        "`startup.json`). Each verb is started as a user starts it, `python -m hubtools ...` "
        f"in a fresh interpreter, {results['reps']} times from each tree: **before** is "
        f"`{results['before_ref']}` (the code issue 10 measured), **after** is this branch. "
        "The two trees' runs alternate, so both meet the same load; the tables give medians. "
        "**CPU** is the child's user+sys time from `wait4` (what the issue's 0.3 s budget "
        "counts, and what a shared machine inflates least); **wall** is start to exit. "
        "*Imports* lists the heavy libraries a fresh interpreter holds after the verb.",
        "",
        f"**Machine**: {m['cores']} cores ({m['cpu']}), Python {m['python']}, Linux "
        f"{m['kernel']}; {packages}. **Load**: the machine is shared with other sessions "
        f"running tests; 1-minute load average {min(load):.2f}-{max(load):.2f} during the "
        "run (per case below), so wall times are pessimistic.",
        "",
        "**Tiny run**: 3 queries (math, chat, code) and 2 imported answers of one teacher; "
        "`build` writes its release (1 config) into a fresh folder each time.",
        "",
        f"## Light verbs (budget: under {BUDGET_S} s of CPU, no heavy import)",
        "",
        *table([c for c in results["cases"] if c["light"]], budget=True),
        "",
        *failures(results["cases"]),
        "",
        "## Heavier verbs, to exit or to their first error",
        "",
        "These import what their work needs (`build`: datasets for the card's features); "
        "a user mistake is still refused before that where the verb checks its input first.",
        "",
        *table([c for c in results["cases"] if not c["light"]], budget=False),
        "",
        "## What changed",
        "",
        "- `hubtools.records` builds the release `datasets.Features` (and its Arrow schema) "
        "on first use (`release_features()`, `release_schema()`; `RELEASE_FEATURES` and "
        "`RELEASE_SCHEMA` still resolve, through a module `__getattr__`): importing "
        "`datasets` (and pandas with it) was ~0.6 s of every verb that touched a record.",
        "- `hubtools.run` imports pyarrow only in the functions that read or write the query "
        "set (`QUERY_SCHEMA` likewise lazy), and `Run.add_queries` stores each part's count "
        "per category beside it (`queries/part-NNNNN.categories.json`, written before the "
        "part), so `status` reads no Parquet at all. A run made before that (*without stored "
        "counts* above) is counted from its parts with `ParquetFile.read` of the dictionary "
        "codes, no longer `read_table(...).value_counts()`, which loaded `pyarrow.dataset`, "
        f"`pyarrow.compute` and pandas ({counting['old_way_import_cpu_s']:.2f} s of CPU more "
        "to import). Counted in Python, a big part costs more once imported: one part of "
        f"{counting['queries']:,} queries, "
        + ", ".join(f"{k} {v:.3f} s" for k, v in counting["seconds"].items())
        + " (best of 3, in-process, imports excluded), so the old way is ahead only past "
        f"~{breakeven(counting):.0f} million queries (and only for runs made before the "
        "counts were stored).",
        "- What remains for `status`: the interpreter, typer and the pydantic adapters typer "
        "0.29 builds for every command's parameters (~0.13 s together), hubtools' records, "
        "run store, YAML and SQLite (~0.03 s). Every verb's `--help` also pays for rich's "
        "help panels (~0.07 s); `hub token create` for pygit2 (the local Hub's storage, "
        "~0.05 s). `status` on a run without stored counts still pays pyarrow and numpy "
        f"(+{old_status - new_status:.2f} s, {old_status:.2f} s in all: over the budget); "
        "every run made from now on has the counts.",
    ]
    return "\n".join(lines) + "\n"


def breakeven(counting: dict) -> float:
    """Millions of queries past which the old count's imports pay for themselves."""
    old, new = counting["seconds"].values()
    return counting["old_way_import_cpu_s"] / ((new - old) / (counting["queries"] / 1e6))


def failures(cases: list[dict]) -> list[str]:
    """A note for each light verb that does not exit 0 here: its time is that of its error."""
    absent = {"--version": "the option is not on this branch yet; another change adds it"}
    return [
        f"`{c['name']}` exits {c['after']['rc']} in this tree "
        f"({absent.get(c['name'], 'see its output')}): timed as the usage error it gives."
        for c in cases
        if c["light"] and c["after"]["rc"] != 0
    ]


def table(rows: list[dict], *, budget: bool) -> list[str]:
    out = ["| verb | CPU before | CPU after | wall before | wall after | exit before/after "
           "| imports before | imports after |",
           "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for c in rows:
        b, a = c["before"], c["after"]
        mark = ""
        if budget and a["rc"] == 0:
            mark = " ✓" if a["cpu_s"] < BUDGET_S else " ✗"
        out.append(
            f"| `{c['name']}` | {b['cpu_s']:.3f} s | **{a['cpu_s']:.3f} s**{mark} "
            f"| {b['wall_s']:.3f} s | {a['wall_s']:.3f} s | {b['rc']} / {a['rc']} "
            f"| {', '.join(b['imports']) or '-'} | {', '.join(a['imports']) or '-'} |"
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--before", default="fba5a52")
    parser.add_argument("--out", default=str(ROOT / "bench" / "startup.md"))
    parser.add_argument("--from-json", help="rewrite the report from saved results")
    args = parser.parse_args()
    if args.from_json:
        results = json.loads(Path(args.from_json).read_text())
    else:
        results = measure(args.reps, args.before)
        Path(args.out).with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    Path(args.out).write_text(report(results))


if __name__ == "__main__":
    main()
