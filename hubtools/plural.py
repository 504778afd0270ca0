"""Counts in messages: "1 answer", "2,048 answers", never "1 answers"."""

from __future__ import annotations


def plural(count: int, word: str, words: str | None = None) -> str:
    """``count`` with thousands separators and ``word`` (or ``words``, default word+s)."""
    return f"{count:,} {word if count == 1 else (words or word + 's')}"
