"""`queries clean` on a planted corpus pulled from the local Hub, decontaminated against
the real benchmark problems seeded there under their Hub ids: recall and precision."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
import unicodedata
from collections import Counter

import pyarrow.parquet as pq
import pytest
from huggingface_hub import HfApi
from queries_support import (  # noqa: F401
    SEEDED,
    benchmark_problems,
    filler_queries,
    planted_corpus,
    push_corpus,
    seeded_benchmarks,
)

from hubtools.errors import DataSourceError, RunStoreError
from hubtools.queries import add
from hubtools.queries.clean import FUNNEL_FILE, REMOVED_FILE, clean
from hubtools.queries.decontaminate import KNOWN_BENCHMARKS
from hubtools.queries.export import export
from hubtools.queries.pull import pull
from hubtools.records import Query
from hubtools.release.stats import read_funnel_file
from hubtools.run import Run

SEEDED_SPECS = tuple(KNOWN_BENCHMARKS[name] for name in SEEDED)


def write_sources(path, repo, name="corpus"):
    path.write_text(
        f"sources:\n  - name: {name}\n    repo: {repo}\n    category: general\n    shape: problem\n"
    )
    return path


@pytest.fixture(scope="module")
def cleaned(hub, seeded_benchmarks, tmp_path_factory):  # noqa: F811
    """The planted corpus pulled and cleaned once; tests read the outcome."""
    rows = planted_corpus(seeded_benchmarks)
    repo = "corpus-org/planted-queries"
    push_corpus(hub, rows, repo)
    base = tmp_path_factory.mktemp("clean")
    pull(write_sources(base / "sources.yaml", repo), base / "run", progress=False)
    result = clean(base / "run", benchmarks=SEEDED_SPECS, progress=False)
    return rows, base / "run", result


def outcomes(run) -> dict[int, tuple[str, str | None]]:
    """Per corpus row: ('kept', None), (reason, matched query_id), or absent when the
    pull found it identical to an earlier row (same query_id)."""
    kept = {q.query_id: q.meta["source_row"] for q in Run.open(run).iter_queries()}
    done: dict[int, tuple[str, str | None]] = {row: ("kept", None) for row in kept.values()}
    for row in pq.read_table(run / REMOVED_FILE).to_pylist():
        match = json.loads(row["match"]) if row["match"] else {}
        done[json.loads(row["meta"])["source_row"]] = (row["reason"], match.get("query_id"))
    return done, kept


DUP = ("pulled", "exact dedup", "near dedup")


def jaccard(a: str, b: str, n: int = 3) -> float:
    """Exact Jaccard similarity of the word n-gram sets (what MinHash estimates)."""

    def grams(text):
        words = re.findall(r"[^\W_]+", unicodedata.normalize("NFKC", text).lower())
        return {tuple(words[k : k + n]) for k in range(max(len(words) - n + 1, 1))}

    x, y = grams(a), grams(b)
    return len(x & y) / len(x | y)


def test_recall_and_precision(cleaned):
    rows, run, result = cleaned
    got, kept = outcomes(run)
    fate = [got.get(i, ("pulled", None)) for i in range(len(rows))]
    group_of_id = {qid: rows[i].group for qid, i in kept.items()}

    def dup_of_group(i):  # removed as a duplicate of a kept row of its own group
        reason, match = fate[i]
        return reason == "pulled" or (reason in DUP and group_of_id.get(match) == rows[i].group)

    filtered = {i for i, (f, _) in enumerate(fate) if f not in (*DUP, "kept", "decontamination")}
    live = [i for i in range(len(rows)) if i not in filtered]
    members = {}
    for i in live:
        members.setdefault(rows[i].group, []).append(i)
    report = {}
    for kind in ("exact", "near"):
        mine = [i for i in live if rows[i].kind == kind]
        found = [i for i in mine if dup_of_group(i) or any(
            dup_of_group(j) for j in members[rows[i].group] if j != i)]  # fmt: skip
        report[f"{kind} dup recall"] = len(found) / len(mine)
    removed = [i for i in live if fate[i][0] in DUP]
    # Right: a planted duplicate of its group, or two texts that are near duplicates by
    # the definition (exact Jaccard of word 3-grams >= 0.7), as some originals are:
    # Codeforces easy/hard statements, MisguidedAttention's variants of one puzzle.
    text_of = {qid: rows[i].text for qid, i in kept.items()}
    natural = [i for i in removed if not dup_of_group(i)
               and jaccard(rows[i].text, text_of.get(fate[i][1], "")) >= 0.7]  # fmt: skip
    right = [i for i in removed if dup_of_group(i)] + natural
    report["dup precision"] = len(right) / len(removed)
    contaminated = [i for i in live if rows[i].kind == "contaminated"]
    flagged = [i for i in live if fate[i][0] == "decontamination"]
    report["contamination recall"] = len(set(contaminated) & set(flagged)) / len(contaminated)
    report["contamination precision"] = len(set(contaminated) & set(flagged)) / len(flagged)
    for kind in ("number", "short"):
        mine = [i for i in live if rows[i].kind == kind]
        report[f"{kind} queries kept"] = sum(fate[i][0] == "kept" for i in mine) / len(mine)
    print(f"\nnatural near duplicates among the originals: {len(natural)}")
    print(f"planted rows {dict(Counter(r.kind for r in rows))}, filtered {len(filtered)}")
    print("\n".join(f"  {k:<26}{v:.3f}" for k, v in report.items()))
    print(result)
    assert report["exact dup recall"] == 1.0
    assert report["near dup recall"] >= 0.95
    assert report["dup precision"] >= 0.99
    assert report["contamination recall"] >= 0.95
    assert report["contamination precision"] >= 0.99
    assert report["number queries kept"] == 1.0  # never merged with their original
    assert report["short queries kept"] == 1.0
    assert len(filtered) < 0.06 * len(rows)


def snapshot(run) -> tuple:
    """What a clean produced: kept ids, removals with reason and match, the funnel."""
    kept = sorted(q.query_id for q in Run.open(run).iter_queries())
    removed = sorted(
        (r["query_id"], r["reason"], r["match"] or "")
        for r in pq.read_table(run / REMOVED_FILE).to_pylist()
    )
    funnel = json.loads((run / FUNNEL_FILE).read_text())
    return kept, removed, funnel["queries_in"], funnel["filters"], funnel["queries_out"]


def test_funnel_is_what_build_reads(cleaned, hub):
    rows, run, result = cleaned
    queries_in, filters = read_funnel_file(run)  # the release stage's reader
    assert queries_in == len(rows) == result.queries_in
    assert queries_in - sum(f["removed"] for f in filters) == result.queries_out
    assert result.queries_out == Run.open(run).count_queries()
    funnel = json.loads((run / FUNNEL_FILE).read_text())
    for step in funnel["filters"]:
        assert sum(step["by_source"].values()) == step["removed"]
    [source] = funnel["sources"]
    assert source["commit"] == HfApi().dataset_info("corpus-org/planted-queries").sha
    commits = {b["name"]: b["commit"] for b in funnel["benchmarks"]}
    for name in SEEDED:
        assert commits[name] == HfApi().dataset_info(KNOWN_BENCHMARKS[name].repo).sha


def test_clean_again_changes_nothing(cleaned):
    rows, run, result = cleaned
    before = snapshot(run)
    again = clean(run, progress=False)  # settings come from run.yaml
    assert again.added == 0
    assert snapshot(run) == before


def test_export_kept_and_removed(cleaned, tmp_path):
    rows, run, result = cleaned
    print(export(run, tmp_path / "kept.jsonl", progress=False))
    reloaded = add(tmp_path / "kept.jsonl", tmp_path / "again")  # the queries add format
    assert reloaded.added == result.queries_out
    export(run, tmp_path / "removed.jsonl", removed=True, progress=False)
    removed = [json.loads(line) for line in (tmp_path / "removed.jsonl").read_text().splitlines()]
    assert len(removed) == pq.ParquetFile(run / REMOVED_FILE).metadata.num_rows
    contaminated = [r for r in removed if r["reason"] == "decontamination"]
    problems = benchmark_problems()
    for record in contaminated:
        match = record["match"]
        assert problems[match["benchmark"]][match["index"]][:500] == match["problem"]
        assert match["method"] == "ngram" and match["score"] >= 0.5
    near = [r for r in removed if r["reason"] == "near dedup"]
    kept_ids = {q.query_id for q in Run.open(run).iter_queries()}
    assert near and all(r["match"]["query_id"] in kept_ids for r in near)
    assert all(0.7 <= r["match"]["similarity"] <= 1 for r in near)
    assert all(r["detail"] for r in removed)


def copy_pool(source_run, dest):
    """A new run holding the same pool (and so the same input) as ``source_run``."""
    Run.create(dest)
    shutil.copytree(source_run / "pulled", dest / "pulled")
    return dest


def test_sharded_clean_equals_unsharded(cleaned, tmp_path):
    rows, run, result = cleaned
    other = copy_pool(run, tmp_path / "sharded")
    for i in range(3):
        scanned = clean(other, benchmarks=SEEDED_SPECS, shard=(i, 3), progress=False)
        assert scanned.shard == (i, 3) and scanned.scanned == 1
    with pytest.raises(RunStoreError, match="cleaned in 3 shards"):
        clean(other, shard=(0, 2), progress=False)
    clean(other, progress=False)
    assert snapshot(other) == snapshot(run)


def test_default_benchmarks_must_all_load(cleaned, tmp_path):
    """GPQA is gated on the Hub and not seeded here: a clear error, never a silent skip."""
    rows, run, result = cleaned
    other = copy_pool(run, tmp_path / "defaults")
    with pytest.raises(DataSourceError, match="benchmark gpqa_diamond.*Idavidrein/gpqa"):
        clean(other, progress=False)
    assert not (other / FUNNEL_FILE).exists() and Run.open(other).count_queries() == 0
    assert "clean" not in Run.open(other).config  # nothing frozen: choose again
    clean(other, benchmarks=SEEDED_SPECS, progress=False)
    with pytest.raises(RunStoreError, match="another config .benchmarks differ"):
        clean(other, benchmarks=SEEDED_SPECS[:2], progress=False)


def test_run_config_chooses_the_benchmarks(cleaned, tmp_path):
    """A hand-written, partial `clean:` section in run.yaml: the defaults fill the rest."""
    rows, run, result = cleaned
    other = tmp_path / "configured"
    two = [KNOWN_BENCHMARKS["aime_2024"].to_dict(), KNOWN_BENCHMARKS["aime_2025"].to_dict()]
    Run.create(other, {"clean": {"benchmarks": two}})  # as a user writes it in run.yaml
    shutil.copytree(run / "pulled", other / "pulled")
    configured = clean(other, progress=False)
    assert [b["name"] for b in configured.benchmarks] == ["aime_2024", "aime_2025"]
    assert configured.steps[-1].by_benchmark == {"aime_2024": 29, "aime_2025": 30}
    with pytest.raises(RunStoreError, match=r"\(decontamination.embeddings differ"):
        clean(other, embeddings=True, progress=False)


def test_kill_9_then_rerun_gives_the_same_result(cleaned, tmp_path):
    """SIGKILL while scanning and while writing, then the same command: same outcome."""
    rows, run, result = cleaned
    names = ",".join(SEEDED)
    runs = {}
    for case in ("reference", "scan", "write"):
        runs[case] = copy_pool(run, tmp_path / case)
        Run.open(runs[case] / "pulled").add_queries(
            Query.from_prompt(t, source="filler", category="general")
            for t in filler_queries(15_000)
        )
    clean(runs["reference"], benchmarks=SEEDED_SPECS, workers=1, progress=False)
    command = [sys.executable, "-m", "hubtools", "queries", "clean", "--benchmarks", names]
    command += ["--workers", "1", "--quiet", "--run"]
    for case, marker in (("scan", "clean/scan/*/rg-*.parquet"), ("write", "clean/removed.parquet")):
        proc = subprocess.Popen([*command, str(runs[case])], stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while not list(runs[case].glob(marker)) and proc.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert not (runs[case] / FUNNEL_FILE).exists(), f"{case}: finished before the kill"
        clean(runs[case], workers=1, progress=False)  # the same settings, from run.yaml
        assert snapshot(runs[case]) == snapshot(runs["reference"]), case
