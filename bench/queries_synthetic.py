"""Synthetic query corpora for bench/queries_clean.py: Zipf words, numbers, planted duplicates.

Every planted row records what it is (``meta.planted``: exact, near, number, or absent for
originals), so a bench can score detection as well as time it.
"""

from __future__ import annotations

import numpy as np

from hubtools.records import Query

WORDS = 20_000


def _vocabulary(rng: np.random.Generator) -> list[str]:
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    lengths = rng.integers(2, 10, size=WORDS)
    return ["".join(rng.choice(letters, size=n)) for n in lengths]


def synthetic_queries(count: int, seed: int = 0, planted: float = 0.1):
    """``count`` math queries: originals, then about ``planted`` of them as exact copies
    (case and spacing changed), near copies (one word replaced) and number variants."""
    rng = np.random.default_rng(seed)
    vocab = _vocabulary(rng)
    ranks = np.arange(1, WORDS + 1)
    weights = 1.0 / ranks
    weights /= weights.sum()
    originals: list[str] = []
    for index in range(count):
        kind = rng.random()
        if originals and kind < planted:
            base = originals[rng.integers(len(originals))]
            third = planted / 3
            if kind < third:
                text, tag = "  " + base.upper() + " ", "exact"
            elif kind < 2 * third:
                words = base.split(" ")
                words[rng.integers(len(words))] = vocab[rng.integers(WORDS)]
                text, tag = " ".join(words), "near"
            else:
                text, tag = (
                    base.replace(str(_first_number(base)), str(_first_number(base) + 1), 1),
                    "number",
                )
            yield Query.from_prompt(
                text, source="synthetic", category="general", meta={"planted": tag}
            )
            continue
        length = int(rng.integers(20, 90))
        words = [vocab[i] for i in rng.choice(WORDS, size=length, p=weights)]
        words[int(rng.integers(length))] = str(int(rng.integers(1, 10_000)))
        text = " ".join(words) + f" {index}?"
        originals.append(text)
        yield Query.from_prompt(text, source="synthetic", category="general", meta={})


def _first_number(text: str) -> int:
    return next(int(w.rstrip("?")) for w in text.split() if w.rstrip("?").isdigit())
