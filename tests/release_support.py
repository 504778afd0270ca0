"""Runs for the release tests, written straight into a real run store (no teacher needed)."""

from __future__ import annotations

from pathlib import Path

from hubtools.records import Attempt, Query, Verdict
from hubtools.run import Run

TEACHER_SECTION = {
    "model": "org/Teacher-1",
    "system_prompt": "Think, then answer.",
    "sampling": {"temperature": 0.6, "top_p": 0.95, "max_tokens": 32768},
    "max_attempts": 3,
    "threshold": 0.9,
}
CATEGORIES = ("math", "code", "science", "chat")


def make_run(path: Path, n: int = 40, *, teachers=("t1", "t2"), extra: str = "") -> Run:
    """``n`` queries over four categories plus a multi-turn chat query.

    Teacher ``t1``: attempt 0 fails on every third query, attempt 1 passes, except
    queries ``i % 7 == 6`` which never pass. ``t2`` fails queries ``i % 5 == 4``.
    """
    run = Run.create(path, {f"teacher:{t}": TEACHER_SECTION for t in teachers})
    queries = [
        Query.from_prompt(f"Question {i}{extra}: what is {i} + {i}?", category=CATEGORIES[i % 4],
                          source="acme/source-data" if i % 2 else "local.jsonl",
                          reference=str(2 * i), tests=[{"input": "1", "output": "2"}] if i % 4 == 1
                          else None)
        for i in range(n)
    ]  # fmt: skip
    queries.append(
        Query.from_prompt(
            [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": f"Hello{extra}"},
                {"role": "assistant", "content": "Hi."},
                {"role": "user", "content": "And now?"},
            ],
            category="chat",
            source="multi",
        )
    )
    run.add_queries(queries)
    attempts, verdicts = [], []
    for i, q in enumerate(queries):
        for t in teachers:
            for a in range(2):
                think, answer = f"{t} reasoning {i}.{a}{extra}", f"The answer is {2 * i}."
                attempts.append(
                    Attempt(
                        query_id=q.query_id,
                        teacher=t,
                        attempt=a,
                        text=f"<think>{think}</think>{answer}",
                        think=think,
                        answer=answer,
                        completion_tokens=100 + 10 * i + a,
                        model=TEACHER_SECTION["model"],
                        params={"ppl": 2.0 + i / 100} if t == "t1" else {},
                    )
                )
                if t == "t1":
                    ok = i % 7 != 6 and (a == 1 or i % 3 != 0)
                else:
                    ok = i % 5 != 4
                verifier = "math-verify" if q.category == "math" else "llm-judge"
                verdicts.append(
                    Verdict(
                        query_id=q.query_id,
                        teacher=t,
                        attempt=a,
                        verifier=verifier,
                        score=1.0 if ok else 0.2,
                    )
                )
    with run.store() as store:
        store.add_attempts(attempts)
        store.add_verdicts(verdicts)
    return run


def expected_passed(n: int, teacher: str) -> set[int]:
    if teacher == "t1":
        return {i for i in range(n) if i % 7 != 6}
    return {i for i in range(n) if i % 5 != 4}
