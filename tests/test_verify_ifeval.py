"""IFEval verification on Google's IFEval prompts: one compliant and one non-compliant
response per instruction id (all 25), partial scores, strict vs loose, and offline Punkt."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from conftest import shared_path

from hubtools.records import Query
from hubtools.verify import VerifyConfig, verifier_for
from hubtools.verify.ifeval import build_punkt_tab, check_constraints, instruction_ids


@pytest.fixture(scope="module")
def prompts() -> dict[int, dict]:
    path = shared_path("data", "benchmarks", "ifeval_input_data.jsonl")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {row["key"]: row for row in rows}


def _score(row: dict, response: str):
    constraints = {"instruction_id_list": row["instruction_id_list"], "kwargs": row["kwargs"]}
    return check_constraints(constraints, row["prompt"], response)


LONG = " ".join(["Sleeping in a hammock rocks you gently to sleep."] * 45)  # 405 words
SHORT = "Hammocks are comfortable."
PARAGRAPHS = ["Aliens landed today in a field near the mall."] + [
    f"Paragraph {n} of this story is about the invasion." for n in range(2, 7)
]

# key of a single-instruction IFEval prompt -> (compliant response, non-compliant response)
CASES: dict[int, tuple[str, str]] = {
    1001: (  # punctuation:no_comma
        "Day one we sail to Tokyo and marvel at the temples.\nDay two we wander in Kyoto.",
        "Day one, we sail to Tokyo and marvel at the temples.",
    ),
    1005: (  # detectable_content:number_placeholders (12)
        " ".join(f"[field {n}]" for n in range(12)),
        "Name: [name]\nAddress: [address]",
    ),
    1019: ("what are the two young boys holding?", "What are the two young boys holding?"),
    102: ("* Ball gown: Ready?\n* Sweats: Almost.\n* Ball gown: Hurry!", "* Ready?\n* Almost."),
    1072: (LONG, SHORT),  # length_constraints:number_words (at least 400)
    1075: (
        '```json\n{"product": "Cozy Diaper", "slogan": "Soft as a cloud"}\n```',
        "Introducing the Cozy Diaper: soft as a cloud!",
    ),
    1082: (
        "He woke up inside a game.\n\n***\n\nHe found the exit and left.",
        "He woke up.\n\n***\n\nHe played.\n\n***\n\nHe left.",
    ),
    1098: ("Allah\n******\nYahweh", "God"),  # combination:two_responses
    1108: ("ಹೌದು, ಹ್ಯಾಂಬರ್ಗರ್‌ಗಳನ್ನು ಸ್ಯಾಂಡ್‌ವಿಚ್‌ಗಳೆಂದು ಪರಿಗಣಿಸಬಹುದು.", "Yes, hamburgers are sandwiches."),
    1128: (
        "The sentiment is negative. Is there anything else I can help with?",
        "The sentiment is negative. Anything else?",
    ),
    1130: (  # keywords:letter_frequency: fewer than 2 letters t
        "Quiz: which color is a chesterfield sofa? A: brown.",
        "Tell me the type of the chesterfield.",
    ),
    1131: (
        "Section 1\nName\nSection 2\nSkills\nSection 3\nShows\nSection 4\nContact",
        "Section 1\nName\nSection 2\nSkills",
    ),
    1147: (
        "My fellow Americans, the work to resolve the problem is complete.",
        "My fellow Americans, the issue is fixed.",
    ),
    122: ('"The internet changed how teenagers live."', "The internet changed how teenagers live."),
    1246: ("Soft and warm, a blanket born.\nP.P.S. Edit the rhyme.", "Soft and warm."),
    1268: (
        "I felt stressed. I went for a walk. It helped.",
        "One. Two. Three. Four. Five. Six. Seven.",
    ),
    1307: (
        "\n".join(f"*Section {n}: history part {n}*" for n in range(15)),
        "*Origins*\n*Trade*\n*Today*",
    ),
    1322: ("<<Kotlin vs Java>>\nKotlin is concise; Java is everywhere.", "Kotlin is concise."),
    1393: (
        "Synonyms help writers. Too many synonyms confuse readers. Pick synonyms with care.",
        "Synonyms help writers.",
    ),
    1480: (
        "Write a blog post about the most interesting things you have seen or ridden on public "
        "transportation. Once I rode a bus with a goat on board.",
        "Once I rode a bus with a goat on board.",
    ),
    1531: (
        "Project Atlantis: a constable escorts every participant.",
        "Project Atlantis: accessible transport.",
    ),
    1566: (  # english_capital: upper case *and* detected as English (langdetect, seeded)
        "I STILL REMEMBER THE NIGHT WE SAID GOODBYE. THIS SONG IS ABOUT THE WORDS I NEVER SAID.",
        "I still remember the night we said goodbye. This song is about the words I never said.",
    ),
    1592: ("The US MUST ACT NOW on renewable energy.", "The US must act now; it is URGENT."),
    181: (
        "\n\n".join(PARAGRAPHS[:1] + ["President Zork greets the earthlings."] + PARAGRAPHS[2:]),
        "\n\n".join(PARAGRAPHS),
    ),
    227: ("My answer is no.", "The poodle is smaller."),
}


def test_every_instruction_id_is_covered(prompts):
    covered = {prompts[key]["instruction_id_list"][0] for key in CASES}
    assert covered == set(instruction_ids())
    assert len(covered) == 25


@pytest.mark.parametrize("key", sorted(CASES))
def test_compliant_and_non_compliant_responses(prompts, key):
    row = prompts[key]
    assert len(row["instruction_id_list"]) == 1
    good, bad = CASES[key]
    assert _score(row, good).value == 1.0, (row["instruction_id_list"], good)
    assert _score(row, bad).value == 0.0, (row["instruction_id_list"], bad)


def test_score_is_the_strict_share_of_constraints_followed(prompts):
    row = prompts[1000]  # no commas, >= 3 highlighted sections, >= 300 words
    assert row["instruction_id_list"] == [
        "punctuation:no_comma",
        "detectable_format:number_highlighted_sections",
        "length_constraints:number_words",
    ]
    words = " ".join(["Raymond ruled Tripoli"] * 100)
    all_three = f"*Youth* {words} *Rule* *Legacy*"
    assert _score(row, all_three).value == 1.0
    two = f"*Youth*, {words} *Rule* *Legacy*"  # one comma
    result = _score(row, two)
    assert result.value == pytest.approx(2 / 3)
    assert result.details["strict"] == [False, True, True]
    assert _score(row, "A short note without highlights").value == pytest.approx(1 / 3)


def test_loose_results_are_kept_in_the_details(prompts):
    row = prompts[122]  # wrap the entire response in double quotes
    response = 'Sure, here it is:\n"The internet changed how teenagers live."'
    result = _score(row, response)
    assert result.value == 0.0  # strict: the first line is outside the quotes
    assert result.details["loose"] == [True] and result.details["loose_score"] == 1.0


def test_verifier_checks_the_final_answer_and_reports_bad_constraints(prompts):
    row = prompts[1001]
    query = Query.from_prompt(
        row["prompt"], source="ifeval", category="if",
        constraints={"instruction_id_list": row["instruction_id_list"], "kwargs": row["kwargs"]},
    )  # fmt: skip
    verifier = verifier_for("if", VerifyConfig())
    assert verifier.name == "ifeval"
    assert verifier.verify(query, "No commas here at all.").value == 1.0
    bad = Query.from_prompt(
        "x", source="t", category="if",
        constraints={"instruction_id_list": ["made:up"], "kwargs": [{}]},
    )  # fmt: skip
    assert "unknown IFEval instruction ids" in verifier.verify(bad, "y").details["error"]
    none = Query.from_prompt("x", source="t", category="if")
    assert verifier.verify(none, "y").details["error"].startswith("the query has no IFEval")


def test_punkt_files_load_in_nltk_and_split_like_the_bundled_model(tmp_path, monkeypatch):
    import nltk
    import punkt
    from nltk.data import FileSystemPathPointer
    from nltk.tokenize.punkt import PunktSentenceTokenizer, load_punkt_params

    target = build_punkt_tab(tmp_path)
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path), *nltk.data.path])  # NLTK's sandbox
    assert target == tmp_path / "tokenizers" / "punkt_tab" / "english"
    tokenizer = PunktSentenceTokenizer()
    tokenizer._params = load_punkt_params(FileSystemPathPointer(str(target)))
    text = "Dr. Smith met Mr. Jones at 5 p.m. on Jan. 3. The U.S. office was shut! Why? No idea."
    assert tokenizer.tokenize(text) == punkt.sent_tokenize(text)
    assert len(tokenizer.tokenize(text)) == 4


def test_ifeval_runs_with_the_network_refused(tmp_path):
    """A fresh machine: no NLTK data anywhere, every connection refused; IFEval still works."""
    script = textwrap.dedent(
        """
        import socket
        def refuse(*args, **kwargs):
            raise OSError("network disabled by the test")
        socket.socket.connect = refuse
        socket.create_connection = refuse
        from hubtools.verify.ifeval import check_constraints
        constraints = {"instruction_id_list": ["length_constraints:number_sentences"],
                       "kwargs": [{"relation": "less than", "num_sentences": 3}]}
        print(check_constraints(constraints, "p", "One. Two.").value,
              check_constraints(constraints, "p", "One. Two. Three.").value)
        """
    )
    env = {**os.environ, "HOME": str(tmp_path), "HUBTOOLS_NLTK_DATA": str(tmp_path / "nltk")}
    env.pop("NLTK_DATA", None)
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["1.0", "0.0"]
    assert (
        tmp_path / "nltk" / "tokenizers" / "punkt_tab" / "english" / "sent_starters.txt"
    ).exists()
