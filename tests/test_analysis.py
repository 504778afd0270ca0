"""hubtools analyze on real parallel traces: a run, its parallel releases, and their cards.

The four teachers of ../shared/data/teachers/misguided_attention answered the same 52
prompts three times each; the rubric score is the verdict. Token counts and perplexity
come from a real `hubtools score` with a tiny model (the whole user path, last test), or
are stored here as ResponseScore rows with a tiny tokenizer and a deterministic stand-in
perplexity; every number in stats.json is checked against the same attempts (and the
published rows) computed directly.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import shared_path
from datasets import load_dataset
from PIL import Image
from tiny_models import make_tokenizer

from hubtools.analysis import analyze_run
from hubtools.analysis.collect import MissingTokenCounts
from hubtools.analysis.figures import SIZE
from hubtools.analysis.stats import histogram
from hubtools.records import ResponseScore
from hubtools.release.build import build
from hubtools.release.importer import import_outputs
from hubtools.release.publish import publish
from hubtools.run import Run

ROOT = Path(__file__).resolve().parents[1]
SOURCE = "cpldcpu/MisguidedAttention"
TEACHERS = ("r10528", "q3_235b-think", "QwQ-32b", "q3_30ba3-think")
FIGURES = ("fig2_categories.png", "fig3_math_lengths.png", "fig4_tokens_box.png",
           "fig5_ppl_box.png")  # fmt: skip


def _jsonl(folder: Path, model: str, dest: Path) -> Path:
    """One line per sample; the rubric total_score is the verdict (ast for list reprs)."""
    results = json.loads((folder / f"output_queries_{model}.json").read_text())["results"]
    evaluations = json.loads((folder / f"detailed_evaluations_{model}.json").read_text())
    lines = []
    for item in results:
        outputs, thinking = (ast.literal_eval(v) if isinstance(v, str) else v
                             for v in (item["output"], item["thinking"]))  # fmt: skip
        rubric = evaluations[item["prompt_id"]][item["llm"]]
        for output, think, verdict in zip(outputs, thinking, rubric, strict=False):
            lines.append({"prompt": item["prompt"], "output": output, "reasoning": think,
                          "score": verdict["total_score"], "model": item["llm"],
                          "category": "general", "source": SOURCE})  # fmt: skip
    dest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return dest


def _count(tokenizer, text: str) -> int:
    return len(tokenizer(text or "", add_special_tokens=False)["input_ids"])


def _ppl(answer: str) -> float:
    """A deterministic stand-in for a scorer's perplexity (>= 1)."""
    return 1.0 + sum(map(ord, (answer or "")[:64])) % 400 / 100


def _hubtools(*args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run([sys.executable, "-m", "hubtools", *args], capture_output=True,
                          text=True, timeout=600, env=env)  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A run with the four teachers' real traces; the tiny tokenizer."""
    from transformers import AutoTokenizer

    folder = shared_path("data", "teachers", "misguided_attention")
    top = tmp_path_factory.mktemp("analysis")
    run = top / "run"
    for model in TEACHERS:
        path = _jsonl(folder, model, top / f"{model}.jsonl")
        result = import_outputs(path, run=run, teacher=model, progress=False)
        assert result.stored == result.records > 0
    tokenizer_dir = make_tokenizer(top / "tokenizer")
    return run, tokenizer_dir, AutoTokenizer.from_pretrained(tokenizer_dir)


def _passed(run: Path) -> dict[str, dict]:
    """Per teacher, query -> its first passing attempt; and the queries all passed."""
    with Run.open(run).store() as store:
        return {t: {a.query_id: a for a, _ in store.iter_passed(t, 0.9)} for t in TEACHERS}


def _check_png(path: Path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == SIZE


def _check_numbers(stats: dict, expected: dict[str, tuple[list[int], list[float]]]) -> None:
    for teacher, (tokens, ppl) in expected.items():
        got = stats["all"]["teachers"][teacher]
        assert got["instances"] == len(tokens) == stats["instances"]
        assert got["tokens"] == sum(tokens)
        assert got["length"]["median"] == pytest.approx(float(np.median(tokens)))
        assert got["length"]["mean"] == pytest.approx(float(np.mean(tokens)))
        assert got["length"]["q1"] == pytest.approx(float(np.percentile(tokens, 25)))
        assert stats["categories"]["general"]["teachers"][teacher] == got
        hist = stats["figures"]["fig3_math_lengths"]
        assert hist["category"] == "all"  # no math in these prompts: the histogram says so
        assert hist["counts"][teacher] == histogram(np.array(tokens)) and sum(
            hist["counts"][teacher]
        ) == len(tokens)
        if ppl:
            assert got["ppl"]["median"] == pytest.approx(float(np.median(ppl)))
            assert got["ppl"]["mean"] == pytest.approx(float(np.mean(ppl)))
        else:
            assert got["ppl"] is None


def test_run_analysis_equals_the_attempts(world, tmp_path):
    run, tokenizer_dir, tokenizer = world
    passed = _passed(run)
    common = set.intersection(*(set(p) for p in passed.values()))
    assert len(common) >= 5

    # No counts anywhere (the traces report none) and no tokenizer: one line, before work.
    with pytest.raises(MissingTokenCounts, match="run `hubtools score`.*--tokenizer"):
        analyze_run(run, list(TEACHERS), tmp_path / "none", progress=False)
    assert not (tmp_path / "none").exists()
    # A parallel build then still builds; its card says how to get the figures.
    built = build(run, teacher=TEACHERS[0], out=tmp_path / "rel", parallel=list(TEACHERS),
                  progress=False)  # fmt: skip
    assert not any(f.startswith("assets/") for f in built.files)
    card = (tmp_path / "rel" / "README.md").read_text()
    assert "figures were not drawn: no token count for" in card and "hubtools score" in card

    # The tokenizer path: counts of think + answer, no perplexity.
    counted = analyze_run(run, list(TEACHERS), tmp_path / "tok", tokenizer=str(tokenizer_dir),
                          progress=False)  # fmt: skip
    assert counted.instances == len(common) and counted.responses == 4 * len(common)
    expected = {}
    for t in TEACHERS:
        attempts = [passed[t][q] for q in sorted(common)]
        tokens = [_count(tokenizer, a.think) + _count(tokenizer, a.answer) for a in attempts]
        expected[t] = (tokens, [])
    stats = json.loads((tmp_path / "tok" / "stats.json").read_text())
    _check_numbers(stats, expected)
    assert stats["token_sources"][TEACHERS[0]] == {f"tokenizer:{tokenizer_dir}": len(common)}
    assert stats["figures"]["fig5_ppl_box"]["scored"] is False
    assert "not scored" in (tmp_path / "tok" / "report.md").read_text()

    # Scores stored (what `hubtools score` writes) win over the tokenizer; through the CLI.
    scores, expected = [], {}
    for t in TEACHERS:
        for a in passed[t].values():
            think, answer = _count(tokenizer, a.think), _count(tokenizer, a.answer)
            scores.append(ResponseScore(
                query_id=a.query_id, teacher=t, attempt=a.attempt, scorer="stand-in",
                backend="test", ppl=_ppl(a.answer), scored_tokens=think + answer,
                think_tokens=think, answer_tokens=answer, total_tokens=think + answer + 1,
                token_source="tokenizer:tiny",
            ))  # fmt: skip
        attempts = [passed[t][q] for q in sorted(common)]
        tokens = [_count(tokenizer, a.think) + _count(tokenizer, a.answer) + 1 for a in attempts]
        expected[t] = (tokens, [_ppl(a.answer) for a in attempts])
    with Run.open(run).store() as store:
        assert store.add_scores(scores) == len(scores)
    out = tmp_path / "scored"
    done = _hubtools("analyze", str(run), "--teachers", ",".join(TEACHERS), "--out", str(out),
                     "--json", "--quiet")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["instances"] == len(common)
    stats = json.loads((out / "stats.json").read_text())
    _check_numbers(stats, expected)
    assert stats["token_sources"][TEACHERS[1]] == {"tokenizer:tiny": len(common)}
    assert stats["figures"]["fig5_ppl_box"]["scored"] is True
    for name in FIGURES:
        _check_png(out / name)
    report = (out / "report.md").read_text()
    assert "think + answer" in report and "![" in report
    for t in TEACHERS:
        b = stats["all"]["teachers"][t]["length"]
        assert f"{b['mean']:,.1f} / {b['median']:,.0f}" in report


def test_parallel_releases_assets_card_publish_and_analyze(world, hub, write_token,
                                                           unique_name, tmp_path):  # fmt: skip
    run, tokenizer_dir, tokenizer = world
    repos = {}
    for t in TEACHERS:
        out = tmp_path / t
        built = build(run, teacher=t, out=out, parallel=list(TEACHERS), progress=False)
        for name in FIGURES:
            _check_png(out / "assets" / name)
            assert f"](assets/{name})" in (out / "README.md").read_text()
        assert {"assets/stats.json", "assets/report.md"} <= set(built.files)
        card = (out / "README.md").read_text()
        assert "## Teacher comparison" in card and "### Response tokens per teacher" in card
        repos[t] = f"acme/{unique_name}-{t}"
        done = publish(out, repo=repos[t], version="1.0.0", token=write_token)
        assert done.action == "published"
        for config, rows in built.rows.items():  # assets/ is not data: every config loads
            ds = load_dataset(repos[t], config, split="train", revision="v1.0.0")
            assert ds.num_rows == rows
    single = build(run, teacher=TEACHERS[0], out=tmp_path / "single", progress=False)
    assert not any(f.startswith("assets/") for f in single.files)  # nothing to compare
    assert "## Teacher comparison" not in (tmp_path / "single" / "README.md").read_text()

    spec = ",".join(f"{repos[t]}@v1.0.0" for t in TEACHERS)
    out = tmp_path / "releases"
    done = _hubtools("analyze", "--releases", spec, "--out", str(out), "--endpoint", hub.url,
                     "--tokenizer", str(tokenizer_dir), "--quiet")  # fmt: skip
    assert done.returncode == 0, done.stderr
    stats = json.loads((out / "stats.json").read_text())
    labels = [r.split("/")[1] for r in repos.values()]
    assert stats["teachers"] == labels
    expected = {}
    for t, label in zip(TEACHERS, labels, strict=True):
        rows = load_dataset(repos[t], "all", split="train", revision="v1.0.0")
        finals = [r["conversations"][-1]["info"] for r in rows]
        tokens = [_count(tokenizer, f["think_content"]) + _count(tokenizer, f["answer_content"])
                  for f in finals]  # fmt: skip
        expected[label] = (tokens, [f["ppl"] for f in finals if f["ppl"] is not None])
    _check_numbers(stats, expected)
    scored = any(ppl for _, ppl in expected.values())
    assert stats["figures"]["fig5_ppl_box"]["scored"] is scored  # info.ppl may be null
    for name in FIGURES:
        _check_png(out / name)
    # The run was scored (the test above stored its scores): the releases carry the counts,
    # so no tokenizer is needed to analyze them, and the numbers are the same.
    assert all(f["think_tokens"] is not None for f in finals)
    again = _hubtools("analyze", "--releases", spec, "--out", str(tmp_path / "again"),
                      "--endpoint", hub.url, "--quiet")  # fmt: skip
    assert again.returncode == 0, again.stderr
    _check_numbers(json.loads((tmp_path / "again" / "stats.json").read_text()), expected)
    # The releases hold the same answers as the run: the join by prompt found them all.
    passed = _passed(run)
    common = set.intersection(*(set(p) for p in passed.values()))
    assert stats["instances"] == len(common)
    for t, label in zip(TEACHERS, labels, strict=True):
        attempts = [passed[t][q] for q in common]
        tokens = [_count(tokenizer, a.think) + _count(tokenizer, a.answer) for a in attempts]
        assert sorted(expected[label][0]) == sorted(tokens)


def test_bins_and_boxes_follow_the_paper_and_matplotlib():
    from matplotlib.cbook import boxplot_stats

    from hubtools.analysis.stats import bin_labels, box

    edges = [0, 1, 1024, 1025, 2048, 9216, 10240, 10241, 50_000]
    assert histogram(np.array(edges)) == [3, 2, 0, 0, 0, 0, 0, 0, 1, 1, 2]
    assert bin_labels()[0] == "<=1k" and bin_labels()[-1] == ">10k" and len(bin_labels()) == 11
    data = np.random.default_rng(1).lognormal(7.5, 1.0, 5001)
    ours, theirs = box(data), boxplot_stats(data, whis=1.5)[0]
    for key, their in (("mean", "mean"), ("median", "med"), ("q1", "q1"), ("q3", "q3"),
                       ("whislo", "whislo"), ("whishi", "whishi")):  # fmt: skip
        assert ours[key] == pytest.approx(theirs[their])
    assert ours["outliers"] == len(theirs["fliers"]) > 0
    assert box(np.array([])) is None


@pytest.mark.slow
def test_real_traces_import_score_analyze_build(tmp_path):
    """The whole path on the real traces, as a user runs it: `import` each teacher, `score`
    (the traces carry no token counts: the scorer's tokenizer counts them), `analyze`, and
    a parallel `build` whose card shows the figures; the numbers equal the stored scores."""
    from tiny_models import make_model

    folder = shared_path("data", "teachers", "misguided_attention")
    run, texts = tmp_path / "run", []
    for model in TEACHERS:
        path = _jsonl(folder, model, tmp_path / f"{model}.jsonl")
        texts += [line for line in path.read_text().splitlines()]
        done = _hubtools("import", str(path), "--run", str(run), "--teacher", model, "--quiet")
        assert done.returncode == 0, done.stderr
    # A tiny random model whose tokenizer is trained on the traces (few tokens per word).
    scorer = make_model(tmp_path / "scorer", vocab_size=4096, corpus=texts)
    done = _hubtools("score", str(run), "--model", str(scorer), "--json", "--quiet")
    assert done.returncode == 0, done.stderr
    passed = _passed(run)
    with Run.open(run).store() as store:  # every passing attempt, not only the first
        assert json.loads(done.stdout)["scored"] == store.count_unscored(scored=True) > 0

    out = tmp_path / "analysis"
    done = _hubtools("analyze", str(run), "--teachers", ",".join(TEACHERS), "--out", str(out),
                     "--quiet")  # fmt: skip
    assert done.returncode == 0, done.stderr
    stats = json.loads((out / "stats.json").read_text())
    common = sorted(set.intersection(*(set(p) for p in passed.values())))
    with Run.open(run).store() as store:
        scores = store.scores_for([(q, t, passed[t][q].attempt) for t in TEACHERS for q in common])
    expected = {}
    for t in TEACHERS:
        rows = [scores[(q, t, passed[t][q].attempt)] for q in common]
        assert {s.token_source for s in rows} == {f"tokenizer:{scorer}"}
        expected[t] = ([s.total_tokens for s in rows], [s.ppl for s in rows])
    _check_numbers(stats, expected)
    assert stats["figures"]["fig5_ppl_box"]["scored"] is True

    release = tmp_path / "release"
    done = _hubtools("build", str(run), "--teacher", TEACHERS[0], "--parallel",
                     ",".join(TEACHERS), "--out", str(release), "--quiet")  # fmt: skip
    assert done.returncode == 0, done.stderr
    card = (release / "README.md").read_text()
    for name in FIGURES:
        _check_png(release / "assets" / name)
        assert f"](assets/{name})" in card
    assert "## Teacher comparison" in card
    published = json.loads((release / "assets" / "stats.json").read_text())
    released = [
        row["conversations"][-1]["info"]["ppl"]
        for part in sorted((release / "data").glob("*/*.parquet"))
        for row in pq.read_table(part).to_pylist()
    ]  # the released rows carry the scores' ppl: the card's figures describe them
    assert published["instances"] == len(released)
    teacher = published["all"]["teachers"][TEACHERS[0]]
    assert teacher["ppl"]["median"] == pytest.approx(float(np.median(released)))
    assert teacher["ppl"]["mean"] == pytest.approx(float(np.mean(released)))
