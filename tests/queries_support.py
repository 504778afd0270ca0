"""Real benchmark problems seeded into the local Hub under their Hub ids, and a planted
query corpus (originals from ../shared/data plus labelled duplicates, number variants,
short queries and contaminated copies) for the queries tests."""

from __future__ import annotations

import gzip
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import shared_path
from datasets import Dataset
from huggingface_hub import CommitOperationAdd, HfApi

from hubtools.queries.decontaminate import KNOWN_BENCHMARKS

SEEDED = ("aime_2024", "aime_2025", "math500", "livecodebench", "ifeval")  # not GPQA: gated


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def lcb_question(prompt: str) -> str:
    """The problem statement of a QwQ-formatted LiveCodeBench prompt (question_content)."""
    body = prompt.split("Question: ", 1)[1]
    for tail in ("\n\nRead the inputs from stdin", "\n\nYou will use the following starter"):
        body = body.split(tail, 1)[0]
    return body.strip()


def benchmark_problems() -> dict[str, list[str]]:
    base = shared_path("data", "benchmarks")
    return {
        "aime_2024": [r["problem"] for r in _jsonl(base / "aime_2024.jsonl")],
        "aime_2025": [r["problem"] for r in _jsonl(base / "aime_2025.jsonl")],
        "math500": [r["problem"] for r in _jsonl(base / "math500.jsonl")],
        "livecodebench": [
            lcb_question(r["prompt"]) for r in _jsonl(base / "livecodebench_v5_prompts.jsonl")
        ],
        "ifeval": [r["prompt"] for r in _jsonl(base / "ifeval_input_data.jsonl")],
    }


def seed_benchmarks(hub) -> dict[str, list[str]]:
    """Push the benchmarks to ``hub`` in the layout of the real repos (once per Hub)."""
    base = shared_path("data", "benchmarks")
    orgs = sorted({KNOWN_BENCHMARKS[n].repo.split("/")[0] for n in SEEDED})
    token = hub.token("benchmark-seeder", *orgs, write=True)
    api = HfApi(token=token)
    problems = benchmark_problems()
    if api.repo_exists(KNOWN_BENCHMARKS["ifeval"].repo, repo_type="dataset"):
        return problems
    for name in ("aime_2024", "aime_2025"):
        rows = _jsonl(base / f"{name}.jsonl")
        Dataset.from_list(rows).push_to_hub(KNOWN_BENCHMARKS[name].repo, token=token)
    Dataset.from_list(_jsonl(base / "math500.jsonl")).push_to_hub(
        KNOWN_BENCHMARKS["math500"].repo, split="test", token=token
    )
    ifeval = _jsonl(base / "ifeval_input_data.jsonl")
    for row in ifeval:  # as on the Hub: kwargs as JSON-compatible structs
        row["kwargs"] = [json.dumps(k) for k in row["kwargs"]]
    Dataset.from_list(ifeval).push_to_hub(KNOWN_BENCHMARKS["ifeval"].repo, token=token)
    # LiveCodeBench: JSONL files beside a loading script, as the real repo ships them.
    repo = KNOWN_BENCHMARKS["livecodebench"].repo
    api.create_repo(repo, repo_type="dataset")
    lines = [
        json.dumps({"question_id": r["question_id"], "question_content": lcb_question(r["prompt"]),
                    "contest_date": r["contest_date"]})
        for r in _jsonl(base / "livecodebench_v5_prompts.jsonl")
    ]  # fmt: skip
    api.create_commit(
        repo,
        repo_type="dataset",
        commit_message="seed",
        operations=[
            CommitOperationAdd("test5.jsonl", ("\n".join(lines) + "\n").encode()),
            CommitOperationAdd("code_generation_lite.py", b"raise RuntimeError('a script')\n"),
        ],
    )
    return problems


@pytest.fixture(scope="session")
def seeded_benchmarks(hub) -> dict[str, list[str]]:
    return seed_benchmarks(hub)


@dataclass(slots=True)
class Planted:
    """A corpus row and what should happen to it."""

    text: str
    kind: str  # original, exact, near, number, short, contaminated
    group: str  # rows of one group are duplicates of each other, of no other row
    benchmark: str | None = None


_NUMBER = re.compile(r"(?<![\w.])(\d+)(?![\w.])")
_WORD = re.compile(r"\b[a-z]{4,}\b")


def originals() -> list[str]:
    """Real problems that are in no seeded benchmark (other contests, coding, puzzles)."""
    data = shared_path("data")
    texts = [r["problem"] for r in _jsonl(data / "benchmarks" / "hmmt_feb_2025.jsonl")]
    texts += [r["problem"] for r in _jsonl(data / "benchmarks" / "amc23.jsonl")]
    texts += [r["problem"].strip() for r in json.loads(
        (data / "code" / "deepcoder" / "test_code_codeforces.json").read_text())[:200]]  # fmt: skip
    with gzip.open(data / "code" / "humaneval" / "HumanEval.jsonl.gz", "rt") as file:
        texts += [json.loads(line)["prompt"] for line in file][:100]
    misguided = data / "teachers" / "misguided_attention" / "output_queries_r10528.json"
    texts += sorted({r["prompt"] for r in json.loads(misguided.read_text())["results"]})
    seen, unique = set(), []
    for text in texts:
        if text not in seen:
            seen.add(text)
            unique.append(text)
    return unique


SHORT = [
    "What is 2+2?", "What is 2+3?", "Name a prime number.", "Name an even number.",
    "Define entropy briefly.", "Define enthalpy briefly.", "Is 91 prime?", "Is 97 prime?",
    "Translate 'cat' to French.", "Translate 'dog' to French.", "Factor x^2-1.", "Factor x^2+1.",
]  # fmt: skip
PREFIXES = ("Solve the following problem. ", "Here is a question for you:\n\n", "Problem: ")
SUFFIXES = (" Show your reasoning step by step.", "\n\nPut the final answer in a box.", "")


def planted_corpus(problems: dict[str, list[str]], seed: int = 7) -> list[Planted]:
    """Originals, then duplicates of some, number variants, short queries, contaminated
    benchmark problems (verbatim, reformatted, or inside a longer prompt), shuffled."""
    rng = random.Random(seed)
    base = originals()
    rows = [Planted(text, "original", f"o{i}") for i, text in enumerate(base)]
    long_ones = [i for i, t in enumerate(base) if len(t.split()) >= 30]
    for i in rng.sample(long_ones, 60):
        text = base[i]
        variant = rng.choice([text.lower(), text.upper(), "  " + text.replace(" ", "   ") + "\n"])
        rows.append(Planted(variant, "exact", f"o{i}"))
    for i in rng.sample(long_ones, 80):
        words = base[i].split(" ")
        candidates = [k for k, w in enumerate(words) if _WORD.fullmatch(w)]
        k = rng.choice(candidates)
        edit = rng.choice(["replace", "drop", "punct"])
        if edit == "replace":
            words[k] = rng.choice(["certain", "given", "following", "particular"])
        elif edit == "drop":
            del words[k]
        else:
            words[k] = words[k] + rng.choice([",", ";", "!"])
        rows.append(Planted(" ".join(words), "near", f"o{i}"))
    numbered = [i for i in long_ones if _NUMBER.search(base[i])]
    for n, i in enumerate(rng.sample(numbered, 60)):
        found = list(_NUMBER.finditer(base[i]))
        m = rng.choice(found)
        changed = base[i][: m.start()] + str(int(m.group(1)) + 1) + base[i][m.end() :]
        rows.append(Planted(changed, "number", f"n{n}"))
    rows += [Planted(text, "short", f"s{n}") for n, text in enumerate(SHORT)]
    rows += [Planted(SHORT[0].lower(), "exact", "s0"), Planted("what is 2 + 2 ?", "near", "s0")]
    samples = {"aime_2024": 30, "aime_2025": 30, "math500": 80, "ifeval": 60, "livecodebench": 40}
    for name, count in samples.items():
        for n, problem in enumerate(rng.sample(problems[name], count)):
            style = n % 3
            if style == 0:
                text = problem
            elif style == 1:
                text = "\n " + problem.replace(" ", "  ").upper() + " \n"
            else:
                text = rng.choice(PREFIXES) + problem + rng.choice(SUFFIXES)
            rows.append(Planted(text, "contaminated", f"c{name}{n}", name))
    rng.shuffle(rows)
    return rows


def push_corpus(hub, rows: list[Planted], repo: str) -> None:
    """The corpus as a problem/answer dataset on the Hub (row order = list order)."""
    token = hub.token("corpus-owner", repo.split("/")[0], write=True)
    Dataset.from_dict(
        {"problem": [r.text for r in rows], "answer": [str(n) for n in range(len(rows))]}
    ).push_to_hub(repo, token=token)


def filler_queries(count: int, seed: int = 3) -> list[str]:
    """Distinct made-up word problems, to give a pool several scan units."""
    rng = random.Random(seed)
    words = ["apples", "trains", "circles", "workers", "tanks", "coins", "ropes", "cards"]
    verbs = ["share", "fill", "paint", "carry", "sort", "weigh", "count", "stack"]
    return [
        f"Problem {i}: {rng.randint(2, 999)} {rng.choice(words)} {rng.choice(verbs)} "
        f"{rng.randint(2, 999)} {rng.choice(words)} in {rng.randint(2, 99)} hours; how many "
        f"{rng.choice(words)} does each of {rng.randint(2, 50)} {rng.choice(words)} get?"
        for i in range(count)
    ]
