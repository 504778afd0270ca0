"""hubtools import: outputs made elsewhere into a run, then released — incl. real traces."""

from __future__ import annotations

import ast
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import shared_path
from datasets import load_dataset
from huggingface_hub import DatasetCard

from hubtools.errors import InputFileError, UsageError
from hubtools.release.build import build
from hubtools.release.importer import import_outputs
from hubtools.release.publish import publish
from hubtools.run import Run
from hubtools.status import status

MISGUIDED = ("r10528", "q3_235b-think", "q3_30ba3-think")


def _write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_import_stores_attempts_and_verdicts_idempotently(tmp_path):
    records = [
        {"prompt": "What is 2 + 3?", "category": "math", "reference": "5",
         "output": "<think>2 + 3 = 5</think>The answer is $\\boxed{5}$."},
        {"prompt": "What is 2 + 3?", "category": "math", "reference": "5",
         "output": "The answer is $\\boxed{6}$.", "reasoning": "2 + 3 = 6?"},
        {"messages": [{"role": "user", "content": "Tell a joke."}], "category": "chat",
         "output": "<think>pun</think>Why did...", "score": 0.95, "completion_tokens": 42},
    ]  # fmt: skip
    path = _write_jsonl(tmp_path / "out.jsonl", records)
    run = tmp_path / "run"
    first = import_outputs(path, run=run, teacher="ext", workers=1, progress=False)
    assert (first.records, first.stored, first.new_queries) == (3, 3, 2)
    assert (first.scored, first.verified, first.passed) == (1, 2, 2)
    assert first.by_verifier == {"imported": 1, "math-verify": 2}
    counts = status(run).teachers["ext"]
    assert (counts.queries, counts.attempts, counts.passed, counts.failed) == (2, 3, 2, 0)
    again = import_outputs(path, run=run, teacher="ext", workers=1, progress=False)
    assert (again.stored, again.duplicates, again.scored, again.verified) == (0, 3, 0, 0)
    assert "0 new (3 already stored)" in str(again)

    out = build(run, teacher="ext", out=tmp_path / "release", progress=False)
    assert out.rows == {"all": 2, "math": 1, "chat": 1}
    row = pq.read_table(tmp_path / "release/data/chat/train-00000-of-00001.parquet").to_pylist()[0]
    final = row["conversations"][-1]["info"]
    assert final["think_content"] == "pun" and final["verify_score"] == 0.95
    assert "imported file" in (tmp_path / "release" / "README.md").read_text()
    assert Run.open(run).config["teacher:ext"] == {"model": "ext", "imported": True}


def test_bad_line_imports_nothing(tmp_path):
    good = {"prompt": "Hi?", "category": "chat", "output": "Hello", "score": 1}
    path = _write_jsonl(tmp_path / "bad.jsonl", [good, {**good, "score": 3}])
    with pytest.raises(InputFileError, match=r"bad\.jsonl:2: 'score' must be a number in \[0, 1\]"):
        import_outputs(path, run=tmp_path / "run", teacher="x", progress=False)
    assert not (tmp_path / "run").exists()
    typo = _write_jsonl(tmp_path / "typo.jsonl", [{**good, "outptu": "x"}])
    with pytest.raises(InputFileError, match="did you mean 'output'"):
        import_outputs(typo, run=tmp_path / "run", teacher="x", progress=False)
    no_judge = _write_jsonl(tmp_path / "judge.jsonl", [{"prompt": "Hi?", "output": "Hello"}])
    with pytest.raises(UsageError, match="cannot verify"):
        import_outputs(no_judge, run=tmp_path / "run", teacher="x", progress=False)
    assert Run.open(tmp_path / "run").count_queries() == 0


def test_import_reads_parquet(tmp_path):
    table = pa.table({"prompt": ["A?", "B?"], "output": ["<think>a</think>A", "<think>b</think>B"],
                      "score": [1.0, 0.5], "category": ["general", "general"]})  # fmt: skip
    pq.write_table(table, tmp_path / "out.parquet")
    result = import_outputs(tmp_path / "out.parquet", run=tmp_path / "run", teacher="p",
                            progress=False)  # fmt: skip
    assert (result.stored, result.passed) == (2, 1)


def _misguided_jsonl(folder, model, dest):
    """One line per sample: the rubric total_score is the verdict (ast for list reprs)."""
    results = json.loads((folder / f"output_queries_{model}.json").read_text())["results"]
    evaluations = json.loads((folder / f"detailed_evaluations_{model}.json").read_text())
    lines = []
    for item in results:
        outputs, thinking = (
            ast.literal_eval(v) if isinstance(v, str) else v
            for v in (item["output"], item["thinking"])
        )
        rubric = evaluations[item["prompt_id"]][item["llm"]]
        for output, think, verdict in zip(outputs, thinking, rubric, strict=False):
            lines.append({"prompt": item["prompt"], "output": output, "reasoning": think,
                          "score": verdict["total_score"], "model": item["llm"],
                          "category": "general", "source": "cpldcpu/MisguidedAttention",
                          "meta": {"prompt_id": item["prompt_id"]}})  # fmt: skip
    return _write_jsonl(dest, lines)


def test_real_parallel_traces_publish_one_dataset_per_teacher(hub, write_token, unique_name,
                                                               tmp_path):  # fmt: skip
    folder = shared_path("data", "teachers", "misguided_attention")
    run = tmp_path / "run"
    for model in MISGUIDED:
        path = _misguided_jsonl(folder, model, tmp_path / f"{model}.jsonl")
        result = import_outputs(path, run=run, teacher=model, progress=False)
        assert result.stored == result.records and result.scored == result.records
    rows, cards = {}, {}
    for model in MISGUIDED:
        out = tmp_path / model
        built = build(run, teacher=model, out=out, parallel=list(MISGUIDED), progress=False)
        repo = f"acme/{unique_name}-{model}"
        done = publish(out, repo=repo, version="1.0.0", token=write_token)
        assert done.action == "published"
        ds = load_dataset(repo, "general", split="train", revision="v1.0.0", token=write_token)
        rows[model] = sorted(r["conversations"][0]["value"] for r in ds)
        assert {r["conversations"][-1]["info"]["model_name"] for r in ds} == {
            json.loads((folder / f"output_queries_{model}.json").read_text())["results"][0]["llm"]
        }
        assert all(r["conversations"][-1]["info"]["verify_score"] >= 0.9 for r in ds)
        assert built.rows["all"] == len(ds) > 0
        cards[model] = DatasetCard.load(repo, repo_type="dataset", token=write_token).text
    assert rows[MISGUIDED[0]] == rows[MISGUIDED[1]] == rows[MISGUIDED[2]]  # parallel
    for model in MISGUIDED:  # each card shows its own teacher's funnel and statistics
        card = cards[model]
        status_counts = status(run).teachers[model]
        assert f"| teacher | `{model}` |" in card
        assert f"| general | 52 | 52 | {status_counts.attempts}" in card.replace(",", "")
        assert f"{status_counts.passed} |" in card
        assert "the score given with the answer in the imported file" in card
    assert len({c.split("## Statistics")[1] for c in cards.values()}) == 3
