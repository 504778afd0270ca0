"""`--push-to-hub`: results into the model card's model-index, on the local Hub.

Real huggingface_hub against the session's local Hub (`hub` fixture): the card that
`metadata_update` writes is read back with `ModelCard.load`; a second eval of another
benchmark adds to it, a rerun of the same one replaces its number, other tools' results
and the card's prose stay.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData, metadata_update
from queries_support import seeded_benchmarks  # noqa: F401

from hubtools.errors import PublishError, UsageError
from hubtools.eval.compare import compare
from hubtools.eval.push import SOURCE_NAME, push_results

ROOT = Path(__file__).resolve().parents[1]
REVISIONS = {"math500": "ff5b20257d8185524591543f8ff5993951537bb8",
             "aime_2024": "2fe88a9d0ab6bb4d3e3fa4da7c2d9b5e1b95e7f0"}  # fmt: skip


def results(**benchmarks: float) -> dict:
    table = {
        "math500": ("HuggingFaceH4/MATH-500", "test", 4),
        "aime_2024": ("HuggingFaceH4/aime_2024", "train", 64),
    }
    out = {}
    for name, score in benchmarks.items():
        dataset, split, k = table[name]
        out[name] = {
            "dataset": dataset, "revision": REVISIONS[name], "split": split, "problems": 30,
            "samples_per_problem": k,
            "settings": {"temperature": 0.6, "top_p": 0.95, "max_new_tokens": 49152,
                         "system_prompt": "s", "suffix": "x"},
            "avg_at_k": score, "stderr": 0.01, "pass_at_k": {"1": score},
            "mean_length": 3000.0, "median_length": 2900.0, "truncated_share": 0.0,
            "verifier": "math-verify",
        }  # fmt: skip
    return {"model": "student-7b", "endpoint": "http://127.0.0.1:8000", "benchmarks": out,
            "hubtools_version": "0.1.0", "created": "2025-05-20T00:00:00+00:00",
            "settings": {}}  # fmt: skip


def by_dataset(card: ModelCard) -> dict[str, EvalResult]:
    return {r.dataset_type: r for r in card.data.eval_results or []}


@pytest.fixture
def repo(hub, write_token, unique_name) -> str:
    repo_id = f"acme/{unique_name}"
    HfApi(token=write_token).create_repo(repo_id)
    return repo_id


def test_results_land_in_model_index_and_accumulate(repo, write_token):
    push_results(results(math500=0.9), repo, token=write_token)
    card = ModelCard.load(repo, token=write_token)
    (only,) = card.data.eval_results
    assert (only.dataset_type, only.dataset_name, only.dataset_split) == (
        "HuggingFaceH4/MATH-500",
        "MATH500",
        "test",
    )
    assert only.dataset_revision == REVISIONS["math500"]
    assert (only.metric_type, only.metric_value) == ("avg@4", 90.0)
    assert only.metric_args["k"] == 4 and only.metric_args["temperature"] == 0.6
    assert only.source_name == SOURCE_NAME and only.source_url.startswith("https://")
    assert card.data.model_name == "student-7b"

    # Another tool's result and the card's own words must survive hubtools' pushes.
    other = EvalResult(task_type="text-generation", dataset_type="cais/mmlu", dataset_name="MMLU",
                       metric_type="acc", metric_value=61.0)  # fmt: skip
    metadata_update(repo, ModelCardData(model_name="student-7b", eval_results=[other]).to_dict(),
                    token=write_token)  # fmt: skip

    push_results(results(aime_2024=0.5), repo, token=write_token)  # a second eval
    push_results(results(math500=0.925), repo, token=write_token)  # the same protocol, rerun
    card = ModelCard.load(repo, token=write_token)
    found = by_dataset(card)
    assert sorted(found) == ["HuggingFaceH4/MATH-500", "HuggingFaceH4/aime_2024", "cais/mmlu"]
    assert len(card.data.eval_results) == 3  # one result per benchmark
    assert found["HuggingFaceH4/MATH-500"].metric_value == 92.5
    assert found["HuggingFaceH4/aime_2024"].metric_type == "avg@64"
    assert found["cais/mmlu"].metric_value == 61.0
    info = HfApi(token=write_token).model_info(repo)  # the Hub's cardData says the same
    assert len(info.card_data.eval_results) == 3
    readme = HfApi(token=write_token).hf_hub_download(repo, "README.md")
    assert write_token not in open(readme).read()


def test_concurrent_pushes_do_not_clobber(repo, write_token):
    errors: list[BaseException] = []

    def push(**b):
        try:
            push_results(results(**b), repo, token=write_token)
        except BaseException as err:  # noqa: BLE001  (reported below)
            errors.append(err)

    threads = [threading.Thread(target=push, kwargs=kw)
               for kw in ({"math500": 0.8}, {"aime_2024": 0.4})]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    card = ModelCard.load(repo, token=write_token)
    assert sorted(by_dataset(card)) == ["HuggingFaceH4/MATH-500", "HuggingFaceH4/aime_2024"]


def test_results_file_path_and_refusals(repo, write_token, tmp_path, hub):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results(math500=0.5)))
    assert "/commit/" in push_results(path, repo, token=write_token)
    with pytest.raises(UsageError, match="ORG/MODEL"):
        push_results(path, "no-namespace", token=write_token)
    partial = results(math500=0.5)
    partial["benchmarks"]["math500"]["complete"] = False
    with pytest.raises(UsageError, match="math500 not finished"):
        push_results(partial, repo, token=write_token)
    with pytest.raises(UsageError, match="no benchmark"):
        push_results({"model": "m", "benchmarks": {}}, repo, token=write_token)
    with pytest.raises(PublishError, match="not found"):
        push_results(path, "acme/does-not-exist-xyz", token=write_token)
    reader = hub.token("bob", write=False)
    with pytest.raises(PublishError):
        push_results(path, repo, token=reader)


def test_access_is_checked_before_an_eval(repo, write_token, hub):
    from hubtools.eval.push import check_access

    check_access(repo, token=write_token)
    with pytest.raises(PublishError, match="not found"):
        check_access("acme/does-not-exist-xyz", token=write_token)
    with pytest.raises(PublishError, match="read-only"):
        check_access(repo, token=hub.token("alice", "acme", write=False))
    with pytest.raises(PublishError, match="cannot write to acme"):
        check_access(repo, token=hub.token("carol", write=True))
    with pytest.raises(UsageError):
        check_access("acme/bad name", token=write_token)


def test_eval_cli_pushes_each_benchmark(seeded_benchmarks, repo, write_token, tmp_path):  # noqa: F811
    """Two `hubtools eval --push-to-hub` runs of different benchmarks: one result each."""
    from test_eval_run import MAX_NEW, Scripted, hand_results

    from tests.servers.chat_server import ChatServer

    env = {**os.environ, "HF_TOKEN": write_token, "PYTHONPATH": str(ROOT)}
    with ChatServer(Scripted()) as chat:
        for name in ("math500", "aime_2024"):
            out = subprocess.run(
                [sys.executable, "-m", "hubtools", "eval", "--endpoint", chat.url, "--model",
                 "student", "--benchmarks", name, "--samples", "4", "--limit", "3",
                 "--max-new-tokens", str(MAX_NEW), "--out", str(tmp_path / name), "--quiet",
                 "--push-to-hub", repo],
                env=env, capture_output=True, text=True, timeout=300,
            )  # fmt: skip
            assert out.returncode == 0, out.stderr
            assert f"results added to the model card of {repo}" in out.stderr
    card = ModelCard.load(repo, token=write_token)
    found = by_dataset(card)
    assert sorted(found) == ["HuggingFaceH4/MATH-500", "HuggingFaceH4/aime_2024"]
    for name, dataset in (("math500", "HuggingFaceH4/MATH-500"),
                          ("aime_2024", "HuggingFaceH4/aime_2024")):  # fmt: skip
        written = json.loads((tmp_path / name / "results.json").read_text())["benchmarks"][name]
        result = found[dataset]
        assert result.metric_value == round(100 * hand_results(name, 4)["avg_at_k"], 2)
        assert result.dataset_revision == written["revision"] and result.metric_type == "avg@4"
    assert (
        write_token not in open(HfApi(token=write_token).hf_hub_download(repo, "README.md")).read()
    )
    # The same folders, compared: the core's real results.json read by `eval compare`.
    table = compare([tmp_path / "math500", tmp_path / "aime_2024"]).markdown
    want = 100 * hand_results("math500", 4)["avg_at_k"]
    assert f"| MATH500 (avg@4) | {want:.1f} ± " in table and "student (math500)" in table
