"""``report.md``: the tables behind the figures, in markdown a dataset card can include."""

from __future__ import annotations

from typing import Any


def _num(value: float | None, digits: int = 0) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _row(cells: list[Any]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _table(head: list[str], rows: list[list[Any]]) -> list[str]:
    return [_row(head), _row(["---"] * len(head)), *(_row(r) for r in rows)]


def _where(category: str) -> str:
    return "math" if category == "math" else "all categories (the queries include no math)"


def _source(stats: dict[str, Any]) -> str:
    source = stats["source"]
    if "releases" in source:
        return "the published releases " + ", ".join(f"`{r}`" for r in source["releases"])
    return f"the run `{source['run']}` (pass threshold {source['threshold']:g})"


def render(stats: dict[str, Any], images: str = "", level: int = 2) -> str:
    """The report; ``images`` prefixes the figure file names (``assets/`` in a card)."""
    h = "#" * level
    teachers, figures = stats["teachers"], stats["figures"]
    names = ", ".join(f"`{t}`" for t in teachers)
    lines = [
        f"Teachers compared: {names}, over the **{stats['instances']:,}** queries every one of "
        f"them answered correctly (from {_source(stats)}; one response per teacher and "
        "query, the first that passed). Response tokens are the whole response, think + "
        "answer, as in the paper's figures (arXiv 2505.14464, Figures 2-5).",
        "",
    ]

    def figure(name: str, alt: str) -> None:
        lines.extend([f"![{alt}]({images}{figures[name]['file']})", ""])

    lines += [f"{h} Instances and tokens per category", ""]
    figure("fig2_categories", "Instances and response tokens per category and teacher")
    head = ["category", "instances", "share", *(f"{t} tokens" for t in teachers)]
    rows = []
    for category, c in [*stats["categories"].items(), ("**all**", stats["all"])]:
        share = "100%" if c["share"] is None else f"{100 * c['share']:.1f}%"
        tokens = [_num(c["teachers"][t]["tokens"]) for t in teachers]
        rows.append([category, f"{c['instances']:,}", share, *tokens])
    lines += [*_table(head, rows), ""]

    lines += [f"{h} Response length per category", ""]
    head = ["category", *(f"{t} mean / median" for t in teachers)]
    rows = []
    for category, c in [*stats["categories"].items(), ("**all**", stats["all"])]:
        cells = []
        for t in teachers:
            b = c["teachers"][t]["length"]
            cells.append("n/a" if b is None else f"{b['mean']:,.1f} / {b['median']:,.0f}")
        rows.append([category, *cells])
    lines += [*_table(head, rows), ""]

    hist = figures["fig3_math_lengths"]
    lines += [f"{h} Length distribution: {_where(hist['category'])}", ""]
    figure("fig3_math_lengths", "Histogram of response lengths in bins of 1,024 tokens")
    rows = [[f"`{t}`", *(f"{n:,}" for n in hist["counts"][t])] for t in teachers]
    lines += [*_table(["teacher", *hist["labels"]], rows), ""]

    for name, title, digits in (("fig4_tokens_box", "Response tokens", 1),
                                ("fig5_ppl_box", "Perplexity", 2)):  # fmt: skip
        numbers = figures[name]
        lines += [f"{h} {title} per teacher: {_where(numbers['category'])}", ""]
        if name == "fig5_ppl_box" and not numbers["scored"]:
            lines += ["Perplexity: not scored (run `hubtools score` on the run).", ""]
            continue
        figure(name, f"Box plots of {title.lower()} per teacher")
        head = ["teacher", "n", "mean", "median", "Q1", "Q3", "whiskers (1.5 IQR)", "outliers"]
        rows = []
        for t in teachers:
            b = numbers["teachers"][t]
            if b is None:
                rows.append([f"`{t}`", 0, "not scored", "", "", "", "", ""])
                continue
            rows.append([f"`{t}`", f"{b['n']:,}", _num(b["mean"], digits),
                         _num(b["median"], digits), _num(b["q1"], digits), _num(b["q3"], digits),
                         f"{_num(b['whislo'], digits)} - {_num(b['whishi'], digits)}",
                         f"{b['outliers']:,}"])  # fmt: skip
        lines += [*_table(head, rows), ""]

    sources = []
    for t in teachers:
        counts = stats["token_sources"].get(t, {})
        sources.append(f"`{t}`: " + ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items())))
    lines += ["Token counts came from: " + "; ".join(sources) + ".", ""]
    return "\n".join(lines)


def document(stats: dict[str, Any]) -> str:
    """``report.md`` beside the figures."""
    return f"# Teacher comparison\n\n{render(stats)}"
