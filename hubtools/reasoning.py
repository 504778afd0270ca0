"""Where a teacher's reasoning is: a separate field, or `<think>` tags in the text.

vLLM with a reasoning parser returns `reasoning` (`reasoning_content` before
about v0.11), SGLang `reasoning_content`, TGI keeps `<think>...</think>` in the
content. The split follows vLLM's parser, the de-facto rule
(shared/specs/inference-protocols.md): drop one leading `<think>`; no `</think>`
at all means everything is reasoning and the answer is missing (truncation);
otherwise split at the first `</think>`.

Shared by the stages that take answers in: `generate` (from endpoints), `import` and
`build` (from files and the run store), so every one splits the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


@dataclass(frozen=True, slots=True)
class Split:
    think: str | None
    answer: str | None
    truncated: bool  # reasoning never closed: the answer is missing


def split_reasoning(content: str | None, reasoning: str | None = None) -> Split:
    """(think, answer) from a message's content and its reasoning field, if any."""
    content = content or ""
    if reasoning:
        return Split(reasoning.strip(), content.strip() or None, truncated=not content.strip())
    text = content.lstrip()
    if text.startswith(THINK_OPEN):
        text = text[len(THINK_OPEN) :]
    elif THINK_CLOSE not in text:
        return Split(None, content.strip() or None, truncated=False)  # no reasoning at all
    if THINK_CLOSE not in text:
        return Split(text.strip() or None, None, truncated=True)
    think, answer = text.split(THINK_CLOSE, 1)
    return Split(think.strip() or None, answer.strip() or None, truncated=False)


def field_reasoning(message: dict) -> str | None:
    """The reasoning field under either of its names."""
    return message.get("reasoning") or message.get("reasoning_content") or None


def assistant_value(think: str | None, answer: str | None) -> str:
    """The AM assistant text: ``<think>...</think>`` then ``<answer>...</answer>``.

    What a release row carries and so what a student trains on; ``score`` measures the
    perplexity of this same text.
    """
    return f"<think>\n{think or ''}\n</think>\n<answer>\n{answer or ''}\n</answer>"


def think_and_answer(attempt) -> tuple[str | None, str | None]:  # noqa: ANN001 (an Attempt)
    """An attempt's parts as a release row shows them: its stored think/answer, else its
    text split by the rule above (imported answers may carry only the text)."""
    if attempt.think is not None or attempt.answer is not None:
        return attempt.think, attempt.answer
    split = split_reasoning(attempt.text)
    return split.think, split.answer
