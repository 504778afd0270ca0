"""GPQA-Diamond and IFEval through `hubtools eval`: the rows' layout on the Hub, the prompt
each becomes, and which answers pass (a letter; every instruction followed)."""

from __future__ import annotations

import json
import re

import pytest
from datasets import Dataset
from huggingface_hub import HfApi
from queries_support import seeded_benchmarks  # noqa: F401

from hubtools.eval.settings import GPQA_SUFFIX, resolve_settings
from hubtools.eval.stage import TEACHER, evaluate
from hubtools.records import query_id_for
from hubtools.teachers.client import attempt_seed
from tests.servers.chat_server import ChatServer, Reply

# Hand-made rows in the real repo's layout (Idavidrein/gpqa is gated: not in ../shared/data).
GPQA = [
    {"Record ID": "rec1", "Question": "Which particle mediates the electromagnetic force?",
     "Correct Answer": "The photon", "Incorrect Answer 1": "The gluon",
     "Incorrect Answer 2": "The W boson", "Incorrect Answer 3": "The graviton"},
    {"Record ID": "rec2", "Question": "What is the pH of pure water at 25 C?",
     "Correct Answer": "7", "Incorrect Answer 1": "0", "Incorrect Answer 2": "14",
     "Incorrect Answer 3": "1"},
]  # fmt: skip
FOLLOWS = "*Part one*\n*Part two*\n*Part three*\n" + "word " * 320  # no comma, 3 highlights
BREAKS = FOLLOWS + "\nOne, two."  # a comma: 2 of 3 instructions, not a pass


@pytest.fixture(scope="module")
def gpqa(hub):
    """Seeded for this module only: other tests rely on the gated GPQA being absent."""
    api = HfApi(token=hub.token("gpqa-seeder", "Idavidrein", write=True))
    if not api.repo_exists("Idavidrein/gpqa", repo_type="dataset"):
        Dataset.from_list(GPQA).push_to_hub(
            "Idavidrein/gpqa", config_name="gpqa_diamond", split="train", token=api.token
        )
    yield
    api.delete_repo("Idavidrein/gpqa", repo_type="dataset", missing_ok=True)


def test_gpqa_letters_and_ifeval_instructions(seeded_benchmarks, gpqa, tmp_path):  # noqa: F811
    prompts = {}

    def respond(body):
        prompt = body["messages"][-1]["content"]
        qid = query_id_for([{"role": "user", "content": prompt}])
        sample = {attempt_seed(qid, TEACHER, a): a for a in range(4)}[body["seed"]]
        prompts.setdefault(prompt, set()).add(sample)
        if prompt.endswith(GPQA_SUFFIX):
            options = dict(re.findall(r"^([A-D])\) (.+)$", prompt, re.M))
            row = next(r for r in GPQA if r["Question"] in prompt)
            right = next(k for k, v in options.items() if v == row["Correct Answer"])
            wrong = next(k for k in options if k != right)
            # rec1: right on samples 0-2; rec2: right on sample 0 only
            good = sample < (3 if row["Record ID"] == "rec1" else 1)
            return Reply(
                f"<think>Recall.</think>The answer is \\boxed{{{right if good else wrong}}}."
            )
        return Reply(FOLLOWS if sample == 0 else BREAKS)

    with ChatServer(respond) as server:
        settings = resolve_settings(
            endpoint=server.url, model="student", benchmarks="gpqa_diamond,ifeval",
            out=tmp_path / "eval", samples="gpqa_diamond=4,ifeval=2", limit=1,
        )  # fmt: skip
        results = evaluate(settings, progress=False).results["benchmarks"]
    gpqa_got, ifeval_got = results["gpqa_diamond"], results["ifeval"]
    assert (gpqa_got["dataset"], gpqa_got["problems"]) == ("Idavidrein/gpqa", 1)
    assert gpqa_got["avg_at_k"] == pytest.approx(3 / 4) and gpqa_got["verifier"] == "science"
    (gpqa_prompt,) = [p for p in prompts if p.endswith(GPQA_SUFFIX)]
    assert all(f"{k}) " in gpqa_prompt for k in "ABCD") and prompts[gpqa_prompt] == set(range(4))
    # IFEval: the first problem (no commas, 3 highlighted sections, 300+ words).
    assert ifeval_got["dataset"] == "google/IFEval" and ifeval_got["verifier"] == "ifeval"
    assert ifeval_got["avg_at_k"] == pytest.approx(1 / 2)  # 1 of 2 follows every instruction
    line = json.loads((tmp_path / "eval" / "problems" / "ifeval.jsonl").read_text())
    assert line["problem_id"] == "1000" and line["scores"] == pytest.approx([1.0, 2 / 3])
