"""Files larger than one batch, through the real CLI of every verb that batches.

verify --input scores 1,024 answers a batch (``verify/stage.py`` BATCH), import verifies
512 a batch (``release/importer.py`` _BATCH), queries add writes 10,000 queries a chunk
(``Run.add_queries``) and reads Parquet a record batch (row group) at a time.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from hubtools.release.importer import _BATCH as IMPORT_BATCH
from hubtools.run import Run
from hubtools.verify.stage import BATCH as VERIFY_BATCH


def hubtools(*args: str) -> subprocess.CompletedProcess:
    cli = [sys.executable, "-m", "hubtools", *args]
    return subprocess.run(cli, capture_output=True, text=True, timeout=300)


def _math(i: int) -> dict:
    """A cheap math question; every third answer is wrong."""
    answer = 7 * i + (i % 3 == 0)
    return {
        "prompt": f"What is {i} * 7?",
        "category": "math",
        "reference": str(7 * i),
        "meta": {"i": i},
        "answer": f"<think>{i} times 7</think>The final answer is $\\boxed{{{answer}}}$.",
    }


def _write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_verify_input_of_5000_answers_writes_5000_lines(tmp_path):
    n = 5000
    assert n > 4 * VERIFY_BATCH
    source = _write_jsonl(tmp_path / "answers.jsonl", [_math(i) for i in range(n)])
    output = tmp_path / "scored.jsonl"
    done = hubtools("verify", "--input", str(source), "--output", str(output), "--workers", "2")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    scored = [json.loads(line) for line in output.read_text().splitlines()]
    assert len(scored) == n
    assert [r["meta"]["i"] for r in scored] == list(range(n))  # in input order
    assert [r["score"] for r in scored] == [0.0 if i % 3 == 0 else 1.0 for i in range(n)]
    assert f"verified {n:,} answers: {n - len(range(0, n, 3)):,} passed" in done.stdout


def test_import_of_more_than_one_verify_batch(tmp_path):
    n = 2 * IMPORT_BATCH + 77
    records = [{**_math(i), "output": _math(i)["answer"]} for i in range(n)]
    for r in records:
        del r["answer"]
    records += [{"prompt": f"Opinion {i}?", "output": "Yes.", "score": 1.0} for i in range(50)]
    source = _write_jsonl(tmp_path / "outputs.jsonl", records)
    run = tmp_path / "run"
    args = ("import", str(source), "--run", str(run), "--teacher", "t", "--workers", "2")
    done = hubtools(*args, "--quiet")
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"{n + 50:,} new" in done.stdout
    assert f"50 scores taken from the file, {n:,} verified" in done.stdout
    [db] = Run.open(run).shard_paths()
    with sqlite3.connect(db) as conn:
        attempts = conn.execute("SELECT COUNT(*) FROM attempts").fetchone()[0]
        verdicts = dict(conn.execute("SELECT verifier, COUNT(*) FROM verdicts GROUP BY verifier"))
        passed = conn.execute("SELECT COUNT(*) FROM verdicts WHERE score >= 0.9").fetchone()[0]
    assert attempts == n + 50 and verdicts == {"math-verify": n, "imported": 50}
    assert passed == n - len(range(0, n, 3)) + 50
    again = hubtools(*args, "--quiet")
    assert again.returncode == 0 and f"0 new ({n + 50:,} already stored)" in again.stdout


def test_queries_add_of_more_than_one_chunk_jsonl_and_parquet(tmp_path):
    n = 25_000  # three 10,000-query chunks
    records = [{"prompt": f"Question number {i}: what is {i} + 1?", "category": "math",
                "reference": str(i + 1)} for i in range(n)]  # fmt: skip
    jsonl = _write_jsonl(tmp_path / "queries.jsonl", records[: n - 5000])
    table = pa.Table.from_pylist(records)
    parquet = tmp_path / "queries.parquet"
    pq.write_table(table, parquet, row_group_size=4096)  # many record batches
    assert pq.ParquetFile(parquet).num_row_groups > 1
    run = tmp_path / "run"

    first = hubtools("queries", "add", str(jsonl), "--run", str(run))
    assert first.returncode == 0, first.stderr[-2000:]
    assert Run.open(run).count_queries() == n - 5000
    second = hubtools("queries", "add", str(parquet), "--run", str(run))
    assert second.returncode == 0, second.stderr[-2000:]
    opened = Run.open(run)
    assert opened.count_queries() == n  # the 5,000 new ones added, the rest recognised
    assert "added 5,000 queries" in second.stdout
    ids = [q.query_id for q in opened.iter_queries()]
    assert len(ids) == len(set(ids)) == n
    third = hubtools("queries", "add", str(parquet), "--run", str(run))
    assert third.returncode == 0 and "added 0 queries" in third.stdout
    assert Run.open(run).count_queries() == n
