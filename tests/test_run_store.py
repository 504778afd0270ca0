import json
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from hubtools.errors import RunStoreError, UsageError
from hubtools.records import Attempt, Query, ResponseScore, Verdict
from hubtools.run import Run, shard_of
from hubtools.status import status


def queries(n, category="math", prefix="Question"):
    return [Query.from_prompt(f"{prefix} {i}?", source="test", category=category) for i in range(n)]


def attempt(query_id, k=0, teacher="am", **kwargs):
    return Attempt(query_id=query_id, teacher=teacher, attempt=k, text=f"try {k}", **kwargs)


def verdict(query_id, k=0, score=1.0, teacher="am"):
    return Verdict(query_id=query_id, teacher=teacher, attempt=k, verifier="math", score=score)


@pytest.fixture
def run(tmp_path):
    return Run.create(tmp_path / "run", {"teachers": ["am"], "generate": {"max_attempts": 4}})


def test_config_is_frozen(run):
    assert Run.create(run.path, {"generate": {"max_attempts": 4}, "teachers": ["am"]}) == run
    with pytest.raises(RunStoreError) as err:
        Run.create(run.path, {"teachers": ["am", "r1"], "generate": {"max_attempts": 4, "k": 1}})
    assert "generate.k: unset in run.yaml, 1 given" in str(err.value)
    assert "teachers: ['am'] in run.yaml, ['am', 'r1'] given" in str(err.value)
    assert Run.open(run.path).config == {"teachers": ["am"], "generate": {"max_attempts": 4}}


def test_open_and_create_refuse_other_directories(tmp_path):
    with pytest.raises(RunStoreError, match="is not a run directory"):
        Run.open(tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(RunStoreError, match="exists and is not a run"):
        Run.create(tmp_path, {})
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "run.yaml").write_text("teachers: [am\n")
    with pytest.raises(RunStoreError, match="run.yaml is not valid YAML: while parsing") as err:
        Run.open(tmp_path / "broken")
    assert "\n" not in str(err.value)


def test_add_queries_dedups_across_and_within_batches(run):
    first = run.add_queries(queries(5))
    assert (first.added, first.duplicates) == (5, 0)
    again = queries(8) + [Query.from_prompt(" Question  7?\n", source="other")]
    second = run.add_queries(again)
    assert (second.added, second.duplicates) == (3, 6)
    assert str(second) == "added 3 queries, skipped 6 duplicates"
    assert run.add_queries(queries(8)).added == 0
    assert sorted(p.name for p in (run.path / "queries").iterdir()) == [
        ".lock",
        "part-00000.categories.json",
        "part-00000.parquet",
        "part-00001.categories.json",
        "part-00001.parquet",
    ]
    assert run.count_queries() == 8
    assert [q.query_id for q in run.iter_queries()] == [q.query_id for q in queries(8)]


def test_add_queries_is_all_or_nothing(run):
    def failing():
        yield from queries(3)
        raise ValueError("bad record")

    with pytest.raises(ValueError, match="bad record"):
        run.add_queries(failing())
    assert run.count_queries() == 0
    assert [p.name for p in (run.path / "queries").iterdir()] == [".lock"]


def test_iter_queries_filters_by_category_and_shard(run):
    run.add_queries(queries(30) + queries(20, "code", "Program"))
    assert run.categories() == {"math": 30, "code": 20}
    assert {q.category.value for q in run.iter_queries(category="code")} == {"code"}
    assert len(list(run.iter_queries(category="code"))) == 20
    shards = [{q.query_id for q in run.iter_queries(shard=(i, 3))} for i in range(3)]
    assert set().union(*shards) == {q.query_id for q in run.iter_queries()}
    assert sum(map(len, shards)) == 50 and all(shards)
    assert all(shard_of(qid, 3) == i for i, ids in enumerate(shards) for qid in ids)


def test_queries_keep_every_field(run):
    query = Query.from_prompt(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Sort [2, 1]."}],
        source="kodcode",
        category="code",
        reference="[1, 2]",
        tests=[{"input": "[2, 1]", "output": "[1, 2]"}],
        meta={"difficulty": "easy", "tags": ["sorting"]},
    )
    run.add_queries([query])
    assert list(run.iter_queries()) == [query]


def test_attempts_are_written_once(run):
    [query] = queries(1)
    with run.store() as store:
        assert store.add_attempts([attempt(query.query_id, 0), attempt(query.query_id, 1)]) == 2
        changed = attempt(query.query_id, 0, params={"seed": 9})
        assert store.add_attempts([changed, attempt(query.query_id, 2)]) == 1
        assert store.add_verdicts([verdict(query.query_id, 0, 0.2)]) == 1
        assert store.add_verdicts([verdict(query.query_id, 0, 1.0)]) == 0
        assert store.counts()["am"].attempts == 3
        [(first, _)] = store.iter_passed("am", threshold=0.1)
        assert first.params == {}  # the first write won
        with pytest.raises(RunStoreError, match="attempt that is not stored"):
            store.add_verdicts([verdict(query.query_id, 1), verdict(query.query_id, 7)])
        assert [a.attempt for a in store.iter_unverified()] == [1, 2]  # the batch left nothing


def test_unfinished_says_what_to_send_next(run):
    ids = [q.query_id for q in queries(6)]
    fresh, failed, passed, waiting, exhausted, errored = ids
    with run.store() as store:
        store.add_attempts(
            [
                attempt(failed, 0),
                attempt(passed, 0),
                attempt(passed, 1),
                attempt(waiting, 0),
                *(attempt(exhausted, k) for k in range(3)),
                attempt(errored, 0, error="timeout after 3 retries"),
            ]
        )
        store.add_verdicts(
            [
                verdict(failed, 0, 0.4),
                verdict(passed, 0, 0.0),
                verdict(passed, 1, 0.95),
                *(verdict(exhausted, k, 0.1) for k in range(3)),
            ]
        )
        todo = list(store.unfinished("am", ids, max_attempts=3))
        assert todo == [(fresh, 0), (failed, 1), (errored, 1)]
        assert list(store.unfinished("r1", ids[:2], max_attempts=3)) == [(fresh, 0), (failed, 0)]
        assert list(store.unfinished("am", [failed], max_attempts=3, threshold=0.3)) == []
        assert [a.query_id for a in store.iter_unverified()] == [waiting]
        assert [(a.attempt, v.score) for a, v in store.iter_passed("am")] == [(1, 0.95)]


def test_iterators_page_through_large_stores(run):
    ids = sorted(q.query_id for q in queries(1200))
    with run.store() as store:
        store.add_attempts(attempt(qid, k) for qid in ids for k in range(2))
        store.add_verdicts(verdict(qid, k, score=0.5 * k) for qid in ids for k in range(2))
        assert [a.query_id for a, _ in store.iter_passed("am", threshold=0.5)] == ids
        assert [v.attempt for _, v in store.iter_passed("am", threshold=0.5)] == [1] * 1200
        assert [a.query_id for a, _ in store.iter_passed("am", threshold=0.0)] == ids
        store.add_attempts(attempt(qid, 2) for qid in ids)
        assert [a.query_id for a in store.iter_unverified("am")] == ids


def test_status_counts_queries_and_teachers(run):
    qs = queries(4) + queries(2, "code", "Program")
    run.add_queries(qs)
    ids = [q.query_id for q in qs]
    with run.store() as store:
        store.add_attempts([attempt(i, teacher=t) for i in ids[:3] for t in ("am", "r1")])
        store.add_attempts([attempt(ids[3], 0, error="HTTP 500"), attempt(ids[0], 1)])
        store.add_verdicts([verdict(ids[0], 0, 0.3), verdict(ids[0], 1), verdict(ids[1], 0, 0.1)])
        store.add_verdicts([verdict(ids[2], 0, teacher="r1")])
    result = status(run.path)
    assert result.queries == {"math": 4, "code": 2}
    counts = result.to_dict()["teachers"]
    assert counts["am"] == {"queries": 4, "attempts": 5, "errors": 1, "passed": 1, "failed": 1}
    assert counts["r1"] == {"queries": 3, "attempts": 3, "errors": 0, "passed": 1, "failed": 0}
    json.dumps(result.to_dict())
    table = result.render().splitlines()
    assert table[0] == f"run {run.path} (1 shard, pass threshold 0.9)"
    assert table[-2].split() == ["am", "4", "5", "1", "1", "1"]
    assert "no attempts yet" in status(Run.create(run.path.with_name("empty"), {}).path).render()


def test_shards_merge_without_duplicates(run):
    qs = queries(40)
    run.add_queries(qs)
    for i in range(4):
        with run.store(shard=(i, 4)) as store:
            mine = [q.query_id for q in run.iter_queries(shard=(i, 4))]
            store.add_attempts(attempt(qid) for qid in mine)
            store.add_verdicts(verdict(qid, score=0.5 + (int(qid, 16) % 2) / 2) for qid in mine)
    passed = sum(int(q.query_id, 16) % 2 for q in qs)
    assert [p.name for p in run.shard_paths()][1] == "shard-00001-of-00004.sqlite"
    assert status(run.path).teachers["am"].attempts == 40
    assert status(run.path).shards == 4
    with run.merge_shards() as merged:
        assert merged.counts()["am"].attempts == 40
        assert merged.counts()["am"].passed == passed
    extra = next(q.query_id for q in run.iter_queries(shard=(2, 4)))
    with run.store(shard=(2, 4)) as store:
        store.add_attempts([attempt(extra, 1)])
    with run.merge_shards() as merged:
        assert merged.counts()["am"].attempts == 41
        assert len(list(merged.iter_passed("am"))) == passed
    assert status(run.path).teachers["am"].attempts == 41  # merged.sqlite is not a shard
    # A verdict replaced in a shard (verify --force) replaces the merged copy too.
    flipped = next(q.query_id for q in run.iter_queries(shard=(1, 4)))  # odd ids: passed
    with run.store(shard=(1, 4)) as store:
        store.replace_verdicts([verdict(flipped, score=0.0)])
    with run.merge_shards() as merged:
        assert merged.counts()["am"].passed == passed - 1


def test_a_run_keeps_its_shard_count(run):
    qs = queries(10)
    home = shard_of(qs[0].query_id, 4)
    stranger = next(q.query_id for q in qs if shard_of(q.query_id, 4) != home)
    with run.store(shard=(home, 4)) as store:
        wrong = f"belongs to shard {shard_of(stranger, 4)}/4, not {home}/4"
        with pytest.raises(RunStoreError, match=wrong):
            store.add_attempts([attempt(qs[0].query_id), attempt(stranger)])
        with pytest.raises(RunStoreError, match=wrong):
            list(store.unfinished("am", [stranger], max_attempts=1))
        assert store.counts() == {}
        store.add_attempts([attempt(qs[0].query_id)])
    with pytest.raises(RunStoreError, match="stores attempts in 4 shards; use --shard i/4"):
        run.store(shard=(0, 2))
    with pytest.raises(UsageError, match="bad shard 4/4"):
        run.store(shard=(4, 4))


WRITER = textwrap.dedent(
    """
    import sys
    from hubtools.records import Attempt
    from hubtools.run import Run

    store = Run.open(sys.argv[1]).store()
    first, last = int(sys.argv[2]), int(sys.argv[3])
    for batch in range(first, last):
        new = store.add_attempts(
            Attempt(query_id=f"{batch:016x}{i:016x}", teacher="am", attempt=0, text="x" * 4000)
            for i in range(50)
        )
        print(batch, new, flush=True)
    """
)


def stored_batches(database):
    with sqlite3.connect(database) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        rows = db.execute("SELECT substr(query_id, 1, 16), COUNT(*) FROM attempts GROUP BY 1")
        sizes = {int(prefix, 16): n for prefix, n in rows}
    assert set(sizes.values()) <= {50}, "a batch was stored in part"
    return set(sizes)


def test_killed_writer_loses_no_committed_batch(run):
    rng = random.Random(7)
    committed: set[int] = set()
    for _ in range(4):  # each restart re-sends everything from batch 0, as a resume does
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(run.path), "0", "1000000"],
            stdout=subprocess.PIPE,
            text=True,
        )
        lines = [writer.stdout.readline()]
        time.sleep(rng.uniform(0.02, 0.2))
        writer.kill()
        lines += writer.stdout.readlines()
        assert writer.wait() == -signal.SIGKILL
        new = dict(tuple(map(int, line.split())) for line in lines)
        assert all(new[batch] == 0 for batch in committed & new.keys()), "a batch written twice"
        committed |= new.keys()
        stored = stored_batches(run.shard_paths()[0])
        assert committed <= stored, "a batch reported as committed was lost"
        assert len(stored) <= len(committed) + 1


def test_config_sections_freeze_when_first_written(tmp_path):
    """`queries add` makes a run with no sections; later stages add theirs, never change one."""
    path = tmp_path / "run"
    Run.create(path, {})
    run = Run.create(path, {"sampling": {"temperature": 0.6}, "max_attempts": 8})
    assert run.config == {"sampling": {"temperature": 0.6}, "max_attempts": 8}
    # Bringing a frozen section unchanged, plus a new one, is fine.
    run = Run.create(path, {"sampling": {"temperature": 0.6}, "verify": {"math_timeout_s": 5}})
    assert set(run.config) == {"sampling", "max_attempts", "verify"}
    assert Run.open(path).config == run.config
    with pytest.raises(RunStoreError, match=r"sampling.temperature: 0.6 in run.yaml, 1.0 given"):
        Run.create(path, {"sampling": {"temperature": 1.0}, "other": 1})
    assert "other" not in Run.open(path).config  # a refused config adds nothing


def score(query_id, k=0, ppl=2.0, teacher="am"):
    return ResponseScore(
        query_id=query_id, teacher=teacher, attempt=k, scorer="m", backend="local", ppl=ppl,
        nll_sum=0.5, scored_tokens=10, total_tokens=12, token_source="teacher",
    )  # fmt: skip


def test_scores_are_keyed_like_verdicts_and_only_passed_attempts_wait_for_one(run):
    ids = [q.query_id for q in queries(4)]
    run.add_queries(queries(4))
    with run.store() as store:
        store.add_attempts([attempt(i) for i in ids] + [attempt(ids[0], 1, error="boom")])
        store.add_verdicts([verdict(ids[0]), verdict(ids[1]), verdict(ids[2], score=0.2)])
        assert [a.query_id for a in store.iter_unscored()] == sorted(ids[:2])
        assert store.count_unscored() == 2
        assert store.count_unscored(passed_only=False) == 4  # errors never
        assert store.add_scores([score(ids[0])]) == 1
        assert store.add_scores([score(ids[0], ppl=9.0)]) == 0  # first write wins
        assert [a.query_id for a in store.iter_unscored()] == [ids[1]]
        assert store.count_unscored(scored=True) == 2
        store.add_scores([score(ids[0], ppl=3.0)], replace=True)
        assert [s.ppl for s in store.iter_scores("am")] == [3.0]
        assert store.scores_for([(ids[0], "am", 0), (ids[1], "am", 0)]) == {
            (ids[0], "am", 0): score(ids[0], ppl=3.0)
        }
        with pytest.raises(RunStoreError):
            store.add_scores([score("f" * 32)])  # no such attempt
    with pytest.raises(ValueError):
        score(ids[0], ppl=0.5)
