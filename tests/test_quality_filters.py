"""Quality filters at build time (structure, 20-gram templates, perplexity) and info.ppl.

Runs are written straight into a real run store; scores are inserted with
``AttemptStore.add_scores`` as ``hubtools score`` would; the built Parquet, the card and
the removed-rows file are read back.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

from hubtools.errors import RunStoreError, UsageError
from hubtools.quality.filters import (
    PerplexityFilter,
    PplLimit,
    QualityConfig,
    StructureFilter,
    TemplateFilter,
    TemplateSettings,
)
from hubtools.quality.template import count_templates, tokens
from hubtools.records import Attempt, Query, ResponseScore, Verdict
from hubtools.release.build import build
from hubtools.run import Run

# -- the template filter ---------------------------------------------------------------------


def _planted(n_random=20_000, n_planted=300, seed=0):
    """Random 60-word responses; ``n_planted`` of them also carry one 25-token boilerplate."""
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(5000)]
    boiler = " ".join(f"Boiler{i}" for i in range(25))
    planted = set(rng.sample(range(n_random), n_planted))
    texts = []
    for i in range(n_random):
        body = [rng.choice(words) for _ in range(60)]
        if i in planted:
            body.insert(rng.randrange(61), boiler)
        texts.append((f"q{i}", " ".join(body)))
    return texts, {f"q{i}" for i in planted}


def test_template_filter_finds_planted_boilerplate_recall_1_precision_99(tmp_path):
    texts, planted = _planted()
    found = count_templates(texts, n=20, max_count=20, workdir=tmp_path)
    flagged = set(found.flagged)
    recall = len(flagged & planted) / len(planted)
    precision = len(flagged & planted) / max(1, len(flagged))
    assert recall == 1.0 and precision >= 0.99, (recall, precision)
    assert found.responses == 20_000 and found.frequent == 6  # the boilerplate's 20-grams
    assert set(found.flagged.values()) == {300}  # each flagged one shares it with 300
    assert list(tmp_path.iterdir()) == []  # the spill is gone
    # A partition budget far below the spill: the sub-passes count exactly the same.
    small = count_templates(texts, n=20, max_count=20, workdir=tmp_path, budget_bytes=65536)
    assert small.flagged == found.flagged
    # At 300 responses sharing it, max_count 300 keeps them all; 299 removes them all.
    assert not count_templates(texts, n=20, max_count=300).flagged
    assert set(count_templates(texts, n=20, max_count=299).flagged) == planted
    # n larger than the boilerplate: no 26-gram is shared.
    assert not count_templates(texts, n=26, max_count=20).flagged


def test_template_counts_documents_not_repeats_within_one_response():
    loop = " ".join(["the same sentence over and over again ."] * 30)  # 9 tokens x 30
    texts = [("loop", loop)] + [(f"r{i}", f"unique text number {i} here") for i in range(50)]
    assert count_templates(texts, n=20, max_count=20).flagged == {}
    assert count_templates(texts, n=20, max_count=20, count="occurrences").flagged.keys() == {
        "loop"
    }


def test_tokens_split_words_punctuation_and_cjk():
    assert tokens("Hello, world! x=1.5 你好吗") == [
        "Hello", ",", "world", "!", "x", "=", "1", ".", "5", "你", "好", "吗"
    ]  # fmt: skip


def test_template_filter_with_a_transformers_tokenizer(tmp_path):
    from tiny_models import make_tokenizer

    folder = make_tokenizer(tmp_path / "tok")
    texts = [
        (f"q{i}", f"The quick brown fox jumps over the lazy dog. {i} {i * 7}") for i in range(8)
    ]
    texts += [(f"u{i}", f"Let me think {i} step {i * 3} by step {i * 11}") for i in range(8)]
    settings = TemplateSettings(n=10, max_count=5, tokenizer=str(folder))
    f = TemplateFilter("am", settings).fit(texts, tmp_path)
    assert set(f.flagged) == {f"q{i}" for i in range(8)}
    assert QualityConfig.from_section({"template": {"tokenizer": str(folder)}}).template == (
        TemplateSettings(tokenizer=str(folder))
    )
    with pytest.raises(UsageError, match="quality.template.tokenizer .* does not load"):
        TemplateFilter("am", TemplateSettings(tokenizer=str(tmp_path / "none"))).fit(texts, None)


def test_template_filter_reason():
    texts = [(f"q{i}", "a b c d e f " + str(i)) for i in range(5)]
    f = TemplateFilter("am", TemplateSettings(n=6, max_count=3)).fit(texts, None)
    assert f.check("q1") == "a token 6-gram of it occurs in 5 responses (> 3)"


# -- perplexity and structure, as units ------------------------------------------------------


def test_perplexity_filter_absolute_and_none():
    f = PerplexityFilter("am", 10.0, PplLimit(max_ppl=10), allow_unscored=False)
    assert f.check(9.99) is None and f.check(10.0) is None
    assert f.check(10.5) == "ppl 10.5 > 10"
    assert f.check(None) == "no perplexity"
    assert (
        PerplexityFilter("am", 10.0, PplLimit(max_ppl=10), allow_unscored=True).check(None) is None
    )


def test_structure_filter_cases():
    s = StructureFilter()
    assert s.check_turns(["user"]) is None
    assert s.check_turns(["system", "user", "assistant", "user"]) is None
    assert "ends with an assistant turn" in s.check_turns(["user", "assistant"])
    assert "roles must alternate" in s.check_turns(["user", "user"])
    assert "roles must alternate" in s.check_turns(["assistant", "user"])
    assert s.check_turns(["system"]) == "no user turn"
    assert s.check_answer("think", "answer", "stop") is None
    assert s.check_answer("", "answer", "stop") == "empty think part"
    assert s.check_answer("  \n", "answer", "stop") == "empty think part"
    assert s.check_answer("think", None, "stop").startswith("empty answer part")
    assert s.check_answer("think", "answer", "length") == "truncated (finish_reason length)"


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ([1], "quality: must be a mapping"),
        ({"max_pll": 3}, "unknown key 'max_pll'"),
        ({"max_ppl": 0.5}, "max_ppl must be >= 1"),
        ({"max_ppl": "ten"}, "max_ppl must be a number"),
        ({"max_ppl_percentile": 101}, r"max_ppl_percentile must be in \(0, 100\]"),
        ({"max_ppl": 5, "max_ppl_percentile": 90}, "not both"),
        ({"template": {"n": 0}}, "quality.template.n must be an integer >= 1"),
        ({"template": {"count": "tokens"}}, "documents or occurrences"),
        ({"template": "yes"}, "quality.template must be"),
        ({"structure": "on"}, "quality.structure must be true or false"),
        ({"teachers": {"am": {"template": True}}}, r"quality.teachers.am: unknown key"),
    ],
)
def test_bad_quality_sections_are_usage_errors(section, message):
    with pytest.raises(UsageError, match=message):
        QualityConfig.from_section(section)


def test_teacher_override_replaces_the_sections_limit():
    config = QualityConfig.from_section(
        {"max_ppl_percentile": 99, "teachers": {"am": {"max_ppl": 8}}, "template": True}
    )
    assert config.ppl_for("am") == PplLimit(max_ppl=8.0)
    assert config.ppl_for("r1") == PplLimit(percentile=99.0)
    assert config.template == TemplateSettings(20, 20, "documents")
    assert QualityConfig.from_section(None) == QualityConfig()  # structure only


# -- through build ---------------------------------------------------------------------------

GOOD = ("Let me add the numbers carefully.", "The answer is 2.")


def _run(path, n=30, *, bad=None, scores=None, imported=None):
    """Queries ``q0..q{n-1}`` (math/chat), teachers t1 and t2, one passing attempt each.

    ``bad``: {(teacher, i): (think, answer, finish_reason)}; ``scores``: {(teacher, i): ppl}
    stored as ResponseScore; ``imported``: {(teacher, i): ppl} in the attempt's params.
    """
    run = Run.create(path)
    queries = [
        Query.from_prompt(f"Question {i}: what is 1 + 1?", category="math" if i % 2 else "chat",
                          source="s", reference="2")
        for i in range(n)
    ]  # fmt: skip
    queries.append(  # a multi-turn query whose roles do not alternate: structure fails
        Query.from_prompt(
            [{"role": "user", "content": "Hi"}, {"role": "user", "content": "Are you there?"}],
            category="chat",
            source="s",
        )
    )
    run.add_queries(queries)
    attempts, verdicts, stored = [], [], []
    for i, q in enumerate(queries):
        for t in ("t1", "t2"):
            think, answer, finish = (bad or {}).get((t, i), (*GOOD, "stop"))
            key = {"query_id": q.query_id, "teacher": t, "attempt": 0}
            params = {"ppl": imported[(t, i)]} if (t, i) in (imported or {}) else {}
            attempts.append(
                Attempt(**key, text=f"<think>{think}</think>{answer or ''}", think=think,
                        answer=answer, finish_reason=finish, completion_tokens=None if i % 3 == 0
                        else 50 + i, params=params)
            )  # fmt: skip
            verdicts.append(Verdict(**key, verifier="math-verify", score=1.0))
            if (t, i) in (scores or {}):
                stored.append(
                    ResponseScore(**key, scorer="HuggingFaceTB/SmolLM2-135M-Instruct",
                                  backend="local", ppl=scores[(t, i)], scored_tokens=20,
                                  think_tokens=30 + i, answer_tokens=10, total_tokens=40 + i,
                                  token_source="tokenizer:smollm2")
                )  # fmt: skip
    with run.store() as store:
        store.add_attempts(attempts)
        store.add_verdicts(verdicts)
        store.add_scores(stored)
    return run, queries


def _released(folder):
    files = sorted((folder / "data").glob("*/train-*.parquet"))
    return [row for f in files for row in pq.read_table(f).to_pylist()]


def test_build_carries_stored_scores_into_info_ppl_and_the_card(tmp_path):
    n = 12
    scores = {("t1", i): 1.5 + i for i in range(0, n, 2)}  # stored on even queries
    imported = {("t1", i): 100.0 + i for i in range(n)}  # imported everywhere: loses to stored
    run, queries = _run(tmp_path / "run", n, scores=scores, imported=imported)
    result = build(run.path, teacher="t1", out=tmp_path / "r", progress=False)
    by_prompt = {q.messages[0]["content"]: i for i, q in enumerate(queries)}
    rows = _released(tmp_path / "r")
    assert len(rows) == n  # the multi-turn query whose roles do not alternate is removed
    for row in rows:
        final = row["conversations"][-1]["info"]
        i = by_prompt[row["conversations"][0]["value"]]
        assert final["ppl"] == (1.5 + i if i % 2 == 0 else 100.0 + i)
        # the score's think/answer split travels with the row; unscored rows carry null
        scored = i % 2 == 0
        assert (final["think_tokens"], final["answer_tokens"]) == (
            (30 + i, 10) if scored else (None, None)
        )
        assert row["conversations"][0]["info"]["think_tokens"] is None  # the human turn
    card = (tmp_path / "r" / "README.md").read_text()
    assert (
        "scored by `HuggingFaceTB/SmolLM2-135M-Instruct` via the `local` backend on 6 rows" in card
    )
    assert "given with the imported answers (scorer unknown) on 6 rows" in card
    # tokens: teacher-reported where present (i % 3 != 0), else the score's tokenizer count
    assert "reported by the teacher on 8 rows" in card
    assert "counted with `smollm2` on 2 rows" in card and "mean ppl" in card
    assert result.funnel["scoring"]["tokens"] == {"teacher": 8, "tokenizer:smollm2": 2}


def test_structure_filter_in_build_counts_and_keeps_removed_rows(tmp_path):
    bad = {
        ("t1", 1): ("", "The answer is 2.", "stop"),  # empty think (math)
        ("t1", 2): ("Thinking", None, "length"),  # truncated (chat)
        ("t1", 3): ("Thinking", "  ", "stop"),  # empty answer (math)
        ("t2", 5): ("", "x", "stop"),  # the parallel teacher's answer fails (math)
    }
    run, queries = _run(tmp_path / "run", 10, bad=bad)
    alone = build(run.path, teacher="t1", out=tmp_path / "alone", progress=False)
    assert alone.rows["all"] == 10 - 3  # 3 bad answers of t1, the multi-turn query
    both = build(run.path, teacher="t1", parallel=["t2"], out=tmp_path / "both", progress=False)
    assert both.rows["all"] == 10 - 4  # and the query t2 answered badly
    quality = both.funnel["quality"]
    assert quality["removed_rows"] == {"math": 3, "chat": 2}
    assert {(r["filter"], r["teacher"], r["category"]): r["removed"]
            for r in quality["removed"]} == {
        ("structure", "t1", "math"): 2, ("structure", "t1", "chat"): 2,
        ("structure", "t2", "math"): 1, ("structure", "t2", "chat"): 1,
    }  # fmt: skip
    card = (tmp_path / "both" / "README.md").read_text()
    assert "| structure | t2 | math | 1 |" in card and "| structure | t1 | chat | 2 |" in card
    assert "Rows removed in all: 5 (" in card and "quality/t1-removed.parquet" in card
    assert "| math | 5 | 5 | 5 | 5 | 100.0% | 3 | 2 |" in card  # the funnel's column
    removed = pq.read_table(run.path / "quality" / "t1-removed.parquet").to_pylist()
    reasons = {r["query_id"]: r["reasons"] for r in removed}
    assert reasons[queries[1].query_id] == "structure (t1): empty think part"
    assert reasons[queries[2].query_id] == "structure (t1): truncated (finish_reason length)"
    assert reasons[queries[5].query_id] == "structure (t2): empty think part"
    assert reasons[queries[-1].query_id] == (
        "structure (t1): turn 2 is 'user', expected 'assistant' (roles must alternate); "
        "structure (t2): turn 2 is 'user', expected 'assistant' (roles must alternate)"
    )
    assert removed[0]["conversations"][-1]["from"] == "assistant"  # the row as it would be
    assert not (tmp_path / "both" / "quality").exists()  # never in the release folder
    assert not any(p.name.endswith(".tmp") for p in (run.path / "quality").iterdir())


def test_ppl_thresholds_absolute_percentile_and_per_teacher(tmp_path):
    n = 40
    scores = {(t, i): 1.0 + i for t in ("t1", "t2") for i in range(n + 1)}
    run, queries = _run(tmp_path / "run", n, scores=scores)
    quality = {"structure": False, "max_ppl": 30.5, "teachers": {"t2": {"max_ppl_percentile": 50}}}
    result = build(run.path, teacher="t1", parallel=["t2"], out=tmp_path / "r", quality=quality,
                   progress=False)  # fmt: skip
    t2_threshold = float(np.percentile([1.0 + i for i in range(n + 1)], 50))
    assert result.funnel["quality"]["ppl_thresholds"] == {"t1": 30.5, "t2": t2_threshold}
    kept = [1.0 + i for i in range(n + 1) if 1.0 + i <= min(30.5, t2_threshold)]
    assert result.rows["all"] == len(kept) == 21
    ppls = sorted(r["conversations"][-1]["info"]["ppl"] for r in _released(tmp_path / "r"))
    assert ppls == kept
    assert Run.open(run.path).config["quality"] == quality  # frozen
    with pytest.raises(RunStoreError, match="another config"):
        build(run.path, teacher="t1", out=tmp_path / "r2", quality={"max_ppl": 5}, progress=False)
    alone = build(run.path, teacher="t1", out=tmp_path / "r3", progress=False)  # the frozen one
    assert alone.rows["all"] == 30 and alone.funnel["quality"]["ppl_thresholds"] == {"t1": 30.5}


def test_ppl_filter_needs_scores_unless_allowed(tmp_path):
    run, _ = _run(tmp_path / "run", 6, scores={("t1", 0): 2.0})
    with pytest.raises(RunStoreError, match=r"no score \(t1 6 answers\); run `hubtools score"):
        build(run.path, teacher="t1", out=tmp_path / "r", quality={"max_ppl": 5}, progress=False)
    assert not (tmp_path / "r").exists() and "quality" not in Run.open(run.path).config
    ok = build(run.path, teacher="t1", out=tmp_path / "r", progress=False,
               quality={"max_ppl": 5, "allow_unscored": True})  # fmt: skip
    assert ok.rows["all"] == 6 and ok.funnel["quality"]["unscored_kept"] == {"t1": 5}


def test_template_filter_in_build(tmp_path):
    boiler = " ".join(f"tok{i}" for i in range(22))
    bad = {("t1", i): (f"Reason {i}. {boiler} done {i}", f"{i}", "stop") for i in range(0, 24, 2)}
    run, queries = _run(tmp_path / "run", 24, bad=bad)
    quality = {"template": {"n": 20, "max_count": 10}}
    result = build(run.path, teacher="t1", out=tmp_path / "r", quality=quality, progress=False)
    assert result.rows["all"] == 12  # 12 share the 22-token boilerplate (> 10), + multi-turn
    removed = pq.read_table(run.path / "quality" / "t1-removed.parquet").to_pylist()
    reasons = {r["query_id"]: r["reasons"] for r in removed}
    assert reasons[queries[0].query_id] == (
        "template (t1): a token 20-gram of it occurs in 12 responses (> 10)"
    )
    card = (tmp_path / "r" / "README.md").read_text()
    assert "one of its token 20-grams occurs in more than 10 responses" in card
    assert "| template | t1 | chat | 12 |" in card


def test_cli_quality_file_errors_are_one_line(tmp_path):
    run, _ = _run(tmp_path / "run", 4)
    cases = {
        "max_ppl: [1": "is not valid YAML",
        "quality: {max_pll: 3}": "unknown key 'max_pll'",
        "quality: 3": "expected a quality: mapping",
    }
    for i, (text, message) in enumerate(cases.items()):
        path = tmp_path / f"q{i}.yaml"
        path.write_text(text)
        done = subprocess.run(
            [sys.executable, "-m", "hubtools", "build", str(run.path), "--teacher", "t1",
             "--out", str(tmp_path / "out"), "--quality", str(path), "--quiet"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith("error: ") and message in done.stderr
        assert done.stderr.count("\n") == 1 and not (tmp_path / "out").exists()
    path = tmp_path / "good.yaml"
    path.write_text("quality:\n  max_ppl: 50\n  allow_unscored: true\n")
    done = subprocess.run(
        [sys.executable, "-m", "hubtools", "build", str(run.path), "--teacher", "t1",
         "--out", str(tmp_path / "out"), "--quality", str(path), "--quiet"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert Run.open(run.path).config["quality"] == {"max_ppl": 50, "allow_unscored": True}


def test_parallel_figures_describe_the_released_rows_not_the_removed(tmp_path):
    bad = {("t1", 1): ("", "The answer is 2.", "stop"), ("t2", 4): ("Thinking", None, "length")}
    everything = {(t, i): 2.0 + i for t in ("t1", "t2") for i in range(11)}  # token counts too
    run, _ = _run(tmp_path / "run", 10, bad=bad, scores=everything)
    result = build(run.path, teacher="t1", parallel=["t2"], out=tmp_path / "r", progress=False)
    assert result.rows["all"] == 10 - 2  # and the multi-turn query
    stats = json.loads((tmp_path / "r" / "assets" / "stats.json").read_text())
    assert stats["instances"] == result.rows["all"]
