"""The Space's reader on releases with many row groups: paging, filters, joins, old releases."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from huggingface_hub import HfApi
from release_support import expected_passed, make_run

from hubtools.records import ResponseScore
from hubtools.release.build import build
from hubtools.release.publish import publish
from hubtools.space.reader import SpaceData, SpaceDataError


@pytest.fixture(scope="module")
def releases(hub, write_token, tmp_path_factory):
    """t1 and t2 parallel (t2 private, t1 in 3-row row groups); t2 alone; an old t1 release."""
    top = tmp_path_factory.mktemp("space-reader")
    _score(make_run(top / "run", 40))
    name = f"reader-{id(top) % 100000}"
    out = {}
    builds = {"t1": dict(teacher="t1", parallel=["t1", "t2"], max_shard_rows=3),
              "t2": dict(teacher="t2", parallel=["t1", "t2"]),
              "t2-alone": dict(teacher="t2"), "old": dict(teacher="t1")}  # fmt: skip
    for key, args in builds.items():
        folder = top / key
        build(top / "run", out=folder, progress=False, **args)
        if key == "old":  # as built before rows carried query_id and token counts; several
            for part in folder.glob("data/*/*.parquet"):  # row groups a file
                rows = pq.read_table(part).drop_columns(["query_id"]).to_pylist()
                for turn in (t for row in rows for t in row["conversations"]):
                    del turn["info"]["think_tokens"], turn["info"]["answer_tokens"]
                pq.write_table(pa.Table.from_pylist(rows), part, row_group_size=2)
        repo = f"acme/{name}-{key}"
        if key == "old":  # publish verifies rows against today's schema: upload it plainly
            api = HfApi(token=write_token)
            api.create_repo(repo, repo_type="dataset")
            api.upload_folder(repo_id=repo, folder_path=folder, repo_type="dataset")
            api.create_tag(repo, tag="v1.0.0", repo_type="dataset")
        else:
            publish(folder, repo=repo, version="1.0.0", token=write_token, private=key == "t2")
        out[key] = f"{repo}@v1.0.0"
    return out


def _score(run):
    """What `hubtools score` stores, without a model: t1's answers to query i get
    10 * i + attempt think and 5 answer tokens, t2's 7 and 3; no ppl (t1 keeps its
    imported one)."""
    scores = []
    with run.store() as store:
        for attempt in store.iter_unscored(passed_only=False):
            i = int(attempt.text.split(" reasoning ")[1].split(".")[0])
            t1 = attempt.teacher == "t1"
            think, answer = (10 * i + attempt.attempt, 5) if t1 else (7, 3)
            scores.append(ResponseScore(
                query_id=attempt.query_id, teacher=attempt.teacher, attempt=attempt.attempt,
                scorer="stand-in", backend="test", think_tokens=think, answer_tokens=answer,
            ))  # fmt: skip
        store.add_scores(scores)
    return run


def test_paging_filters_and_the_join(releases, write_token, tmp_path):
    data = SpaceData([releases["t1"], releases["t2"]], token=write_token, cache_dir=tmp_path,
                     log=None)  # fmt: skip
    assert data.labels == ["t1", "t2"]
    both = expected_passed(40, "t1") & expected_passed(40, "t2")
    first = data.page(page_size=7)
    assert first.total == len(both) + 1  # + the multi-turn chat query (passed by both)
    seen = [i["query_id"] for p in range(first.pages) for i in data.page(page=p, page_size=7).items]
    assert len(seen) == len(set(seen)) == first.total  # every query once, over the pages
    math = data.page(category="math", page_size=100)
    assert math.total == len([i for i in both if i % 4 == 0])
    assert {i["category"] for i in math.items} == {"math"}
    found = data.page(text="question 12", page_size=100)
    assert [i["snippet"] for i in found.items] == ["Question 12: what is 12 + 12?"]
    # ppl: only t1's answers carry one; the filter on t2 finds none.
    assert data.page(ppl=(2.0, None), release="t1").total == first.total
    low = data.page(ppl=(None, 2.125), release="t1", page_size=100)  # ppl = 2 + i / 100
    assert low.total == len([i for i in both if i <= 12])
    assert data.page(ppl=(0, None), release="t2").total == 0
    item = found.items[0]
    assert item["rows"]["t1"]["ppl"] == pytest.approx(2.12)
    query = data.query(item["query_id"])
    assert query["reference"] == "24" and query["prompt"][0]["value"].startswith("Question 12")
    for t in ("t1", "t2"):
        assert query["answers"][t]["answer"] == "The answer is 24."
        assert query["answers"][t]["think"].startswith(f"{t} reasoning 12.")
        assert query["answers"][t]["truncated"] is False
    assert (
        query["answers"]["t1"]["think_tokens"] == 121
        and query["answers"]["t2"]["think_tokens"] == 7
    )
    # tokens (from the stored scores): every row of both releases has them, so "length"
    # is in tokens. t1's answer to query i: 10 * i + attempt + 5 tokens (attempt 1 when
    # i % 3 == 0), t2's 7 + 3.
    assert data.length_unit == "tokens"
    assert item["rows"]["t1"]["think_tokens"] == 121 and item["rows"]["t1"]["answer_tokens"] == 5
    assert (item["rows"]["t2"]["think_tokens"], item["rows"]["t2"]["answer_tokens"]) == (7, 3)
    short = data.page(tokens=(None, 100), release="t1", page_size=100)
    assert sorted(int(i["snippet"].split()[1].rstrip(":")) for i in short.items) == sorted(
        i for i in both if i <= 9
    )
    assert data.page(length=(None, 100), release="t1").total == short.total
    assert data.page(length=(11, None), release="t2").total == 0
    assert data.page(length=(10, 10), release="t2").total == first.total
    dist = data.distributions("math")
    assert len(dist["t1"]["score"]) == math.total and len(dist["t2"]["ppl"]) == 0
    assert len(dist["t1"]["think_tokens"]) == math.total and set(dist["t2"]["answer_tokens"]) == {3}
    overview = data.overview()
    assert overview[0]["rows"]["all"] == first.total and "Verification" in overview[0]["sections"]
    # A second start with the same commits reuses the index.
    again = SpaceData([releases["t1"], releases["t2"]], token=write_token, cache_dir=tmp_path,
                      log=None)  # fmt: skip
    assert again.index_path == data.index_path and again.page().total == first.total


def test_missing_rows_and_old_releases_join(releases, write_token, tmp_path):
    data = SpaceData([releases["old"], releases["t2-alone"]], token=write_token,
                     cache_dir=tmp_path, log=None)  # fmt: skip
    t1, t2 = expected_passed(40, "t1"), expected_passed(40, "t2")
    # The chat query with its own system turn cannot join: the derived key leaves the
    # system out (the documented limit), so it shows twice, each with one answer missing.
    assert data.facets()["rows"] == len(t1 | t2) + 2
    missing = 0
    for p in range(data.page(page_size=50).pages):
        for item in data.page(page=p, page_size=50).items:
            rows = item["rows"]
            n = int(item["snippet"].split()[1].rstrip(":")) if "Question" in item["snippet"] else -1
            if n >= 0:  # the old release's key (derived from the prompt) joins the new ids
                assert (rows["t1"] is not None) == (n in t1) and (rows["t2"] is not None) == (
                    n in t2
                )
            missing += sum(r is None for r in rows.values())
    assert missing == len(t1 ^ t2) + 2
    only_t2 = min(t2 - t1)
    hit = data.page(text=f"question {only_t2}").items[0]
    query = data.query(hit["query_id"])
    assert query["answers"]["t1"] is None and query["answers"]["t2"]["score"] == 1.0
    # The old release has no token counts: "length" falls back to characters.
    assert data.length_unit == "chars" and query["answers"]["t2"]["answer_tokens"] == 3
    assert data.page(tokens=(0, None), release="t1").total == 0
    assert data.page(tokens=(10, 10), release="t2").total == len(t2) + 1
    chars = data.page(length=(None, 50), release="t1", page_size=100)
    assert chars.total == data.page(chars=(None, 50), release="t1").total > 0
    assert all(i["rows"]["t1"]["think_chars"] + i["rows"]["t1"]["answer_chars"] <= 50
               for i in chars.items)  # fmt: skip


def test_errors_are_one_line(releases, tmp_path):
    with pytest.raises(SpaceDataError, match="not ORG/NAME"):
        SpaceData("nonsense", cache_dir=tmp_path, log=None)
    with pytest.raises(SpaceDataError, match="not found"):  # private without a token
        SpaceData(releases["t2"], cache_dir=tmp_path, log=None)
    with pytest.raises(SpaceDataError, match="revision"):
        SpaceData(releases["t1"].replace("v1.0.0", "v7.0.0"), cache_dir=tmp_path, log=None)
