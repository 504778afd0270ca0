"""Science: option letters, numeric references through the math path, free-form via the judge."""

from __future__ import annotations

import asyncio

import pytest
from servers.chat_server import ChatServer, Reply

from hubtools.records import Query
from hubtools.verify import JudgeConfig, VerifyConfig, VerifyPool, verifier_for
from hubtools.verify.extract import choice_letters
from hubtools.verify.science import reference_kind

QUESTION = "Which gas do plants absorb? (A) O2 (B) CO2 (C) N2 (D) H2"


@pytest.mark.parametrize(
    "answer, letters",
    [
        ("Answer: C", ["C"]),
        ("**Answer:** (C)", ["C"]),
        ("The correct option is D.", ["D"]),
        ("So the correct answer is (B) because CO2 is absorbed.", ["B"]),
        (r"Therefore $\boxed{B}$.", ["B"]),
        (r"\boxed{\text{(C)}}", ["C"]),
        ("(B)", ["B"]),
        ("Carbon dioxide is taken in.\nB", ["B"]),
        ("Plants take in carbon dioxide, option (B) here.", ["B"]),
        ("A plant absorbs carbon dioxide.", []),  # the article "A" is no answer
        ("answer: c", []),  # option letters are capitals
        (r"\boxed{A} or maybe \boxed{B}", ["A", "B"]),  # hedging: both returned
        ("(A) is wrong and (B) is right", ["A", "B"]),
        ("I first thought Answer: A, but the final answer is B", ["B"]),  # the conclusion wins
        ("Answer: B. Option A is wrong since O2 is released.", ["B"]),  # a mention, no answer
        # an option written with its text, boxed, stated or alone
        (r"\boxed{\text{(B) CO2}}", ["B"]),
        (r"\boxed{(B) CO2}", ["B"]),
        (r"$\boxed{\textbf{(B)}\ \text{CO2}}$", ["B"]),
        (r"\boxed{B. CO2}", ["B"]),
        (r"\boxed{B) CO2}", ["B"]),
        (r"So \boxed{\text{(B) CO2}}: (A) and (C) are not absorbed.", ["B"]),  # the box wins
        (r"Answer: \text{(B) CO2}", ["B"]),
        ("The correct answer is (B) CO2.", ["B"]),
        (r"\text{(B) CO2}", ["B"]),
        (r"$\text{(B) CO2}$", ["B"]),
        ("(B) CO2", ["B"]),
        ("**(B) CO2**", ["B"]),
        ("B. CO2", ["B"]),
        (r"\boxed{\text{(B) CO2 or (D) H2}}", ["B", "D"]),  # hedging inside one box
        (r"\boxed{\text{(B) CO2}} \boxed{D}", ["B", "D"]),
        ("(B) CO2 or (D) H2", ["B", "D"]),
        ("A. O2 is released.\nC. N2 is inert.\nD. H2 is not used.", []),  # options reviewed
        (r"\boxed{A.5}", []),
    ],
)
def test_choice_letter_extraction(answer, letters):
    assert choice_letters(answer) == letters


def test_reference_kinds():
    assert [reference_kind(r) for r in ("C", "(c)", "(D).")] == ["choice"] * 3
    assert reference_kind(r"6.02 \times 10^{23}") == "math"
    assert reference_kind(r"\frac{3}{4}") == "math"
    assert reference_kind("Light energy is converted into chemical energy") == "free"


def _science(reference: str) -> Query:
    return Query.from_prompt(QUESTION, source="t", category="science", reference=reference)


def test_multiple_choice_scores():
    verifier = verifier_for("science", VerifyConfig())
    assert verifier.name == "science"
    assert verifier.verify(_science("B"), "CO2 is absorbed. Answer: B").value == 1.0
    assert verifier.verify(_science("(b)"), r"$\boxed{B}$").value == 1.0
    assert verifier.verify(_science("B"), "Answer: D").value == 0.0
    hedged = verifier.verify(_science("B"), r"\boxed{B} \boxed{D}")
    assert hedged.value == 0.0 and hedged.details["reason"].startswith("hedging")
    missing = verifier.verify(_science("B"), "Carbon dioxide.")
    assert missing.value == 0.0 and "no option letter" in missing.details["reason"]


@pytest.mark.parametrize("reference", ["B", "(B)"])
@pytest.mark.parametrize(
    "answer", [r"\text{(B) CO2}", "(B) CO2", r"\boxed{\text{(B) CO2}}", r"\boxed{(B) CO2}"]
)
def test_an_option_with_its_text_matches_its_letter(reference, answer):
    verifier = verifier_for("science", VerifyConfig())
    score = verifier.verify(_science(reference), answer)
    assert score.value == 1.0 and score.details["extracted"] == "B"
    wrong = verifier.verify(_science(reference.replace("B", "D")), answer)
    assert wrong.value == 0.0 and wrong.details["extracted"] == "B"


def test_an_option_text_naming_two_letters_is_hedging():
    verifier = verifier_for("science", VerifyConfig())
    for answer in (r"\boxed{\text{(B) CO2 or (C) N2}}", "(B) CO2 or (C) N2"):
        score = verifier.verify(_science("B"), answer)
        assert score.value == 0.0 and score.details["reason"].startswith("hedging")


def test_numeric_references_use_the_math_path():
    verifier = verifier_for("science", VerifyConfig())
    avogadro = _science(r"6.02 \times 10^{23}")
    assert verifier.verify(avogadro, r"N_A \approx \boxed{6.02\times10^{23}}").value == 1.0
    assert verifier.verify(avogadro, r"\boxed{6.02 \cdot 10^{22}}").value == 0.0
    assert verifier.verify(avogadro, "about 6.02e23 of them").value == 0.0  # not stated
    result = verifier.verify(_science("3.0"), "The final answer is 3")
    assert result.value == 1.0 and result.details["kind"] == "math"


def test_free_form_without_a_judge_is_an_exact_match():
    verifier = verifier_for("science", VerifyConfig())
    query = _science("Light energy is converted into chemical energy")
    assert not verifier.is_async_for(query)
    assert verifier.verify(query, "Answer: light energy is converted into chemical energy.").value
    result = verifier.verify(query, "Answer: sunlight becomes sugar.")
    assert result.value == 0.0 and "no judge configured" in result.details["reason"]


def test_free_form_with_a_judge_runs_on_the_loop_next_to_worker_checks():
    with ChatServer() as server:
        server.script(Reply('<think>same meaning</think>{"score": 9}'))
        config = VerifyConfig(judge=JudgeConfig(server.url, "grader"))
        free = _science("Light energy is converted into chemical energy")
        items = [(free, "Sunlight is stored as sugar."), (_science("B"), "Answer: B")]

        async def run():
            async with VerifyPool(config, workers=1) as pool:
                assert pool.runs_async(free) and not pool.runs_async(items[1][0])
                return await pool.score_batch(items)

        judged, letter = asyncio.run(run())
    assert judged.value == pytest.approx(0.9) and judged.details["kind"] == "free"
    assert judged.details["rubric"] == "reference-agreement"
    assert letter.value == 1.0 and letter.details["kind"] == "choice"
    [request] = server.chat_requests
    assert "## Reference answer\nLight energy" in request.body["messages"][1]["content"]
