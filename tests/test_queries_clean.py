"""`queries clean` on a planted corpus pulled from the local Hub, decontaminated against
the real benchmark problems seeded there under their Hub ids: recall and precision."""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter

import pyarrow.parquet as pq
import pytest
from queries_support import SEEDED, planted_corpus, push_corpus, seeded_benchmarks  # noqa: F401

from hubtools.queries.clean import REMOVED_FILE, clean
from hubtools.queries.decontaminate import KNOWN_BENCHMARKS
from hubtools.queries.pull import pull
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
