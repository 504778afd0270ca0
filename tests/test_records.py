import copy
import hashlib
import json

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hubtools.records import (
    RELEASE_FEATURES,
    RELEASE_SCHEMA,
    Attempt,
    Category,
    Query,
    ReleaseRow,
    Turn,
    TurnInfo,
    Verdict,
    query_id_for,
)


def user(text):
    return [{"role": "user", "content": text}]


def test_query_id_is_stable():
    # Ids are persisted in runs and shared across teachers: the scheme must not drift.
    scheme = hashlib.blake2b(b'[["user","What is 2 + 2?"]]', digest_size=16).hexdigest()
    assert query_id_for(user(" What is 2 +  2?")) == scheme == "d3ba9969eca81991a451b6ffdda35f1d"


@pytest.mark.parametrize(
    "variant",
    [
        "  What is\t2 + 2?\n",  # whitespace runs and ends
        "What\u00a0is 2\u2003+ 2?",  # no-break and em spaces
        "What is ２ ＋ ２?",  # full-width digits and plus (NFKC)
        "What is 2 +\n\n 2?",
    ],
)
def test_query_id_ignores_cosmetic_variants(variant):
    assert query_id_for(user(variant)) == query_id_for(user("What is 2 + 2?"))


def test_query_id_tells_different_prompts_apart():
    ids = {
        query_id_for(user("What is 2 + 2?")),
        query_id_for(user("What is 2 + 3?")),
        query_id_for(user("what is 2 + 2?")),  # case is meaning, not cosmetics
        query_id_for([{"role": "system", "content": "What is 2 + 2?"}, *user("")]),
        query_id_for([*user("What is"), {"role": "assistant", "content": "?"}, *user("2 + 2?")]),
        query_id_for([{"role": "system", "content": "Be terse."}, *user("What is 2 + 2?")]),
    }
    assert len(ids) == 6


def test_query_id_covers_the_whole_conversation():
    def chat(first):
        return [*user(first), {"role": "assistant", "content": "Sure."}, *user("Go on.")]

    assert query_id_for(chat("Tell me a story.")) != query_id_for(chat("Tell me a joke."))
    assert query_id_for(chat("Tell me  a story.")) == query_id_for(chat("Tell me a story."))
    as_tuple = Query.from_prompt(tuple(chat("Tell me a story.")), source="s")
    assert as_tuple.query_id == query_id_for(chat("Tell me a story."))


def test_query_round_trips_through_json():
    query = Query.from_prompt(
        "Write a haiku without commas.",
        source="ifeval",
        category="if",
        reference=None,
        constraints={"instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]},
        meta={"key": 1000},
    )
    assert query.category is Category.IF
    assert query.query_id == query_id_for(query.messages)
    data = json.loads(json.dumps(query.to_dict()))
    assert data["category"] == "if"
    assert Query.from_dict(data) == query


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"category": "maths"}, "unknown category 'maths'; use one of: math, code"),
        ({"reference": 42}, "'reference' must be a string"),
        ({"tests": {"input": "1"}}, "'tests' must be a list"),
        ({"constraints": {"instruction_id_list": ["a"], "kwargs": []}}, "'constraints' must be"),
        ({"meta": ["x"]}, "'meta' must be an object"),
        ({"source": ""}, "'source' must be a non-empty string"),
    ],
)
def test_query_rejects_bad_fields(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Query.from_prompt("Hi", **{"source": "s", **kwargs})


@pytest.mark.parametrize(
    ("messages", "message"),
    [
        ([], "non-empty list"),
        ([{"role": "human", "content": "Hi"}], "role 'human'"),
        ([{"role": "user", "text": "Hi"}], "exactly 'role' and 'content'"),
        ([{"role": "user", "content": 3}], "'content' must be a string"),
        ([*user("Hi"), {"role": "system", "content": "x"}, *user("Hi")], "system turn"),
        ([*user("Hi"), {"role": "assistant", "content": "Hello"}], "last turn"),
        (user(" \n"), "prompt .* is empty"),
    ],
)
def test_query_rejects_bad_messages(messages, message):
    with pytest.raises(ValueError, match=message):
        Query.from_prompt(messages, source="s")


def test_attempt_and_verdict_round_trip():
    attempt = Attempt(
        query_id="0" * 32,
        teacher="am-thinking-v1",
        attempt=2,
        params={"seed": 7, "temperature": 0.6},
        text="<think>4</think><answer>4</answer>",
        think="4",
        answer="4",
        finish_reason="stop",
        prompt_tokens=12,
        completion_tokens=9,
        latency_s=1.5,
        model="a-m-team/AM-Thinking-v1",
        started_at=1_700_000_000.0,
        finished_at=1_700_000_001.5,
    )
    verdict = Verdict(
        query_id="0" * 32, teacher="am-thinking-v1", attempt=2, verifier="math", score=1
    )
    assert Attempt.from_dict(json.loads(json.dumps(attempt.to_dict()))) == attempt
    assert Verdict.from_dict(json.loads(json.dumps(verdict.to_dict()))) == verdict
    assert isinstance(verdict.score, float)


@pytest.mark.parametrize("score", [1.01, -0.1, float("nan"), True, "1"])
def test_verdict_score_must_be_in_unit_interval(score):
    with pytest.raises(ValueError, match="score must be a number in"):
        Verdict(query_id="0" * 32, teacher="t", attempt=0, verifier="v", score=score)


def test_attempt_index_must_be_non_negative():
    with pytest.raises(ValueError, match="attempt must be an integer >= 0"):
        Attempt(query_id="0" * 32, teacher="t", attempt=-1)


def release_row(query, answer, *, score=1.0, ppl=None, tokens=(None, None), system=""):
    human = [Turn("human", m["content"], TurnInfo.for_query(query)) for m in query.messages]
    assistant = Turn(
        "assistant",
        f"<think>Let me see.</think>\n<answer>{answer}</answer>",
        TurnInfo.for_query(
            query,
            think_content="Let me see.",
            answer_content=answer,
            verify_score=score,
            model_name="am_thinking_v1",
            ppl=ppl,
            think_tokens=tokens[0],
            answer_tokens=tokens[1],
        ),
    )
    return ReleaseRow(system, [*human, assistant])


@pytest.fixture
def rows_by_category():
    math = Query.from_prompt("1 + 1?", source="numina", category="math", reference="2")
    code = Query.from_prompt(
        "Read n, print n squared.",
        source="prime",
        category="code",
        tests=[{"input": "3\n", "output": "9\n"}, {"input": "0\n", "output": "0\n"}],
    )
    ifeval = Query.from_prompt(
        "Answer in at least 300 words.",
        source="ifeval",
        category="if",
        constraints={
            "instruction_id_list": ["length_constraints:number_words"],
            "kwargs": [{"relation": "at least", "num_words": 300}],
        },
    )
    chat = Query.from_prompt(
        [*user("Hi!"), {"role": "assistant", "content": "Hello."}, *user("Tell me a joke.")],
        source="ultrachat",
        category="chat",
    )
    return {
        "math": [release_row(math, "2", ppl=2.5, tokens=(4, 1))],
        "code": [release_row(code, "print(int(input())**2)", score=0.9, ppl=3.1)],
        "if": [release_row(ifeval, "words " * 300, score=0.5)],
        "chat": [release_row(chat, "A joke.", system="Be funny.")],
    }


def test_release_features_and_schema_agree():
    assert datasets.Features.from_arrow_schema(RELEASE_SCHEMA) == RELEASE_FEATURES
    info = RELEASE_SCHEMA.field("conversations").type.value_type.field("info").type
    assert [info.field(i).name for i in range(info.num_fields)] == list(TurnInfo.__slots__)
    assert info.field("verify_score").type == info.field("ppl").type == pa.float64()
    assert info.field("think_tokens").type == info.field("answer_tokens").type == pa.int64()


def test_every_category_casts_to_the_release_schema(rows_by_category):
    for rows in rows_by_category.values():
        table = pa.Table.from_pylist([r.to_dict() for r in rows], schema=RELEASE_SCHEMA)
        assert table.schema.equals(RELEASE_SCHEMA)
        assert [ReleaseRow.from_dict(r) for r in table.to_pylist()] == rows


def test_release_configs_load_with_one_schema(rows_by_category, tmp_path):
    # The published AM dataset fails here: its info fields change type between files.
    files = {}
    for name, rows in rows_by_category.items():
        files[name] = str(tmp_path / f"{name}.parquet")
        table = pa.Table.from_pylist([r.to_dict() for r in rows], schema=RELEASE_SCHEMA)
        pq.write_table(table, files[name])
    loaded = datasets.load_dataset("parquet", data_files=files, cache_dir=str(tmp_path / "cache"))
    for name, rows in rows_by_category.items():
        assert loaded[name].features == RELEASE_FEATURES
        assert [ReleaseRow.from_dict(r) for r in loaded[name]] == rows
    merged = datasets.concatenate_datasets(list(loaded.values()))
    assert len(merged) == len(rows_by_category)


def test_a_release_without_token_counts_still_loads(rows_by_category, tmp_path):
    """Releases made before info.think_tokens/answer_tokens existed: same rows, counts null."""
    features = copy.deepcopy(RELEASE_FEATURES)
    info = features["conversations"].feature["info"]
    del info["think_tokens"], info["answer_tokens"]
    rows = [r.to_dict() for rs in rows_by_category.values() for r in rs]
    for row in rows:
        for turn in row["conversations"]:
            del turn["info"]["think_tokens"], turn["info"]["answer_tokens"]
    path = tmp_path / "old.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=features.arrow_schema), path)
    loaded = datasets.load_dataset("parquet", data_files=str(path), cache_dir=str(tmp_path / "c"))
    read = [ReleaseRow.from_dict(r) for r in loaded["train"]]
    assert [r.conversations[-1].value for r in read] == [
        r.conversations[-1].value for rs in rows_by_category.values() for r in rs
    ]
    assert read[0].conversations[-1].info.think_tokens is None
    assert rows_by_category["math"][0].conversations[-1].info.answer_tokens == 1


def test_structured_info_is_json_text(rows_by_category):
    code_human, code_answer = rows_by_category["code"][0].conversations
    assert json.loads(code_answer.info.test_case) == [
        {"input": "3\n", "output": "9\n"},
        {"input": "0\n", "output": "0\n"},
    ]
    assert code_human.info.verify_score is None
    ifeval = rows_by_category["if"][0].conversations[-1].info
    assert json.loads(ifeval.instruction_constrain)["kwargs"] == [
        {"relation": "at least", "num_words": 300}
    ]
    assert rows_by_category["math"][0].conversations[-1].info.ground_truth == "2"


def test_turn_speaker_is_checked():
    with pytest.raises(ValueError, match="'human' or 'assistant'"):
        Turn("user", "Hi")


def test_to_dict_is_asdict_with_containers_copied():
    # to_dict skips asdict's deepcopy of leaves; the result must stay the same, and a
    # caller changing the dict it got must not change the record.
    from dataclasses import asdict

    attempt = Attempt(query_id="0" * 32, teacher="t", attempt=1,
                      params={"seed": 3, "stop": ["</s>"], "extra_body": {"k": [1, {"x": 2}]}},
                      text="<think>a</think>b", think="a", answer="b")  # fmt: skip
    verdict = Verdict(query_id="0" * 32, teacher="t", attempt=1, verifier="math", score=1,
                      details={"gold": ["42"], "nested": {"a": (1, 2)}})  # fmt: skip
    query = Query.from_prompt(
        "What is 2 + 2?", source="s", category="math", tests=[{"input": "1"}], meta={"tags": ["x"]}
    )
    for record in (attempt, verdict):
        assert record.to_dict() == asdict(record)
    assert query.to_dict() == {**asdict(query), "category": "math"}
    out = attempt.to_dict()
    out["params"]["extra_body"]["k"][1]["x"] = 99
    out["params"]["stop"].append("x")
    assert attempt.params["extra_body"]["k"][1]["x"] == 2 and attempt.params["stop"] == ["</s>"]
    assert verdict.to_dict()["details"]["nested"]["a"] == (1, 2)
