"""The cleaning building blocks on their own: filters, keys, MinHash/LSH, decisions."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hubtools.errors import UsageError
from hubtools.queries.clean import clean
from hubtools.queries.decontaminate import KNOWN_BENCHMARKS, NgramContamination, parse_benchmarks
from hubtools.queries.dedup import (
    MinHasher,
    MinHashParams,
    candidate_pairs,
    compact_signatures,
    greedy_leaders,
    verify_pairs,
)
from hubtools.queries.filters import FilterBatch, FilterParams, default_filters, first_removal
from hubtools.queries.scan import _last_user_turns
from hubtools.queries.sources import MessagesAdapter, SourceSpec
from hubtools.queries.text import exact_keys, lowered, math_signatures, tokenize
from hubtools.records import Category, Query
from hubtools.run import Run

LONG = (
    "A farmer has {a} sheep and {b} goats grazing in a large green field next to the old "
    "river bank, and every evening she counts all of the animals carefully before locking the "
    "gate of the wooden barn for the night; how many animals does she count in total?"
)


def near_duplicates(texts: list[str], params: MinHashParams = MinHashParams()) -> np.ndarray:
    """``match`` per text (-1 = kept), through the same steps as the clean stage."""
    lower = lowered(pa.array(texts))
    tokens = tokenize(lower)
    hasher = MinHasher(params)
    signatures = hasher.signatures(tokens)
    bands = hasher.band_hashes(signatures)
    eligible = np.ones(len(texts), dtype=bool)
    pairs = candidate_pairs((bands[:, b] for b in range(params.bands)), eligible)
    compact = compact_signatures(signatures)
    pairs, similarity = verify_pairs(
        pairs, lambda rows: compact[rows], math_signatures(lower, tokens), params.threshold
    )
    return greedy_leaders(pairs, similarity, len(texts))[0]


def test_number_variants_are_never_near_duplicates():
    texts = [LONG.format(a=12, b=7), LONG.format(a=13, b=7), LONG.format(a=12, b=7) + " Explain."]
    texts.append(LONG.format(a="twelve", b="seven"))
    texts.append(LONG.format(a="thirteen", b="seven"))
    # One word more than the original: a near duplicate; one number different: kept.
    assert near_duplicates(texts).tolist() == [-1, -1, 0, -1, -1]


def test_candidates_that_differ_only_in_numbers():
    texts = [LONG.format(a=n, b=7) for n in range(10, 30)]
    assert (near_duplicates(texts) == -1).all()


def test_short_queries_match_only_word_for_word():
    texts = ["What is 2+2?", "what is 2 + 2 ?!", "What is 2+3?", "Name a prime.", "Name a prime"]
    texts += ["Name an even number.", "Hi", "Hi!"]
    assert near_duplicates(texts).tolist() == [-1, 0, -1, -1, 3, -1, -1, 6]


def test_exact_keys_ignore_case_and_spacing_not_punctuation():
    keys = exact_keys(
        lowered(pa.array(["Find x-y.", "  find   X-Y. ", "Find x+y.", "Ｆｉｎｄ x-y."]))
    )
    assert keys[0] == keys[1] == keys[3] and keys[0] != keys[2]


def test_a_big_bucket_gives_linear_candidate_pairs():
    """10,000 copies of one text: < 2 pairs per member per band, not 50 million."""
    bands = [np.zeros(10_000, dtype=np.uint64) for _ in range(3)]
    pairs = candidate_pairs(iter(bands), np.ones(10_000, dtype=bool))
    assert len(pairs) < 2 * 10_000
    match, _ = greedy_leaders(pairs, np.ones(len(pairs)), 10_000)
    assert match[0] == -1 and (match[1:] >= 0).all()


def test_greedy_leaders_keep_earlier_decisions():
    """A query that only duplicates a removed query stays: decisions never chain."""
    pairs = np.array([[0, 1], [1, 2]])
    match, _ = greedy_leaders(pairs, np.ones(2), 3)
    assert match.tolist() == [-1, 0, -1]


def batch(texts, categories=None, **present):
    lower = lowered(pa.array(texts))
    n = len(texts)
    return FilterBatch(
        texts=pa.array(texts),
        lower=lower,
        words=tokenize(lower).lengths,
        categories=np.array(categories or ["general"] * n, dtype=object),
        has_reference=np.array(present.get("reference", [False] * n)),
        has_tests=np.array(present.get("tests", [False] * n)),
        has_constraints=np.array(present.get("constraints", [False] * n)),
    )


@pytest.mark.parametrize(
    ("text", "removed_by"),
    [
        ("What is the capital of France?", None),
        ("?!  ...", "empty"),
        ("Hello there", "incomplete"),
        ("Solve the following problem:", "incomplete"),
        ("Read https://example.com/problem and solve it.", "url"),
        ("Visit www.example.org for the rules of the game.", "url"),
        ("Sum the column.\n| a | b |\n|---|---|\n| 1 | 2 |", "table"),
        ("Use the data in <table><tr><td>1</td></tr></table> please.", "table"),
        ("As shown in the figure, find the angle ABC.", "image reference"),
        ("Describe this picture ![cat](cat.png) in detail.", "image reference"),
        ("What is in the image below? Describe it.", "image reference"),
        ("\ufffd\ufffd\ufffd\ufffd text \x07\x07\x07 here ok", "unusual unicode"),
        ("Ｆｕｌｌｗｉｄｔｈ text and $x^2$ maths are fine here.", None),
        ("Сколько будет два плюс два? 二加二等于几？", None),
        ("word " * 5000, "too long"),
    ],
)
def test_each_filter(text, removed_by):
    filters = default_filters(FilterParams())
    index = int(first_removal(filters, batch([text]))[0])
    assert (filters[index].name if index >= 0 else None) == removed_by
    if index >= 0:
        assert filters[index].explain(text).startswith(removed_by)


def test_ground_truth_filter_per_category():
    texts = ["Compute the sum of the first ten primes."] * 5
    categories = ["math", "math", "code", "if", "chat"]
    found = first_removal(
        default_filters(FilterParams()),
        batch(texts, categories, reference=[True, False, False, False, False]),
    )
    names = [f.name for f in default_filters(FilterParams())]
    assert [names[i] if i >= 0 else None for i in found] == [
        None, "no ground truth", "no ground truth", "no ground truth", None,
    ]  # fmt: skip
    off = default_filters(FilterParams(require_ground_truth=False))
    assert (first_removal(off, batch(texts, categories)) == -1).all()


def test_ngram_contamination_ignores_boilerplate_shared_by_many_problems():
    template = "Input is given from Standard Input in the following format and print the answer"
    things = ["stones", "trees", "lakes", "rivers", "roads", "hills", "walls"]
    problems = [
        f"{template}. Problem {i}: count the {w} in the grid." for i, w in enumerate(things)
    ]
    index = NgramContamination(problems, n=8)
    queries = [f"{template}. Find the shortest path between two cities.", problems[3]]
    found = index.find(tokenize(lowered(pa.array(queries))))
    assert found.item.tolist() == [-1, 3]


def test_parse_benchmarks():
    assert parse_benchmarks("aime_2024, math500") == [
        KNOWN_BENCHMARKS["aime_2024"], KNOWN_BENCHMARKS["math500"]
    ]  # fmt: skip
    [custom] = parse_benchmarks("acme/evals:hard@test#question")
    assert (custom.repo, custom.config, custom.split, custom.field) == (
        "acme/evals", "hard", "test", "question"
    )  # fmt: skip
    assert parse_benchmarks("none") == []
    with pytest.raises(UsageError, match="unknown benchmark 'aime'"):
        parse_benchmarks("aime")


def test_messages_adapter_shapes():
    spec = SourceSpec("s", "o/s", Category.CHAT, "messages", fields={"messages": "conv"})
    adapter = MessagesAdapter(spec)
    row = {"conv": [{"from": "human", "value": "Hi, plan a trip."}, {"from": "gpt", "value": "OK"}]}
    assert adapter.to_query(row, 0).messages == [{"role": "user", "content": "Hi, plan a trip."}]
    with pytest.raises(ValueError, match="no user turn"):
        adapter.to_query({"conv": [{"from": "gpt", "value": "Hello"}]}, 1)
    with pytest.raises(ValueError, match="unsupported turn"):
        adapter.to_query({"conv": [{"from": "tool", "value": "{}"}]}, 2)


def test_clean_of_an_empty_pool_and_of_a_tiny_one(tmp_path):
    """No benchmarks (`--benchmarks none`), so no Hub: the stage's edges."""
    run = tmp_path / "run"
    Run.create(run)
    Run.create(run / "pulled")
    result = clean(run, benchmarks=(), progress=False)
    assert (result.queries_in, result.queries_out) == (0, 0)
    Run.open(run / "pulled").add_queries(
        [Query.from_prompt(t, source="s") for t in ("Why is the sky blue?", "why is the SKY blue?")]
    )
    chat = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Name three rivers in France."},
        {"role": "assistant", "content": "Seine, Loire, Rhone."},
        {"role": "user", "content": "And three in Spain?"},
    ]
    Run.open(run / "pulled").add_queries([Query.from_prompt(chat, source="s", category="chat")])
    result = clean(run, progress=False)
    assert (result.queries_in, result.queries_out, result.added) == (3, 2, 2)
    assert "exact dedup" in str(result)
    table = pq.read_table(next((run / "pulled" / "queries").glob("part-00001.parquet")))
    assert _last_user_turns(table["messages"].combine_chunks()).to_pylist() == [
        "And three in Spain?"
    ]
