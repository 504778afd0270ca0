"""hubtools build: release folders from a real run store, cards checked by the Hub's validator."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from huggingface_hub import DatasetCard
from release_support import expected_passed, make_run

from hubtools.errors import EmptyReleaseError, RunStoreError, UsageError
from hubtools.records import RELEASE_SCHEMA, Attempt, Query, Verdict
from hubtools.release.build import build
from hubtools.run import Run

N = 40


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("runs") / "run", N)


def _rows(folder, config):
    files = sorted((folder / "data" / config).glob("train-*.parquet"))
    return [row for f in files for row in pq.read_table(f).to_pylist()]


def test_build_writes_one_config_per_category_with_one_schema(run, tmp_path):
    out = tmp_path / "release"
    result = build(run.path, teacher="t1", out=out, max_shard_rows=4, progress=False)
    passed = expected_passed(N, "t1")
    assert result.rows["all"] == len(passed) + 1  # + the multi-turn query
    assert set(result.rows) == {"all", "math", "code", "science", "chat"}
    for config in ("math", "code", "science", "chat"):
        files = sorted((out / "data" / config).glob("*.parquet"))
        assert [f.name for f in files] == [
            f"train-{i:05d}-of-{len(files):05d}.parquet" for i in range(len(files))
        ]
        for f in files:
            assert pq.read_schema(f).remove_metadata() == RELEASE_SCHEMA.remove_metadata()
            assert pq.ParquetFile(f).metadata.num_rows <= 4  # shards bounded
        assert sum(pq.ParquetFile(f).metadata.num_rows for f in files) == result.rows[config]
    assert not (out / "data" / "all").exists()  # `all` reads the category files
    assert not [p for p in out.rglob(".*")]  # no staging leftovers
    assert f"kept {len(passed) + 1} rows (math " in str(result)


def test_rows_are_am_compatible_first_passing_attempt(run, tmp_path):
    out = tmp_path / "release"
    build(run.path, teacher="t1", out=out, progress=False)
    math = _rows(out, "math")
    by_question = {r["conversations"][0]["value"]: r for r in math}
    row = by_question["Question 0: what is 0 + 0?"]  # attempt 0 failed, 1 passed
    assert row["system"] == "Think, then answer."
    human, assistant = row["conversations"]
    assert human["from"] == "human" and assistant["from"] == "assistant"
    assert assistant["value"] == (
        "<think>\nt1 reasoning 0.1\n</think>\n<answer>\nThe answer is 0.\n</answer>"
    )
    info = assistant["info"]
    assert (
        info["think_content"] == "t1 reasoning 0.1" and info["answer_content"] == "The answer is 0."
    )
    assert info["verify_score"] == 1.0 and info["model_name"] == "org/Teacher-1"
    assert info["ground_truth"] == "0" and info["category"] == "math" and info["ppl"] == 2.0
    first_try = by_question["Question 4: what is 4 + 4?"]
    assert "reasoning 4.0" in first_try["conversations"][1]["value"]
    code = _rows(out, "code")[0]["conversations"][0]["info"]
    assert json.loads(code["test_case"]) == [{"input": "1", "output": "2"}]


def test_multi_turn_keeps_the_turns_and_the_querys_system_prompt(run, tmp_path):
    out = tmp_path / "release"
    build(run.path, teacher="t1", out=out, progress=False)
    [row] = [r for r in _rows(out, "chat") if len(r["conversations"]) > 2]
    assert row["system"] == "You are terse."
    assert [(t["from"], t["value"][:8]) for t in row["conversations"]] == [
        ("human", "Hello"), ("assistant", "Hi."), ("human", "And now?"), ("assistant", "<think>\n"),
    ]  # fmt: skip


def test_parallel_keeps_only_queries_every_teacher_passed(run, tmp_path):
    one = build(run.path, teacher="t1", out=tmp_path / "a", parallel=["t1", "t2"], progress=False)
    two = build(run.path, teacher="t2", out=tmp_path / "b", parallel=["t1", "t2"], progress=False)
    both = expected_passed(N, "t1") & expected_passed(N, "t2")
    assert one.rows == two.rows and one.rows["all"] == len(both) + 1
    prompts = [{r["conversations"][0]["value"] for r in _rows(tmp_path / d, "math")} for d in "ab"]
    assert prompts[0] == prompts[1]
    assert "parallel" in (tmp_path / "a" / "README.md").read_text()


def test_card_metadata_and_body_pass_the_hubs_validator(hub, run, tmp_path):
    out = tmp_path / "release"
    (run.path / "funnel.json").write_text(json.dumps({
        "queries_in": 1000, "filters": [{"name": "exact dedup", "removed": 900},
                                        {"name": "decontamination", "removed": 59}],
    }))  # fmt: skip
    try:
        build(run.path, teacher="t1", out=out, card="am_thinking_v1", teacher_license="apache-2.0",
              progress=False)  # fmt: skip
    finally:
        (run.path / "funnel.json").unlink()
    text = (out / "README.md").read_text()
    card = DatasetCard(text)
    card.validate(repo_type="dataset")  # POST /api/validate-yaml on the session's local Hub
    data = card.data.to_dict()
    assert data["pretty_name"] == "AM-Thinking-v1-Distilled"
    assert data["size_categories"] == ["n<1K"] and data["task_categories"] == ["text-generation"]
    assert data["source_datasets"] == ["acme/source-data"]
    assert [c["config_name"] for c in data["configs"]] == ["all", "math", "code", "science", "chat"]
    info = {i["config_name"]: i for i in data["dataset_info"]}
    assert info["all"]["splits"][0]["num_examples"] == len(expected_passed(N, "t1")) + 1
    for needle in ("| exact dedup | 900 |", "Queries in: **1,000**", "apache-2.0",
                   "research purposes only", "tian2025notallcorrect", "| sampling: temperature |",
                   "Math-Verify", "mean ppl", "Not published yet"):  # fmt: skip
        assert needle in text, needle


def test_bad_input_is_a_clear_error(run, tmp_path):
    with pytest.raises(UsageError, match=r"'nobody' has no attempts in .*teachers: t1, t2\)"):
        build(run.path, teacher="nobody", out=tmp_path / "x", progress=False)
    with pytest.raises(UsageError, match=r"'zz' has no attempts in .*teachers: t1, t2\)"):
        build(run.path, teacher="t1", parallel=["t2", "zz"], out=tmp_path / "x", progress=False)
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(UsageError, match="is a file"):
        build(run.path, teacher="t1", out=tmp_path / "a-file", progress=False)
    with pytest.raises(UsageError, match="unknown card template"):
        build(run.path, teacher="t1", out=tmp_path / "y", card="fancy", progress=False)
    assert not (tmp_path / "y").exists()
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file").write_text("x")
    with pytest.raises(UsageError, match="not empty"):
        build(run.path, teacher="t1", out=tmp_path / "busy", progress=False)
    with pytest.raises(RunStoreError, match="not a run"):
        build(tmp_path / "busy", teacher="t1", out=tmp_path / "z", progress=False)


def test_cli_build_json(run, tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "hubtools", "build", str(run.path), "--teacher", "t2", "--out",
         str(tmp_path / "r"), "--json", "--quiet"], capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["rows"]["all"] == len(expected_passed(N, "t2")) + 1
    bad = subprocess.run(
        [sys.executable, "-m", "hubtools", "build", str(run.path), "--teacher", "zz", "--out",
         str(tmp_path / "q")], capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert (
        bad.returncode == 2 and bad.stderr.startswith("error: ") and "Traceback" not in bad.stderr
    )


def _small_run(path):
    """t1 passes query a, t2 passes query b, t3 failed both, t4 is not verified yet."""
    run = Run.create(path)
    a, b = (Query.from_prompt(f"What is {x}?", source="s", category="math", reference="1")
            for x in "ab")  # fmt: skip
    run.add_queries([a, b])
    scores = {"t1": (1.0, 0.1), "t2": (0.1, 1.0), "t3": (0.1, 0.2), "t4": None}
    attempts, verdicts = [], []
    for teacher, pair in scores.items():
        for query, score in zip((a, b), pair or (None, None), strict=True):
            key = {"query_id": query.query_id, "teacher": teacher, "attempt": 0}
            attempts.append(Attempt(**key, text="<think>One.</think>\\boxed{1}"))
            if score is not None:
                verdicts.append(Verdict(**key, verifier="math-verify", score=score))
    with run.store() as store:
        store.add_attempts(attempts)
        store.add_verdicts(verdicts)
    return run


def test_an_empty_release_is_an_error_before_anything_is_written(tmp_path):
    run = _small_run(tmp_path / "run")
    out = tmp_path / "release"
    cases = {
        "t3": r"teacher 't3' has no passed answers in .* \(2 attempts, 2 verdicts, 0 >= "
        r"threshold 0.9\); pass --allow-empty",
        "t4": r"\(2 attempts, 0 verdicts, 0 >= threshold 0.9\); run `hubtools verify",
    }
    for teacher, message in cases.items():
        with pytest.raises(EmptyReleaseError, match=message):
            build(run.path, teacher=teacher, out=out, progress=False)
    with pytest.raises(EmptyReleaseError, match=r"passed: t1 1, t2 1; 0 in common"):
        build(run.path, teacher="t1", parallel=["t1", "t2"], out=out, progress=False)
    with pytest.raises(UsageError, match="unknown card template"):  # checked before emptiness
        build(run.path, teacher="t3", card="fancy", out=out, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no folder, no staging

    empty = build(run.path, teacher="t3", out=out, allow_empty=True, progress=False)
    assert empty.rows == {"all": 0} and (out / "README.md").exists()
    assert "kept 0 rows in 1 file" in str(empty)
    one = build(run.path, teacher="t1", out=tmp_path / "t1", progress=False)
    assert one.rows == {"all": 1, "math": 1} and "kept 1 row (math 1)" in str(one)


def test_cli_empty_release_exit_code_and_allow_empty(tmp_path):
    run = _small_run(tmp_path / "run")
    base = [sys.executable, "-m", "hubtools", "build", str(run.path), "--quiet"]
    args = ["--teacher", "t1", "--parallel", "t2", "--out", str(tmp_path / "r")]
    bad = subprocess.run([*base, *args], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    [line] = bad.stderr.splitlines()
    assert line.startswith("error: nothing to release: no query passed by every --parallel")
    assert not (tmp_path / "r").exists()
    ok = subprocess.run([*base, "--teacher", "t3", "--out", str(tmp_path / "r"), "--allow-empty"],
                        capture_output=True, text=True, timeout=120)  # fmt: skip
    assert ok.returncode == 0 and "kept 0 rows" in ok.stdout, ok.stderr
