"""Finding the answer in a response: the final-answer part, boxed values, stated answers, letters.

Verification is only as strict as its extraction. A reasoning trace mentions many
numbers; crediting "the last number in the text" rewards answers that were never
given. So extraction here accepts only what a response presents as its answer:
``\\boxed{...}`` (or ``\\fbox{...}``), or an explicit statement ("The final answer
is X", "Answer: X"). Everything that follows works on the final-answer part only:
the text after ``</think>``, inside ``<answer>...</answer>`` when present.

Written here rather than taken from Math-Verify because Math-Verify's extraction
deliberately falls back to any number or LaTeX span anywhere in the text; its
parser is still what turns the extracted string into a value (see ``math.py``).
"""

from __future__ import annotations

import re

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
_ANSWER_TAG = re.compile(r"<answer>(.*?)(?:</answer>|\Z)", re.DOTALL | re.IGNORECASE)
_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{")
# "The final answer is X", "Final answer: X", "Answer: X", "**Answer:** X", "the answer is X";
# X ends with its line or sentence (a period before a space: "3.5" stays whole).
_STATED = re.compile(
    r"(?:final\s+answer(?:\s+is)?|(?<![a-z])answer\s*(?:is\b|:))"
    r"\s*(?:\*\*)?\s*:?\s*(?:\*\*)?[ \t]*(?P<value>(?:[^\n.]|\.(?!\s|$))*)",
    re.IGNORECASE,
)
_HOPE = re.compile(r"\.?\s*I hope it is correct\.?\s*$", re.IGNORECASE)


def split_think(text: str) -> tuple[str | None, str]:
    """``(think, answer)`` by vLLM's rule: drop one leading ``<think>``; split at the first
    ``</think>``; a ``<think>`` that is never closed means all reasoning, no answer."""
    stripped = text.lstrip()
    opened = stripped.startswith(THINK_OPEN)
    if opened:
        stripped = stripped[len(THINK_OPEN) :]
    head, closed, tail = stripped.partition(THINK_CLOSE)
    if closed:
        return head.strip(), tail.strip()
    if opened:
        return stripped.strip(), ""  # truncated inside the reasoning: there is no answer
    return None, text.strip()


def final_answer(text: str) -> str:
    """The part of a response that is verified: after ``</think>``, inside ``<answer>`` tags."""
    _, answer = split_think(text)
    tagged = _ANSWER_TAG.findall(answer)
    if tagged:
        return tagged[-1].strip()
    return answer


def boxed(text: str) -> list[str]:
    """The contents of every ``\\boxed{...}`` / ``\\fbox{...}``, braces balanced, in order."""
    found = []
    for match in _BOX.finditer(text):
        depth, start = 1, match.end()
        for i in range(start, len(text)):
            if text[i] == "{" and text[i - 1] != "\\":
                depth += 1
            elif text[i] == "}" and text[i - 1] != "\\":
                depth -= 1
                if depth == 0:
                    found.append(text[start:i].strip())
                    break
    return [content for content in found if content]


def stated_answer(text: str) -> str | None:
    """The value of the last explicit answer statement ("The final answer is X", "Answer: X"),
    up to the end of its line, or None when the response states no answer."""
    values = [m.group("value") for m in _STATED.finditer(text)]
    values = [_clean_statement(v) for v in values]
    values = [v for v in values if v]
    return values[-1] if values else None


def _clean_statement(value: str) -> str:
    value = _HOPE.sub("", value.strip())
    value = value.strip().strip("*").strip().rstrip(".").strip()
    if value.startswith("$") and value.endswith("$") and len(value) > 1:
        value = value.strip("$").strip()
    return value


# -- multiple choice -----------------------------------------------------------------------

_LETTER = r"\(?\s*(?:\\text\{)?\s*\(?(?P<letter>[A-J])\)?\s*\}?\s*\)?"
_CHOICE_STATEMENTS = [
    # "The correct option is D", "the correct answer is (B)", "Answer: C", "answer is C";
    # a bare "option A" is only a mention ("Option A is wrong"), not an answer.
    re.compile(
        r"(?:(?:correct|right|best|final)\s+(?:option|answer|choice)(?:\s+is)?"
        r"|answer\s*(?:is|:|=)|(?:option|choice)\s*(?:is|:|=))"
        r"\s*(?:\*\*)?\s*:?\s*(?:option\s+|choice\s+)?" + _LETTER + r"(?![A-Za-z])",
        re.IGNORECASE,
    ),
]
_LONE_LETTER = re.compile(r"^\s*(?:\*\*)?\(?(?P<letter>[A-J])\)?(?:\*\*)?[.:)]?\s*$")
_PAREN_LETTER = re.compile(r"(?<![A-Za-z0-9])\((?P<letter>[A-J])\)(?![A-Za-z0-9])")
# An option with its text, as models write it in a box or alone: "(C) Plane", "C. Plane",
# "C) Plane" (after \text{...} and similar wrappers are unwrapped, see _unwrap)
_OPTION = re.compile(r"\s*\(?\s*(?P<letter>[A-J])\s*\)?\s*[.:]?\s*")
_OPTION_TEXT = re.compile(
    r"\s*(?:\(\s*(?P<paren>[A-J])\s*\)\s*|(?P<mark>[A-J])[.:)]\s+)(?P<text>\S.*)", re.DOTALL
)
_WRAPPER = re.compile(r"\\(?:text(?:bf|it|rm|sf|tt)?|math(?:rm|bf|it|sf|tt)|mbox|bf|rm)\s*")


def _unwrap(latex: str) -> str:
    """``\\text{(C) Plane}`` -> ``(C) Plane``: font commands, braces, $ and ** removed."""
    text = _WRAPPER.sub("", latex).replace("\\ ", " ").replace("~", " ")
    return re.sub(r"[{}$]|\*\*", "", text).strip()


def option_letters(text: str) -> list[str]:
    """The option a piece of answer text is: ``C``, ``(C)``, ``\\text{(C) Plane}``, ``C. Plane``
    -> ``["C"]``; an option whose text names another option (``(C) Plane or (D) Line``) gives
    both, which is hedging; anything else gives ``[]``."""
    plain = _unwrap(text)
    if match := _OPTION.fullmatch(plain):
        return [match.group("letter")]
    if match := _OPTION_TEXT.fullmatch(plain):
        others = (m.group("letter") for m in _PAREN_LETTER.finditer(match.group("text")))
        return _distinct([match.group("paren") or match.group("mark"), *others])
    return []


def choice_letters(text: str, letters: str = "ABCDEFGHIJ") -> list[str]:
    """The option letters a response gives as its answer, most explicit form first:
    boxed (``\\boxed{B}``, ``\\boxed{\\text{(B) Plane}}``), then stated ("Answer: C", "The
    correct option is D"), then a response that is only a letter, a single ``(B)``, or one
    line that is an option with its text (``(C) Plane``).

    Returns every distinct letter of the most explicit form found, so the caller can treat
    two different answers as hedging. Statements are case-sensitive on the letter itself
    (the article "a" is not option A).
    """
    allowed = set(letters)
    box_letters = [letter for content in boxed(text) for letter in option_letters(content)]
    box_letters = [letter for letter in box_letters if letter in allowed]
    if box_letters:
        return _distinct(box_letters)
    for pattern in _CHOICE_STATEMENTS:
        found = [m.group("letter") for m in pattern.finditer(text)]
        found = [letter for letter in found if letter in allowed]
        if found:
            return [found[-1]]  # the last statement is the conclusion
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if lines and (match := _LONE_LETTER.match(lines[-1])) and match.group("letter") in allowed:
        return [match.group("letter")]
    if len(lines) == 1:  # the whole answer is one option with its text: "C. Plane"
        found = [letter for letter in option_letters(lines[0]) if letter in allowed]
        if found:
            return found
    found = _distinct(m.group("letter") for m in _PAREN_LETTER.finditer(text))
    return [letter for letter in found if letter in allowed]  # several: hedging


def _distinct(items) -> list[str]:
    return list(dict.fromkeys(items))
