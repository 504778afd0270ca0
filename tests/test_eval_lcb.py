"""LiveCodeBench rows in the dataset's real layout, graded by hubtools' sandboxed code verifier.

The rows are hand-made from two real v5 problems (AtCoder abc365_b, stdin; LeetCode
3243, functional with starter code): their statements come from the real prompts in
../shared/data/benchmarks, the cases are the statements' samples plus private cases
encoded as the dataset encodes them (JSON, pickled, zlib, base64).
"""

from __future__ import annotations

import base64
import json
import os
import pickle
import zlib
from pathlib import Path

import pytest
from conftest import shared_path

from hubtools.eval.livecodebench import (
    FORMAT_STDIN,
    FORMAT_WITH_STARTER,
    INSTRUCTION,
    UnsafePickleError,
    decode_private,
    in_window,
    lcb_prompt,
    lcb_query,
    lcb_tests,
    max_tests_for,
)
from hubtools.verify.base import SandboxConfig, VerifyConfig
from hubtools.verify.code import CodeVerifier

PROMPTS = "data/benchmarks/livecodebench_v5_prompts.jsonl"


def encode(cases: list[dict]) -> str:
    """What the dataset's private_test_cases holds."""
    return base64.b64encode(zlib.compress(pickle.dumps(json.dumps(cases)))).decode()


def real_prompts() -> dict[str, dict]:
    path = shared_path(PROMPTS)
    return {r["question_id"]: r for r in map(json.loads, path.read_text().splitlines())}


def statement(prompt: str) -> tuple[str, str]:
    """(question_content, starter_code) back out of a real LiveCodeBench prompt."""
    body = prompt.split("Question: ", 1)[1]
    for fmt in (FORMAT_WITH_STARTER, FORMAT_STDIN):
        if f"\n\n{fmt}\n```python\n" in body:
            content, code = body.split(f"\n\n{fmt}\n```python\n", 1)
            code = code.removesuffix("\n```\n\n")
            return content, "" if fmt == FORMAT_STDIN else code
    raise AssertionError("not a LiveCodeBench prompt")


def stdin_row() -> dict:
    content, _ = statement(real_prompts()["abc365_b"]["prompt"])
    case = lambda i, o: {"input": i, "output": o, "testtype": "stdin"}  # noqa: E731
    return {
        "question_title": "Second Best", "question_content": content, "platform": "atcoder",
        "question_id": "abc365_b", "contest_id": "abc365", "contest_date": "2024-08-03T00:00:00",
        "starter_code": "", "difficulty": "easy",
        "public_test_cases": json.dumps([case("4\n8 2 5 1\n", "3\n"),
                                         case("8\n1 2 3 4 5 10 9 11\n", "6\n")]),
        "private_test_cases": encode([case("2\n1 1000000000\n", "1\n"),
                                      case("3\n5 9 7\n", "3\n"), case("3\n9 5 7\n", "3\n")]),
        "metadata": "{}",
    }  # fmt: skip


def functional_row() -> dict:
    prompts = real_prompts()
    qid = next(k for k, r in prompts.items() if "shortestDistanceAfterQueries" in r["prompt"])
    content, starter = statement(prompts[qid]["prompt"])
    case = lambda i, o: {"input": i, "output": o, "testtype": "functional"}  # noqa: E731
    return {
        "question_title": "shortest-distance-after-road-addition-queries-i",
        "question_content": content, "platform": "leetcode", "question_id": qid,
        "contest_id": "weekly-contest-409", "contest_date": prompts[qid]["contest_date"],
        "starter_code": starter, "difficulty": "medium",
        "public_test_cases": json.dumps([case("5\n[[2, 4], [0, 2], [0, 4]]", "[3, 2, 1]"),
                                         case("4\n[[0, 3], [0, 2]]", "[1, 1]")]),
        "private_test_cases": encode([case("3\n[[0, 2]]", "[1]"),
                                      case("6\n[[1, 3], [3, 5], [0, 5]]", "[4, 3, 1]")]),
        "metadata": json.dumps({"func_name": "shortestDistanceAfterQueries"}),
    }  # fmt: skip


STDIN_RIGHT = """```python
n = int(input())
a = list(map(int, input().split()))
print(a.index(sorted(a)[-2]) + 1)
```"""
STDIN_PUBLIC_ONLY = """```python
n = int(input())
a = list(map(int, input().split()))
print(a.index(sorted(a)[-2]) + 1 if n > 3 else 3)
```"""
FUNC_RIGHT = """```python
class Solution:
    def shortestDistanceAfterQueries(self, n: int, queries: List[List[int]]) -> List[int]:
        adj = [[i + 1] for i in range(n)]
        out = []
        for u, v in queries:
            adj[u].append(v)
            dist = [inf] * n
            dist[0] = 0
            for i in range(n - 1):
                for j in adj[i]:
                    dist[j] = min(dist[j], dist[i] + 1)
            out.append(dist[n - 1])
        return tuple(out)
```"""
FUNC_WRONG = FUNC_RIGHT.replace("dist[i] + 1", "dist[i] + 2")

VERIFIER = CodeVerifier(VerifyConfig(code=SandboxConfig(max_tests=1000)))


@pytest.fixture(scope="module")
def needs_sandbox():
    if reason := VERIFIER.sandbox.unavailable_reason():
        pytest.skip(f"the code sandbox is unavailable: {reason}")


def test_private_tests_decode_and_convert():
    row = stdin_row()
    tests = lcb_tests(row)
    assert [t["input"] for t in tests][:2] == ["4\n8 2 5 1\n", "8\n1 2 3 4 5 10 9 11\n"]
    assert len(tests) == 5 and max_tests_for(tests) == 5
    func = lcb_tests(functional_row())
    assert len(func) == 1 and func[0]["entry_point"] == "Solution().shortestDistanceAfterQueries"
    assert max_tests_for(func) == 4
    # Some rows hold the JSON list itself rather than its encoding.
    assert decode_private(json.dumps([{"input": "1", "output": "2"}])) == [
        {"input": "1", "output": "2"}
    ]


@pytest.mark.parametrize(
    "make, right, wrong",
    [(stdin_row, STDIN_RIGHT, STDIN_PUBLIC_ONLY), (functional_row, FUNC_RIGHT, FUNC_WRONG)],
    ids=["stdin", "functional"],
)
def test_real_layout_rows_grade_right_and_wrong(make, right, wrong, needs_sandbox):
    query = lcb_query(make(), system_prompt="You are a helpful assistant.")
    assert query.messages[0]["role"] == "system" and query.meta["language"] == "python"
    good = VERIFIER.verify(query, right)
    assert good.value == 1.0, good.details
    bad = VERIFIER.verify(query, wrong)
    assert bad.value < 1.0, bad.details  # a sample passes a problem only when all cases pass
    if make is stdin_row:  # right on both public cases, wrong on the private ones
        statuses = [t["status"] for t in bad.details["tests"]]
        assert statuses[:2] == ["pass", "pass"] and "fail" in statuses[2:]


class Boom:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


@pytest.mark.parametrize(
    "payload",
    [
        pickle.dumps(Boom()),
        pickle.dumps([json.dumps([{"input": "1", "output": "1"}]), Boom()]),
        pickle.dumps({"a": 1}),  # no global, but not a str
        pickle.dumps(json.dumps([]))[:-3],  # truncated
    ],
    ids=["reduce-os-system", "nested", "not-a-str", "truncated"],
)
def test_hostile_or_broken_pickles_are_refused(payload, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blob = base64.b64encode(zlib.compress(payload)).decode()
    with pytest.raises(UnsafePickleError):
        decode_private(blob)
    assert not (tmp_path / "PWNED").exists()
    with pytest.raises(UnsafePickleError):
        lcb_tests({**stdin_row(), "private_test_cases": blob})


def test_zlib_bomb_is_refused():
    blob = base64.b64encode(zlib.compress(pickle.dumps("x" * 5_000_000))).decode()
    with pytest.raises(UnsafePickleError, match="more than"):
        decode_private(blob, max_bytes=1_000_000)


def test_prompts_match_the_real_livecodebench_prompts():
    """Rebuilt from their statement, the 279 real v5 prompts come out byte for byte."""
    rows = real_prompts().values()
    for real in rows:
        content, starter = statement(real["prompt"])
        rebuilt = lcb_prompt({"question_content": content, "starter_code": starter})
        assert rebuilt == real["prompt"], real["question_id"]
        assert rebuilt.startswith(INSTRUCTION)
    assert sum(bool(statement(r["prompt"])[1]) for r in rows) == 104  # LeetCode, with starter


def test_paper_date_window():
    rows = list(real_prompts().values())
    kept = [r for r in rows if in_window(r)]
    assert {r["contest_date"][:7] for r in kept} == {"2024-10", "2024-11", "2024-12", "2025-01"}
    assert len(kept) == 166  # 53 + 57 + 49 + 7 of the 279 (2024-08 to 2025-01)
    assert in_window({"contest_date": "2025-01-31T23:59:00"})
    assert in_window({"contest_date": "2024-10-01T00:00:00"})
    assert not in_window({"contest_date": "2025-02-01T00:00:00"})  # after v5
    assert not in_window({"contest_date": "2024-09-30T23:59:00"})


def test_hubtools_eval_on_livecodebench_rows(fresh_hub, tmp_path, needs_sandbox):
    """The rows in a Hub repo laid out as the real one (JSONL files beside a loading script),
    through `hubtools eval`: the window, the prompt, decoded private tests, avg@k by hand."""
    import os
    import subprocess
    import sys
    import threading

    from huggingface_hub import CommitOperationAdd, HfApi

    from tests.servers.chat_server import ChatServer, Reply

    fresh_hub.start()
    token = fresh_hub.token("lcb", "livecodebench", write=True)
    stdin, func = stdin_row(), functional_row()
    stdin["contest_date"], func["contest_date"] = "2024-11-02T00:00:00", "2025-01-04T18:30:00"
    old = {**stdin_row(), "question_id": "abc300_a", "question_content": "Old problem."}
    rows = "".join(json.dumps(r) + "\n" for r in (stdin, func, old))
    api = HfApi(endpoint=fresh_hub.url, token=token)
    repo = "livecodebench/code_generation_lite"
    api.create_repo(repo, repo_type="dataset")
    api.create_commit(repo, repo_type="dataset", commit_message="rows", operations=[
        CommitOperationAdd("test5.jsonl", rows.encode()),
        CommitOperationAdd("code_generation_lite.py", b"raise RuntimeError('a script')\n"),
    ])  # fmt: skip
    # Per problem: the first sample asked is right, the second wrong (stdin) or right (func).
    answers = {lcb_prompt(stdin): [STDIN_RIGHT, STDIN_PUBLIC_ONLY],
               lcb_prompt(func): [FUNC_RIGHT, FUNC_RIGHT]}  # fmt: skip
    asked: list[str] = []
    lock = threading.Lock()

    def respond(body: dict) -> Reply:
        prompt = body["messages"][-1]["content"]
        with lock:
            n = sum(p == prompt for p in asked)
            asked.append(prompt)
        return Reply(f"<think>Plan.</think>{answers[prompt][n]}", completion_tokens=100)

    out = tmp_path / "eval"
    env = {**os.environ, "HF_ENDPOINT": fresh_hub.url, "HF_TOKEN": token,
           "HF_HUB_DISABLE_XET": "1", "HF_HOME": str(tmp_path / "hf-home"),
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}  # fmt: skip
    with ChatServer(respond) as chat:
        done = subprocess.run(
            [sys.executable, "-m", "hubtools", "eval", "--endpoint", chat.url, "--model", "m",
             "--benchmarks", "livecodebench", "--samples", "2", "--out", str(out), "--quiet"],
            env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert sorted(set(asked)) == sorted(answers)  # the out-of-window row was never asked
    lcb = json.loads((out / "results.json").read_text())["benchmarks"]["livecodebench"]
    assert lcb["problems"] == 2 and lcb["samples_per_problem"] == 2
    assert lcb["avg_at_k"] == pytest.approx((1 / 2 + 2 / 2) / 2)
    assert lcb["verifier"] == "code-sandbox" and lcb["dataset"] == repo
