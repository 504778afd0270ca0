"""Attempts as the scoring model reads them: its chat template, its token ids.

The conversation is the query's turns (a system turn included when the query has one)
then one assistant turn holding ``assistant_value(think, answer)``, the exact text a
release row carries. ``prompt`` is that conversation without the assistant turn,
rendered with the generation prompt; the response is what the full rendering adds to
it (the assistant text and its end-of-turn tokens). A template that renders the prompt
differently inside the full conversation (e.g. one that rewrites earlier turns) cannot
give a response to score, and is refused rather than guessed around.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hubtools.quality.backends.base import ScoreRequest, ScoringError
from hubtools.reasoning import assistant_value, think_and_answer
from hubtools.records import Attempt, Query


@dataclass(frozen=True, slots=True)
class Rendered:
    """One attempt ready to score, with its token counts (see ``ResponseScore``)."""

    request: ScoreRequest
    think_tokens: int
    answer_tokens: int
    total_tokens: int
    token_source: str


class Renderer:
    """Renders with ``tokenizer`` (the scoring model's), which also counts tokens."""

    def __init__(self, tokenizer: Any, name: str):
        if not getattr(tokenizer, "chat_template", None):
            raise ScoringError(
                f"the tokenizer of {name} has no chat template: score needs the scoring "
                "model's template to render prompts (set tokenizer: to one that has it)"
            )
        self.tokenizer = tokenizer
        self.source = f"tokenizer:{name}"

    def conversation(
        self, turns: list[dict[str, str]], response: str
    ) -> tuple[str, str]:  # fmt: skip
        """(prompt text, full text) of ``turns`` answered with ``response``."""
        turns = [{"role": t["role"], "content": t["content"]} for t in turns]
        template = self.tokenizer.apply_chat_template
        try:
            prompt = template(turns, tokenize=False, add_generation_prompt=True)
            full = template([*turns, {"role": "assistant", "content": response}], tokenize=False)
        except Exception as err:  # a template's own error (jinja raise_exception, roles)
            raise ScoringError(f"the chat template cannot render this query: {err}") from None
        return prompt, full

    def render(self, pairs: list[tuple[Query, Attempt]]) -> list[Rendered]:
        """Each (query, attempt) as a ScoreRequest plus counts; tokenized in one batch."""
        texts, parts = [], []
        for query, attempt in pairs:
            think, answer = think_and_answer(attempt)
            texts.extend(self.conversation(query.messages, assistant_value(think, answer)))
            parts.extend([think or "", answer or ""])
        ids = self._ids(texts)
        counts = [len(x) for x in self._ids(parts)]
        out = []
        for i, (_, attempt) in enumerate(pairs):
            prompt, full = ids[2 * i], ids[2 * i + 1]
            if full[: len(prompt)] != prompt or not texts[2 * i + 1].startswith(texts[2 * i]):
                raise ScoringError(
                    f"the chat template renders the prompt of {attempt.query_id} differently "
                    "once the answer follows (it rewrites earlier turns): no response "
                    "tokens to score; use a scoring model whose template keeps the prefix"
                )
            think_n, answer_n = counts[2 * i], counts[2 * i + 1]
            if attempt.completion_tokens is not None:
                total, source = attempt.completion_tokens, "teacher"
            else:
                total, source = think_n + answer_n, self.source
            request = ScoreRequest(prompt, full[len(prompt) :], texts[2 * i + 1])
            out.append(Rendered(request, think_n, answer_n, total, source))
        return out

    def _ids(self, texts: list[str]) -> list[list[int]]:
        if not texts:
            return []
        # The template writes any BOS itself: no special tokens added on top.
        return self.tokenizer(texts, add_special_tokens=False)["input_ids"]
