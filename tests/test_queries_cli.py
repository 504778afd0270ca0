"""`hubtools queries pull | clean | export` as a user runs them, and the example recipe."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from datasets import Dataset
from queries_support import SEEDED, seeded_benchmarks  # noqa: F401

from hubtools.queries.sources import read_sources

ROOT = Path(__file__).resolve().parents[1]


def hubtools(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hubtools", *args], capture_output=True, text=True, timeout=300
    )


def test_pull_clean_export(hub, seeded_benchmarks, tmp_path):  # noqa: F811
    token = hub.token("cli-user", "cli-org", write=True)
    problems = ["What is 17 * 23?", "what is 17 * 23?", "Compute 18 * 23 for me, please."]
    problems.append(seeded_benchmarks["math500"][0])
    Dataset.from_dict({"problem": problems, "answer": ["391", "391", "414", "x"]}).push_to_hub(
        "cli-org/tiny", token=token
    )
    config = tmp_path / "sources.yaml"
    config.write_text("sources:\n  - {repo: cli-org/tiny, category: math, shape: problem}\n")
    run = str(tmp_path / "run")
    pulled = hubtools("queries", "pull", "--config", str(config), "--run", run, "--quiet")
    assert pulled.returncode == 0, pulled.stderr
    assert "tiny" in pulled.stdout and "next: hubtools queries clean" in pulled.stdout
    cleaned = hubtools(
        "queries", "clean", "--run", run, "--benchmarks", ",".join(SEEDED), "--quiet", "--json"
    )
    assert cleaned.returncode == 0, cleaned.stderr
    funnel = json.loads(cleaned.stdout)
    removed = {f["name"]: f["removed"] for f in funnel["filters"]}
    assert (removed["exact dedup"], removed["decontamination"], funnel["queries_out"]) == (1, 1, 2)
    out = tmp_path / "removed.jsonl"
    exported = hubtools("queries", "export", "--run", run, "--out", str(out), "--removed")
    assert exported.returncode == 0 and "wrote 2 removed queries" in exported.stdout
    reasons = sorted(json.loads(line)["reason"] for line in out.read_text().splitlines())
    assert reasons == ["decontamination", "exact dedup"]


def test_errors_are_one_line(tmp_path):
    for args in (
        ("queries", "clean", "--run", str(tmp_path / "nowhere")),
        ("queries", "export", "--run", str(tmp_path / "nowhere"), "--out", "x.jsonl"),
        ("queries", "pull", "--config", str(tmp_path / "missing.yaml"), "--run", str(tmp_path)),
        ("queries", "clean", "--run", str(tmp_path), "--benchmarks", "aime"),
    ):
        result = hubtools(*args)
        assert result.returncode != 0
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert result.stderr.startswith("error: ")
    help_text = hubtools("queries", "--help").stdout
    assert all(verb in help_text for verb in ("add", "pull", "clean", "export"))


def test_example_recipe_parses():
    specs = read_sources(ROOT / "recipes" / "sources.yaml")
    assert {s.category.value for s in specs} == {"math", "code", "science", "if", "chat", "general"}
    assert len(specs) >= 18
