"""The paper's Figures 2-5 as PNG, drawn from ``stats.json``'s numbers (matplotlib, Agg).

Every figure is ``SIZE`` pixels (no tight bounding box: a card lays them out alike).
Box plots are drawn with ``Axes.bxp`` from the computed statistics, without outliers
(millions of points; ``stats.json`` counts them), means as triangles, means and medians
written beside each box.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot: no display, no GUI toolkit
import matplotlib.pyplot as plt  # noqa: E402

WIDTH, HEIGHT, DPI = 10, 5, 100
SIZE = (WIDTH * DPI, HEIGHT * DPI)
COLORS = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3"]


def _color(i: int) -> str:
    return COLORS[i % len(COLORS)]


def _save(fig: Any, path: Path) -> Path:
    """Written under a temp name and renamed: a reader sees a whole PNG or the old one."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fig.savefig(temp, dpi=DPI, format="png", metadata={"Software": "hubtools analyze"})
    plt.close(fig)
    temp.replace(path)
    return path


def _where(category: str) -> str:
    return "math" if category == "math" else "all categories (no math queries in common)"


def _grouped(ax: Any, labels: list[str], series: dict[str, list[float]]) -> None:
    n = max(1, len(series))
    width = 0.8 / n
    for i, (name, values) in enumerate(series.items()):
        xs = [x + (i - (n - 1) / 2) * width for x in range(len(labels))]
        ax.bar(xs, values, width, label=name, color=_color(i))
    ax.set_xticks(range(len(labels)), labels)
    ax.legend(fontsize=8)


def fig2_categories(stats: dict[str, Any], path: Path) -> Path:
    """Instances per category (shared by every teacher) and tokens per category per teacher."""
    numbers = stats["figures"]["fig2_categories"]
    categories, total = numbers["categories"], max(1, stats["instances"])
    fig, (left, right) = plt.subplots(1, 2, figsize=(WIDTH, HEIGHT))
    bars = left.bar(categories, numbers["instances"], color="#8C8C8C")
    for bar, n in zip(bars, numbers["instances"], strict=True):
        left.annotate(f"{n:,}\n({100 * n / total:.1f}%)", (bar.get_x() + bar.get_width() / 2,
                      bar.get_height()), ha="center", va="bottom", fontsize=8)  # fmt: skip
    left.set_title("Instances per category (every teacher passed)")
    left.set_ylabel("instances")
    left.margins(y=0.2)
    _grouped(right, categories, numbers["tokens"])
    right.set_title("Response tokens per category")
    right.set_ylabel("tokens (think + answer)")
    fig.tight_layout()
    return _save(fig, path)


def fig3_lengths(stats: dict[str, Any], path: Path) -> Path:
    numbers = stats["figures"]["fig3_math_lengths"]
    fig, ax = plt.subplots(figsize=(WIDTH, HEIGHT))
    _grouped(ax, numbers["labels"], numbers["counts"])
    ax.set_title(f"Response length distribution: {_where(numbers['category'])}")
    ax.set_xlabel("response tokens (bins of 1,024)")
    ax.set_ylabel("instances")
    fig.tight_layout()
    return _save(fig, path)


def _boxes(ax: Any, boxes: dict[str, dict[str, float] | None], digits: int) -> None:
    names = list(boxes)
    keys = ("mean", "q1", "q3", "whislo", "whishi")
    drawn = [{**{k: b[k] for k in keys}, "med": b["median"], "label": name, "fliers": []}
             for name, b in boxes.items() if b is not None]  # fmt: skip
    positions = [i + 1 for i, name in enumerate(names) if boxes[name] is not None]
    if drawn:
        parts = ax.bxp(drawn, positions=positions, showmeans=True, showfliers=False,
                       patch_artist=True, meanprops={"marker": "^", "markerfacecolor": "white",
                                                     "markeredgecolor": "black"})  # fmt: skip
        for i, patch in enumerate(parts["boxes"]):
            patch.set_facecolor(_color(positions[i] - 1))
            patch.set_alpha(0.6)
    for i, name in enumerate(names, 1):
        b = boxes[name]
        if b is None:
            ax.text(i, 0.5, "not scored", ha="center", va="center",
                    transform=ax.get_xaxis_transform(), color="gray")  # fmt: skip
            continue
        ax.annotate(f"mean {b['mean']:,.{digits}f}\nmedian {b['median']:,.{digits}f}",
                    (i + 0.27, b["median"]), fontsize=8, va="center")  # fmt: skip
    ax.set_xticks(range(1, len(names) + 1), names)
    ax.set_xlim(0.5, len(names) + 0.9)


def fig4_tokens(stats: dict[str, Any], path: Path) -> Path:
    numbers = stats["figures"]["fig4_tokens_box"]
    fig, ax = plt.subplots(figsize=(WIDTH, HEIGHT))
    _boxes(ax, numbers["teachers"], 1)
    ax.set_title(f"Response tokens per teacher: {_where(numbers['category'])} "
                 "(whiskers 1.5 IQR, outliers not drawn)")  # fmt: skip
    ax.set_ylabel("tokens (think + answer)")
    fig.tight_layout()
    return _save(fig, path)


def fig5_ppl(stats: dict[str, Any], path: Path) -> Path:
    numbers = stats["figures"]["fig5_ppl_box"]
    fig, ax = plt.subplots(figsize=(WIDTH, HEIGHT))
    _boxes(ax, numbers["teachers"], 2)
    ax.set_title(f"Perplexity per teacher: {_where(numbers['category'])} (whiskers 1.5 IQR)")
    ax.set_ylabel("perplexity")
    if not numbers["scored"]:
        ax.set_yticks([])
        ax.set_title("Perplexity per teacher: not scored (run `hubtools score`)")
    fig.tight_layout()
    return _save(fig, path)


DRAW = {
    "fig2_categories": fig2_categories,
    "fig3_math_lengths": fig3_lengths,
    "fig4_tokens_box": fig4_tokens,
    "fig5_ppl_box": fig5_ppl,
}


def draw_all(stats: dict[str, Any], folder: Path) -> list[Path]:
    """Every figure into ``folder``, named as ``stats["figures"][name]["file"]``."""
    return [draw(stats, folder / stats["figures"][name]["file"]) for name, draw in DRAW.items()]
