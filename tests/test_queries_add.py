import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hubtools.errors import InputFileError, RunStoreError, UsageError
from hubtools.queries import add
from hubtools.records import Category, query_id_for
from hubtools.run import Run

SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def snapshot(run_dir):
    return sorted(
        (p.relative_to(run_dir), p.read_bytes()) for p in run_dir.rglob("*") if p.is_file()
    )


RECORDS = [
    {"prompt": "What is 7 * 6?", "category": "math", "reference": "42"},
    {
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Name a prime."},
            {"role": "assistant", "content": "2"},
            {"role": "user", "content": "Another one."},
        ],
        "category": "chat",
        "source": "ultrachat",
    },
    {
        "prompt": "Print the square of n.",
        "category": "code",
        "tests": [{"input": "3\n", "output": "9\n"}],
        "meta": {"difficulty": "easy"},
    },
    {
        "prompt": "Describe Paris without commas.",
        "category": "if",
        "constraints": {"instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]},
    },
    {"prompt": "Why is the sky blue?"},
]


def test_add_jsonl_creates_the_run(tmp_path):
    file = write_jsonl(tmp_path / "mixed.jsonl", RECORDS)
    result = add(file, tmp_path / "run")
    assert (result.added, result.duplicates) == (5, 0)
    run = Run.open(tmp_path / "run")
    loaded = {q.query_id: q for q in run.iter_queries()}
    math = loaded[query_id_for([{"role": "user", "content": "What is 7 * 6?"}])]
    assert (math.category, math.source, math.reference) == (Category.MATH, "mixed.jsonl", "42")
    chat = loaded[query_id_for(RECORDS[1]["messages"])]
    assert chat.messages == RECORDS[1]["messages"] and chat.source == "ultrachat"
    assert run.categories() == {"math": 1, "code": 1, "if": 1, "chat": 1, "general": 1}
    code = next(run.iter_queries(category="code"))
    assert code.tests == [{"input": "3\n", "output": "9\n"}] and code.meta == {"difficulty": "easy"}
    assert next(run.iter_queries(category="if")).constraints == RECORDS[3]["constraints"]


def test_add_parquet_and_gzip_give_the_same_queries(tmp_path):
    table = pa.Table.from_pylist(
        [{"prompt": r.get("prompt"), "reference": r.get("reference")} for r in RECORDS]
    )  # the chat record has a null prompt and no messages column: a bad row
    pq.write_table(table.slice(0, 1), tmp_path / "q.parquet")
    with gzip.open(tmp_path / "q.jsonl.gz", "wt") as file:
        file.write(json.dumps({"prompt": "What is 7 * 6?", "reference": "42"}) + "\n")
    add(tmp_path / "q.parquet", tmp_path / "a", category="math", source="s")
    add(tmp_path / "q.jsonl.gz", tmp_path / "b", category="math", source="s")
    assert list(Run.open(tmp_path / "a").iter_queries()) == list(
        Run.open(tmp_path / "b").iter_queries()
    )
    pq.write_table(table, tmp_path / "bad.parquet")
    with pytest.raises(InputFileError) as err:
        add(tmp_path / "bad.parquet", tmp_path / "a")
    assert (err.value.line, err.value.reason.split(";")[0]) == (
        2,
        "give exactly one of 'prompt' and 'messages'",
    )


def test_defaults_fill_only_missing_fields(tmp_path):
    file = write_jsonl(tmp_path / "f.jsonl", [{"prompt": "A?"}, {"prompt": "B?", "category": "if"}])
    add(file, tmp_path / "run", category="science", source="sciq")
    run = Run.open(tmp_path / "run")
    assert [(q.category.value, q.source) for q in run.iter_queries()] == [
        ("science", "sciq"),
        ("if", "sciq"),
    ]
    with pytest.raises(UsageError, match="unknown category 'sci'"):
        add(file, tmp_path / "run", category="sci")


def test_duplicates_are_skipped(tmp_path):
    file = write_jsonl(
        tmp_path / "f.jsonl",
        [{"prompt": "What is 7 * 6?"}, {"prompt": "What  is 7 * 6? "}, {"prompt": "Other?"}],
    )
    first = add(file, tmp_path / "run")
    assert (first.added, first.duplicates) == (2, 1)
    assert str(add(file, tmp_path / "run")) == "added 0 queries, skipped 3 duplicates"
    assert Run.open(tmp_path / "run").count_queries() == 2


def test_exported_queries_add_back_unchanged(tmp_path):
    add(write_jsonl(tmp_path / "f.jsonl", RECORDS), tmp_path / "a")
    exported = [q.to_dict() for q in Run.open(tmp_path / "a").iter_queries()]
    add(write_jsonl(tmp_path / "export.jsonl", exported), tmp_path / "b")
    assert list(Run.open(tmp_path / "b").iter_queries()) == list(
        Run.open(tmp_path / "a").iter_queries()
    )
    exported[0]["query_id"] = "0" * 32
    with pytest.raises(InputFileError, match="'query_id' does not match the prompt"):
        add(write_jsonl(tmp_path / "forged.jsonl", exported), tmp_path / "b")


BAD_LINES = [
    ('{"prompt": "fine"', "invalid JSON"),
    ('["What is 2 + 2?"]', "expected an object, got list"),
    ('{"category": "math"}', "give exactly one of 'prompt' and 'messages'"),
    ('{"prompt": "a", "messages": [{"role": "user", "content": "b"}]}', "exactly one of"),
    ('{"prompt": 42}', "'prompt' must be a string, got int"),
    ('{"prompt": "   "}', r"the prompt \(last user turn\) is empty"),
    ('{"messages": "Hi"}', "'messages' must be a list"),
    ('{"messages": [{"role": "bot", "content": "Hi"}]}', "turn 1 has role 'bot'"),
    ('{"prompt": "Hi", "category": "maths"}', "unknown category 'maths'; use one of: math,"),
    ('{"prompt": "Hi", "refernce": "4"}', "unknown field 'refernce' \\(did you mean 'reference'"),
    ('{"prompt": "Hi", "reference": 4}', "'reference' must be a string"),
    ('{"prompt": "Hi", "tests": "assert f() == 1"}', "'tests' must be a list"),
    ('{"prompt": "Hi", "constraints": {"instruction_id_list": ["x"]}}', "'constraints' must be"),
]


@pytest.mark.parametrize(("line", "message"), BAD_LINES)
def test_a_bad_line_loads_nothing(tmp_path, line, message):
    add(write_jsonl(tmp_path / "good.jsonl", RECORDS[:2]), tmp_path / "run")
    before = snapshot(tmp_path / "run")
    file = tmp_path / "bad.jsonl"
    file.write_text(json.dumps(RECORDS[2]) + "\n\n" + line + "\n" + json.dumps(RECORDS[3]) + "\n")
    with pytest.raises(InputFileError, match=message) as err:
        add(file, tmp_path / "run")
    assert err.value.line == 3
    assert str(err.value).startswith(f"{file}:3: ")
    assert snapshot(tmp_path / "run") == before
    with pytest.raises(InputFileError):
        add(file, tmp_path / "new-run")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl", "good.jsonl", "run"]


def test_unreadable_files(tmp_path):
    with pytest.raises(InputFileError, match="cannot read the file \\(No such file"):
        add(tmp_path / "missing.jsonl", tmp_path / "run")
    (tmp_path / "q.csv").write_text("prompt\nHi\n")
    with pytest.raises(InputFileError, match="unknown file type; use .jsonl"):
        add(tmp_path / "q.csv", tmp_path / "run")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(InputFileError, match="no queries found"):
        add(tmp_path / "empty.jsonl", tmp_path / "run")
    (tmp_path / "latin1.jsonl").write_bytes(b'{"prompt": "caf\xe9"}\n')
    with pytest.raises(InputFileError, match="latin1.jsonl:1: not UTF-8"):
        add(tmp_path / "latin1.jsonl", tmp_path / "run")
    (tmp_path / "fake.parquet").write_text("not parquet")
    with pytest.raises(InputFileError, match="fake.parquet: cannot read the file"):
        add(tmp_path / "fake.parquet", tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_refuses_a_directory_that_is_not_a_run(tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    with pytest.raises(RunStoreError, match="exists and is not a run"):
        add(write_jsonl(tmp_path / "f.jsonl", RECORDS), tmp_path / "taken")
    (tmp_path / "empty").mkdir()
    assert add(tmp_path / "f.jsonl", tmp_path / "empty").added == 5
    assert Run.open(tmp_path / "empty").count_queries() == 5


def test_the_current_directory_can_become_the_run(tmp_path, monkeypatch):
    file = write_jsonl(tmp_path / "f.jsonl", RECORDS)
    (tmp_path / "run").mkdir()
    monkeypatch.chdir(tmp_path / "run")
    assert add(file, ".").added == 5
    assert Run.open(tmp_path / "run").count_queries() == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.jsonl", "run"]


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data is not checked out here")
def test_real_benchmarks(tmp_path):
    math500 = [json.loads(line) for line in (SHARED_DATA / "benchmarks/math500.jsonl").open()]
    ifeval = [
        json.loads(line) for line in (SHARED_DATA / "benchmarks/ifeval_input_data.jsonl").open()
    ]
    records = [
        {
            "prompt": r["problem"],
            "reference": r["answer"],
            "meta": {"subject": r["subject"], "level": r["level"], "id": r["unique_id"]},
        }
        for r in math500
    ]
    add(write_jsonl(tmp_path / "math500.jsonl", records), tmp_path / "run", category="math")
    records = [
        {
            "prompt": r["prompt"],
            "constraints": {"instruction_id_list": r["instruction_id_list"], "kwargs": r["kwargs"]},
            "meta": {"key": r["key"]},
        }
        for r in ifeval
    ]
    result = add(write_jsonl(tmp_path / "ifeval.jsonl", records), tmp_path / "run", category="if")
    run = Run.open(tmp_path / "run")
    assert run.categories() == {"math": 500, "if": result.added}
    assert result.added + result.duplicates == 541
    first = next(run.iter_queries(category="if"))
    assert first.constraints["instruction_id_list"] == ifeval[0]["instruction_id_list"]
