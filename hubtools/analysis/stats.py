"""The numbers behind the figures, from the collected arrays (numpy; no matplotlib here).

Box statistics follow matplotlib's ``boxplot`` (``cbook.boxplot_stats``): quartiles by
linear interpolation, whiskers at the most extreme values within 1.5 IQR of the box.
The figures draw these very numbers (``Axes.bxp``), so a figure and ``stats.json``
cannot disagree.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hubtools.analysis.collect import Collected

BIN = 1024
BINS = 10  # 1,024-token bins up to 10,240, then ">10k": the paper's Figure 3
FOCUS = "math"  # Figures 3-5 are about math responses in the paper
ALL = "all"
TOKENS_NOTE = (
    "response tokens = the whole response (think + answer), as in the paper's figures: "
    "the stored score's total_tokens, else the teacher's completion_tokens, else the "
    "tokenizer's count of the think and answer texts"
)
FILES = {
    "fig2_categories": "fig2_categories.png",
    "fig3_math_lengths": "fig3_math_lengths.png",
    "fig4_tokens_box": "fig4_tokens_box.png",
    "fig5_ppl_box": "fig5_ppl_box.png",
}


def box(values: np.ndarray) -> dict[str, float] | None:
    """n, mean, quartiles, whisker ends (1.5 IQR), min, max and outliers of ``values``."""
    if not len(values):
        return None
    data = np.asarray(values, dtype=np.float64)
    q1, median, q3 = np.percentile(data, [25, 50, 75])
    iqr = q3 - q1
    low = data[data >= q1 - 1.5 * iqr]
    high = data[data <= q3 + 1.5 * iqr]
    whislo = float(low.min()) if len(low) else float(q1)
    whishi = float(high.max()) if len(high) else float(q3)
    return {
        "n": int(len(data)),
        "mean": float(data.mean()),
        "median": float(median),
        "q1": float(q1),
        "q3": float(q3),
        "whislo": whislo,
        "whishi": whishi,
        "min": float(data.min()),
        "max": float(data.max()),
        "outliers": int(((data < whislo) | (data > whishi)).sum()),
    }


def histogram(tokens: np.ndarray) -> list[int]:
    """Counts in (0, 1k], (1k, 2k], ..., (9k, 10k], > 10k (bins of 1,024 tokens)."""
    data = np.asarray(tokens, dtype=np.int64)
    index = np.clip(-(-data // BIN) - 1, 0, BINS)  # ceil(t / 1024) - 1; 0 tokens in the first
    return [int(n) for n in np.bincount(index, minlength=BINS + 1)]


def bin_labels() -> list[str]:
    return ["<=1k", *(f"{i}-{i + 1}k" for i in range(1, BINS)), f">{BINS}k"]


def _teacher_numbers(tokens: np.ndarray, ppl: np.ndarray, split: tuple[int, int, int]) -> dict:
    think, answer, n_split = split
    return {
        "instances": int(len(tokens)),
        "tokens": int(tokens.sum()),
        "think_tokens": think if n_split == len(tokens) and len(tokens) else None,
        "answer_tokens": answer if n_split == len(tokens) and len(tokens) else None,
        "length": box(tokens),
        "ppl": box(ppl),
        "ppl_scored": int(len(ppl)),
    }


def compute(collected: Collected) -> dict[str, Any]:
    """``stats.json``: per category and overall, per teacher; and each figure's numbers."""
    teachers, categories = collected.teachers, collected.categories()
    arrays: dict[str, dict[str, tuple[np.ndarray, np.ndarray, tuple[int, int, int]]]] = {}
    for teacher in teachers:
        by = collected.series.get(teacher, {})
        arrays[teacher] = {}
        for category in categories:
            s = by.get(category)
            if s is None:
                arrays[teacher][category] = (np.array([], np.int64), np.array([]), (0, 0, 0))
                continue
            tokens = np.frombuffer(s.tokens, dtype=np.int64) if len(s.tokens) else np.array([])
            ppl = np.frombuffer(s.ppl, dtype=np.float64) if len(s.ppl) else np.array([])
            arrays[teacher][category] = (tokens.astype(np.int64), ppl, (s.think, s.answer, s.split))
        everything = [arrays[teacher][c] for c in categories]
        arrays[teacher][ALL] = (
            np.concatenate([a[0] for a in everything]).astype(np.int64),
            np.concatenate([a[1] for a in everything]),
            tuple(sum(a[2][k] for a in everything) for k in range(3)),
        )
    first = teachers[0]
    instances = {c: int(len(arrays[first][c][0])) for c in [*categories, ALL]}
    total = instances[ALL]
    per_category = {
        c: {
            "instances": instances[c],
            "share": instances[c] / total if total else None,
            "teachers": {t: _teacher_numbers(*arrays[t][c]) for t in teachers},
        }
        for c in [*categories, ALL]
    }
    focus = FOCUS if instances.get(FOCUS) else ALL
    ppl_boxes = {t: per_category[focus]["teachers"][t]["ppl"] for t in teachers}
    figures = {
        "fig2_categories": {
            "categories": categories,
            "instances": [instances[c] for c in categories],
            "tokens": {
                t: [per_category[c]["teachers"][t]["tokens"] for c in categories] for t in teachers
            },  # fmt: skip
        },
        "fig3_math_lengths": {
            "category": focus,
            "bin_width": BIN,
            "bin_edges": [i * BIN for i in range(BINS + 1)] + [None],
            "labels": bin_labels(),
            "counts": {t: histogram(arrays[t][focus][0]) for t in teachers},
        },
        "fig4_tokens_box": {
            "category": focus,
            "teachers": {t: per_category[focus]["teachers"][t]["length"] for t in teachers},
        },
        "fig5_ppl_box": {
            "category": focus,
            "scored": any(b is not None for b in ppl_boxes.values()),
            "teachers": ppl_boxes,
        },
    }
    for name, numbers in figures.items():
        numbers["file"] = FILES[name]
    return {
        "schema": 1,
        "source": collected.source,
        "teachers": teachers,
        "tokens": TOKENS_NOTE,
        "token_sources": {t: dict(collected.token_sources.get(t, {})) for t in teachers},
        "instances": total,
        "skipped": collected.skipped,
        "categories": {c: per_category[c] for c in categories},
        ALL: per_category[ALL],
        "figures": figures,
    }
