"""`generate` against a real `transformers serve` running a tiny random model made here."""

from __future__ import annotations

import asyncio

import pytest

from hubtools.records import Query
from hubtools.run import Run
from hubtools.teachers import GenerateConfig, generate_shard
from tests.servers.transformers_serve import transformers_serve

pytest.importorskip("fastapi", reason="needs transformers[serving] (pip install -e '.[dev]')")
pytest.importorskip("torch", reason="needs torch (pip install torch==2.13.0)")


@pytest.fixture(scope="module")
def served_model(tmp_path_factory):
    from tests.tiny_models import make_model

    path = make_model(tmp_path_factory.mktemp("tiny") / "tiny-qwen2")
    with transformers_serve(str(path), path.parent / "serve.log") as url:
        yield url, str(path)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_generate_against_transformers_serve(tmp_path, served_model, stream):
    url, model = served_model
    run = Run.create(tmp_path / "run", {})
    run.add_queries(Query.from_prompt(f"What is {i} + 3?", category="math", source="t",
                                      reference=str(i + 3)) for i in range(3))  # fmt: skip
    config = GenerateConfig.from_dict({
        "teachers": [{"name": "tiny", "endpoint": url, "model": model, "max_concurrency": 2,
                      "stream": stream}],
        "sampling": {"max_tokens": 12}, "max_attempts": 2,
    })  # fmt: skip
    summary = asyncio.run(generate_shard(run.path, config, None, progress=False))
    stats = summary.teachers[0]
    # A random model never answers right: every query uses its two attempts, all recorded.
    assert (stats.done, stats.failed, stats.attempts, stats.down) == (3, 3, 6, None)
    with run.store() as store:
        rows = store._conn.execute(
            "SELECT a.attempt, a.finish_reason, a.completion_tokens, a.model, a.params, v.score"
            " FROM attempts a JOIN verdicts v USING (query_id, teacher, attempt)"
        ).fetchall()
    assert len(rows) == 6
    assert {r["finish_reason"] for r in rows} == {"length"}
    assert all(r["completion_tokens"] == 12 and r["score"] == 0.0 for r in rows)
    assert all(model in r["model"] for r in rows)
    assert len({r["params"] for r in rows}) == 6  # distinct seeds per (query, attempt)
