"""`datasets` push_to_hub / load_dataset round trips against the local Hub."""

from __future__ import annotations

import pytest
from datasets import Dataset, load_dataset
from datasets.exceptions import DatasetNotFoundError
from huggingface_hub import HfApi

ROWS = {
    "default-ish": {"q": ["2+2?", "capital of France?", "sqrt(9)?"], "n": [4, 0, 3]},
    "hard": {"q": ["integral of x", "P vs NP"], "n": [1, 2]},
}


@pytest.fixture
def api(write_token) -> HfApi:
    return HfApi(token=write_token)


@pytest.fixture
def pushed(api, write_token, unique_name) -> str:
    """A dataset repo with two configs pushed by `datasets`, tagged `v1.0`."""
    repo_id = f"alice/{unique_name}"
    for config, rows in ROWS.items():
        Dataset.from_dict(rows).push_to_hub(repo_id, config_name=config, token=write_token)
    api.create_tag(repo_id, tag="v1.0", repo_type="dataset")
    return repo_id


def test_push_two_configs_layout(api, pushed):
    files = set(api.list_repo_files(pushed, repo_type="dataset"))
    data = files - {".gitattributes", "README.md"}
    assert len(files) == len(data) + 2
    assert {f.split("/")[0] for f in data} == set(ROWS)
    assert all(f.endswith(".parquet") for f in data)
    tree = api.list_repo_tree(pushed, repo_type="dataset", recursive=True)
    assert all(e.lfs is not None for e in tree if e.path.endswith(".parquet"))
    card = api.dataset_info(pushed).card_data
    assert sorted(c["config_name"] for c in card["configs"]) == sorted(ROWS)


@pytest.mark.parametrize("config", sorted(ROWS))
def test_load_dataset_at_tag(pushed, write_token, tmp_path, config):
    # Move main past the tag: the tag must still give the pushed rows.
    Dataset.from_dict({"q": ["later"], "n": [9]}).push_to_hub(
        pushed, config_name=config, token=write_token
    )
    ds = load_dataset(pushed, config, revision="v1.0", split="train", cache_dir=str(tmp_path))
    assert ds.to_dict() == ROWS[config]
    latest = load_dataset(pushed, config, split="train", cache_dir=str(tmp_path))
    assert latest.to_dict() == {"q": ["later"], "n": [9]}


def test_load_dataset_streaming(pushed, tmp_path):
    stream = load_dataset(
        pushed, "hard", revision="v1.0", split="train", streaming=True, cache_dir=str(tmp_path)
    )
    assert list(stream) == [{"q": q, "n": n} for q, n in zip(*ROWS["hard"].values(), strict=True)]


def test_private_dataset_needs_token(api, write_token, unique_name, tmp_path):
    repo_id = f"alice/{unique_name}"
    api.create_repo(repo_id, repo_type="dataset", private=True)
    Dataset.from_dict(ROWS["hard"]).push_to_hub(repo_id, token=write_token)
    with pytest.raises(DatasetNotFoundError):
        load_dataset(repo_id, split="train", token=False, cache_dir=str(tmp_path / "anon"))
    ds = load_dataset(repo_id, split="train", token=write_token, cache_dir=str(tmp_path / "tok"))
    assert ds.to_dict() == ROWS["hard"]


def test_missing_dataset_or_revision(pushed, tmp_path):
    with pytest.raises(DatasetNotFoundError):
        load_dataset("alice/no-such-dataset-anywhere", cache_dir=str(tmp_path))
    with pytest.raises(DatasetNotFoundError):
        load_dataset(pushed, "hard", revision="v9.9", cache_dir=str(tmp_path))
