"""`queries pull` against the local Hub: sources of different shapes, provenance, resume."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
from conftest import shared_path
from datasets import Dataset
from huggingface_hub import HfApi

from hubtools.errors import DataSourceError, UsageError
from hubtools.queries.pull import SOURCES_FILE, pool_path, pull, read_provenance
from hubtools.run import Run

ORG = "srcorg"


def ifeval_rows(n: int) -> list[dict]:
    path = shared_path("data", "benchmarks", "ifeval_input_data.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()[:n]]


@pytest.fixture(scope="module")
def sources(hub) -> dict[str, str]:
    """Source datasets of four shapes on the local Hub; returns name -> repo."""
    token = hub.token("source-owner", ORG, write=True)
    repos = {name: f"{ORG}/{name}" for name in ("math", "sharegpt", "chat", "ifeval", "code")}
    if HfApi().repo_exists(repos["code"], repo_type="dataset"):
        return repos
    Dataset.from_list(
        [
            {"problem": "What is 17 * 23?", "answer": 391, "level": "easy"},
            {"problem": "Find x if 2x + 3 = 11.", "answer": 4, "level": "easy"},
            {"problem": "   ", "answer": 0, "level": "broken"},  # unusable: empty
            {"problem": "What is 17 * 23?", "answer": 391, "level": "again"},  # duplicate
        ]
    ).push_to_hub(repos["math"], token=token)
    Dataset.from_list(
        [
            {"conversations": [
                {"from": "system", "value": "You are a poet."},
                {"from": "human", "value": "Write a haiku about rain."},
                {"from": "gpt", "value": "Rain taps the window..."},
                {"from": "human", "value": "Now one about snow."},
                {"from": "gpt", "value": "Snow hushes the street..."},
            ]},
            {"conversations": [{"from": "gpt", "value": "I start, nobody asked."}]},  # unusable
        ]
    ).push_to_hub(repos["sharegpt"], token=token)  # fmt: skip
    Dataset.from_list(
        [
            {"messages": [
                {"role": "user", "content": "Plan a three day trip to Kyoto."},
                {"role": "assistant", "content": "Day 1: ..."},
            ], "id": "u1"},
        ]
    ).push_to_hub(repos["chat"], token=token)  # fmt: skip
    Dataset.from_list(ifeval_rows(5)).push_to_hub(repos["ifeval"], token=token)
    codeforces = json.loads(
        shared_path("data", "code", "deepcoder", "test_code_codeforces.json").read_text()
    )[:3]
    Dataset.from_list(
        [{"problem": r["problem"], "tests": json.dumps(r["tests"])} for r in codeforces]
    ).push_to_hub(repos["code"], token=token)
    return repos


def write_config(path, repos, **extra) -> None:
    entries = [
        {"name": "math", "repo": repos["math"], "category": "math", "shape": "problem",
         "meta": ["level"]},
        {"name": "sharegpt", "repo": repos["sharegpt"], "category": "chat", "shape": "messages",
         "fields": {"messages": "conversations"}},
        {"name": "chat", "repo": repos["chat"], "category": "chat", "shape": "messages"},
        {"name": "ifeval", "repo": repos["ifeval"], "category": "if", "shape": "ifeval"},
        {"name": "code", "repo": repos["code"], "category": "code", "shape": "code",
         "fields": {"prompt": "problem"}},
    ]  # fmt: skip
    for entry in entries:
        entry.update(extra.get(entry["name"], {}))
    path.write_text(json.dumps({"sources": entries}))  # JSON is YAML


def test_pull_maps_every_shape_and_records_commits(sources, tmp_path):
    write_config(tmp_path / "sources.yaml", sources)
    result = pull(tmp_path / "sources.yaml", tmp_path / "run", progress=False)
    print(result)
    counts = {s.name: (s.rows_read, s.added, s.duplicates, s.unusable) for s in result.sources}
    assert counts == {
        "math": (4, 2, 1, 1), "sharegpt": (2, 1, 0, 1), "chat": (1, 1, 0, 0),
        "ifeval": (5, 5, 0, 0), "code": (3, 3, 0, 0),
    }  # fmt: skip
    provenance = read_provenance(tmp_path / "run")
    for name, repo in sources.items():
        assert provenance[name]["commit"] == HfApi().dataset_info(repo).sha
        assert (
            result.sources[[s.name for s in result.sources].index(name)].commit
            == (provenance[name]["commit"])
        )
    assert provenance["math"]["unusable_examples"][0]["row"] == 2
    pool = {q.source + str(q.meta["source_row"]): q for q in Run(pool_path(tmp_path / "run"), {})
            .iter_queries()}  # fmt: skip
    math = pool["math0"]
    assert (math.reference, math.category.value, math.meta["level"]) == ("391", "math", "easy")
    poem = pool["sharegpt0"].messages
    assert [m["role"] for m in poem] == ["system", "user", "assistant", "user"]
    assert poem[-1]["content"] == "Now one about snow."
    assert pool["chat0"].messages == [
        {"role": "user", "content": "Plan a three day trip to Kyoto."}
    ]
    first = ifeval_rows(1)[0]
    assert pool["ifeval0"].constraints == {
        "instruction_id_list": first["instruction_id_list"],
        "kwargs": first["kwargs"],  # the nulls Arrow added to each struct are gone
    }
    assert pool["code0"].tests[0].keys() == {"input", "output"}
    assert Run.open(tmp_path / "run").count_queries() == 0  # only clean admits queries


def test_pull_again_adds_nothing(sources, tmp_path):
    write_config(tmp_path / "sources.yaml", sources)
    pull(tmp_path / "sources.yaml", tmp_path / "run", progress=False)
    parts = sorted((pool_path(tmp_path / "run") / "queries").iterdir())
    again = pull(tmp_path / "sources.yaml", tmp_path / "run", progress=False)
    assert all(s.skipped for s in again.sources)
    assert sorted((pool_path(tmp_path / "run") / "queries").iterdir()) == parts


def test_moved_source_and_changed_definition(sources, hub, tmp_path):
    token = hub.token("source-owner", ORG, write=True)
    repo = f"{ORG}/moving"
    Dataset.from_list([{"problem": "What is 1 + 1?", "answer": "2"}]).push_to_hub(repo, token=token)
    first = HfApi().dataset_info(repo).sha
    config = tmp_path / "sources.yaml"
    config.write_text(f"sources:\n  - {{repo: {repo}, category: math, shape: problem}}\n")
    pull(config, tmp_path / "run", progress=False)
    Dataset.from_list([{"problem": "What is 2 + 2?", "answer": "4"}]).push_to_hub(repo, token=token)
    again = pull(config, tmp_path / "run", progress=False)  # finished: kept as pulled
    assert again.sources[0].skipped and again.sources[0].commit == first
    config.write_text(f"sources:\n  - {{repo: {repo}, category: science, shape: problem}}\n")
    with pytest.raises(DataSourceError, match="another definition"):
        pull(config, tmp_path / "run", progress=False)
    pinned = tmp_path / "pinned.yaml"
    pinned.write_text(
        f"sources:\n  - {{repo: {repo}, revision: {first}, category: math, shape: problem}}\n"
    )
    result = pull(pinned, tmp_path / "pinned-run", progress=False)
    assert result.sources[0].commit == first and result.sources[0].added == 1


def test_bad_sources_are_clear_errors(sources, tmp_path):
    config = tmp_path / "sources.yaml"
    config.write_text(
        f"sources:\n  - {{repo: {sources['math']}, category: math, shape: problem,"
        " fields: {prompt: question}}\n"
    )
    with pytest.raises(DataSourceError, match="no column 'question'.*problem, answer, level"):
        pull(config, tmp_path / "run", progress=False)
    config.write_text(
        f"sources:\n  - {{repo: {sources['math']}, category: math, shape: problem,"
        " fields: {prompt: answer}}\n"  # a column, but no row has a text prompt there
    )
    with pytest.raises(DataSourceError, match="none of the first 4 rows"):
        pull(config, tmp_path / "run", progress=False)
    assert read_provenance(tmp_path / "run") == {}  # nothing recorded: fix it and pull
    config.write_text("sources:\n  - {repo: nobody/nothing, category: math, shape: problem}\n")
    with pytest.raises(DataSourceError, match="nobody/nothing not found"):
        pull(config, tmp_path / "run", progress=False)
    config.write_text(f"sources:\n  - {{repo: {sources['math']}, category: maths, shape: x}}\n")
    with pytest.raises(UsageError, match="unknown category 'maths'"):
        pull(config, tmp_path / "run", progress=False)
    config.write_text(
        f"sources:\n  - {{repo: {sources['math']}, category: math, shape: problem,"
        " fields: {promt: problem}}\n"
    )
    with pytest.raises(UsageError, match="no field 'promt'"):
        pull(config, tmp_path / "run", progress=False)


def test_killed_pull_resumes_without_loss_or_duplicates(hub, tmp_path):
    token = hub.token("source-owner", ORG, write=True)
    repo = f"{ORG}/big-source"
    rows = [{"problem": f"Compute {i} + {i * 7} and explain.", "answer": str(8 * i)}
            for i in range(12_000)]  # fmt: skip
    if not HfApi().repo_exists(repo, repo_type="dataset"):
        Dataset.from_list(rows).push_to_hub(repo, token=token)
    config = tmp_path / "sources.yaml"
    config.write_text(
        f"sources:\n  - {{name: big, repo: {repo}, category: math, shape: problem}}\n"
    )
    run = tmp_path / "run"
    command = [sys.executable, "-m", "hubtools", "queries", "pull", "--config", str(config)]
    command += ["--run", str(run), "--chunk-rows", "500", "--quiet"]
    proc = subprocess.Popen(command, stderr=subprocess.PIPE)
    state = pool_path(run) / SOURCES_FILE
    deadline = time.monotonic() + 120
    while proc.poll() is None:
        assert time.monotonic() < deadline
        if state.exists() and 2000 <= json.loads(state.read_text())["sources"]["big"]["rows_read"]:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = json.loads(state.read_text())["sources"]["big"]
    assert not done["done"] and done["rows_read"] < 12_000, "finished before the kill"
    finished = subprocess.run(command, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    pool = Run(pool_path(run), {})
    ids = [q.query_id for q in pool.iter_queries()]
    assert len(ids) == len(set(ids)) == 12_000
    assert sorted(q.meta["source_row"] for q in pool.iter_queries()) == list(range(12_000))
    entry = read_provenance(run)["big"]
    assert (entry["rows_read"], entry["unusable"], entry["done"]) == (12_000, 0, True)
