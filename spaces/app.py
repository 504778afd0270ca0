"""Inspect hubtools' parallel distilled datasets side by side (a Gradio Space).

The datasets come from ``$HUBTOOLS_SPACE_DATASETS`` (``ORG/NAME@REV,...``, what
``hubtools space run`` sets) or else from ``space.json`` next to this file (what
``hubtools space deploy`` writes). The Hub is ``$HF_ENDPOINT`` (else the file's
``endpoint``, else huggingface.co); private datasets are read with ``$HF_TOKEN``
(a Space secret). The data layer is ``space_reader.py`` beside this file in a deployed
Space, else ``hubtools.space.reader`` in a hubtools checkout.
"""

from __future__ import annotations

import html
import io
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no request off the machine
os.environ.setdefault("MPLBACKEND", "Agg")
HERE = Path(__file__).resolve().parent
if (HERE / "space_reader.py").exists():
    sys.path.insert(0, str(HERE))
    import space_reader as reader  # noqa: E402
else:
    from hubtools.space import reader  # noqa: E402

import gradio as gr  # noqa: E402

PAGE_SIZE = 10
LATEX = [
    {"left": "$$", "right": "$$", "display": True},
    {"left": "$", "right": "$", "display": False},
    {"left": "\\[", "right": "\\]", "display": True},
    {"left": "\\(", "right": "\\)", "display": False},
]
ANY = "any"
# System fonts only: a built-in theme's default fonts would be fetched from Google Fonts.
THEME = gr.themes.Base(
    font=["ui-sans-serif", "system-ui", "sans-serif"],
    font_mono=["ui-monospace", "SFMono-Regular", "monospace"],
)
CSS = """
.answer-col { min-width: 260px; }
#queries .wrap { flex-direction: column; }
.figure img { object-fit: contain !important; width: 100%; height: auto; }
.missing { color: #b91c1c; font-weight: 600; }
.truncated { color: #b45309; font-weight: 600; }
"""


def config() -> tuple[list[str], str | None]:
    """The datasets to show and the Hub endpoint (see the module docstring)."""
    saved = {}
    if (HERE / "space.json").exists():
        saved = json.loads((HERE / "space.json").read_text(encoding="utf-8"))
    specs = os.environ.get("HUBTOOLS_SPACE_DATASETS") or ",".join(saved.get("datasets", []))
    endpoint = os.environ.get("HF_ENDPOINT") or saved.get("endpoint")
    return reader.parse_specs(specs), endpoint


def _num(value, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _overview_markdown(data) -> str:
    items = data.overview()
    configs = [c for c in dict.fromkeys(c for i in items for c in i["rows"]) if c != "all"]
    head = "| teacher | release | rows | " + " | ".join(f"{c} rows (pass rate)" for c in configs)
    parts = [head + " |", "|---|---|---|" + "---|" * len(configs)]
    for item in items:
        cells = []
        for c in configs:
            rate = item["pass_rates"].get(c)
            shown = "" if rate is None else f" ({100 * rate:.1f}%)"
            cells.append(f"{item['rows'].get(c, 0):,}{shown}")
        parts.append(f"| **{item['label']}** | `{item['spec']}` | {item['rows'].get('all', 0):,} | "
                     + " | ".join(cells) + " |")  # fmt: skip
    parts.append("")
    for item in items:
        rows = " · ".join(f"{name} {n:,}" for name, n in item["rows"].items())
        parts.append(
            f"## {item['label']}\n\n`{item['spec']}` (commit `{item['sha'][:12]}`) — "
            f"{item['pretty_name']}, teacher `{item['teacher']}`\n\nRows: {rows or 'n/a'}\n"
        )
        for title, body in item["sections"].items():
            parts.append(f"<details><summary><b>{title}</b></summary>\n\n{body}\n\n</details>\n")
    return "\n".join(parts)


def _bound(value) -> float | None:
    """A range bound typed in a box: empty is open; what is not a number is ignored."""
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _choice(item: dict) -> str:
    scores = " · ".join(
        f"{label} {'—' if row is None else _num(row['score'])}"
        for label, row in item["rows"].items()
    )
    snippet = " ".join(item["snippet"].split())[:140]
    return f"[{item['category']}] {snippet} ({scores})"


def _header(label: str, row: dict | None) -> str:
    if row is None:
        return f"### {label}\n\n<span class='missing'>missing: no answer to this query</span>"
    flags = " <span class='truncated'>truncated answer</span>" if row["truncated"] else ""
    chars = len(row["think"] or "") + len(row["answer"] or "")
    think, answer = row.get("think_tokens"), row.get("answer_tokens")
    size = f"{chars:,} chars (think {len(row['think'] or ''):,})"
    if think is not None and answer is not None:  # counted by `hubtools score`'s tokenizer
        size = f"**{think + answer:,}** tokens (think {think:,} / answer {answer:,}) · {size}"
    return (
        f"### {label}\n\nscore **{_num(row['score'])}** · ppl **{_num(row['ppl'])}** · "
        f"{size}{flags}\n\n<small>{html.escape(row['model'] or '')}</small>"
    )


def _prompt_markdown(query: dict) -> str:
    lines = [f"**{query['category']}** · source `{query['source']}` · id `{query['query_id']}`"]
    if query["system"]:
        lines.append(f"> system: {query['system']}")
    for turn in query["prompt"]:
        lines.append(f"**{turn['from']}**: {turn['value']}")
    return "\n\n".join(lines)


def _extras_markdown(query: dict) -> str:
    parts = []
    for title, key in (("Reference", "reference"), ("Tests", "tests"),
                       ("Constraints", "constraints")):  # fmt: skip
        value = query.get(key)
        if value in (None, "", [], {}):
            continue
        text = value if isinstance(value, str) else json.dumps(value, indent=1)
        parts.append(f"**{title}**\n\n```\n{text[:20000]}\n```")
    return "\n\n".join(parts) or "No reference, tests or constraints for this query."


def _figure(data, category: str | None):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dist = data.distributions(category)
    labels = list(dist)
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    unit = data.length_unit  # tokens when every row carries its counts, else chars
    lengths = [dist[t][f"think_{unit}"] + dist[t][f"answer_{unit}"] for t in labels]
    top = max((float(x.max()) for x in lengths if len(x)), default=1.0)
    for label, values in zip(labels, lengths, strict=True):
        axes[0, 0].hist(values, bins=30, range=(0, top), alpha=0.5, label=label)
    axes[0, 0].set_title(f"response length (think + answer, {unit})")
    axes[0, 0].legend()
    boxes = _token_boxes(data, category)
    if boxes:  # the numbers `analyze` drew its token box plots from
        axes[0, 1].bxp(list(boxes.values()), showmeans=True, showfliers=False)
        axes[0, 1].set_xticks(range(1, len(boxes) + 1), list(boxes))
        axes[0, 1].set_title("response tokens per teacher (assets/stats.json)")
    else:
        axes[0, 1].boxplot([v if len(v) else [0] for v in lengths], showmeans=True)
        axes[0, 1].set_xticks(range(1, len(labels) + 1), labels)
        axes[0, 1].set_title(f"response length per teacher ({unit})")
    ppl = [dist[t]["ppl"] for t in labels]
    if any(len(p) for p in ppl):
        axes[1, 0].boxplot([p if len(p) else [float("nan")] for p in ppl], showmeans=True)
        axes[1, 0].set_xticks(range(1, len(labels) + 1), labels)
        axes[1, 0].set_title("perplexity per teacher")
    else:
        axes[1, 0].text(0.5, 0.5, "perplexity not scored", ha="center", va="center")
        axes[1, 0].set_axis_off()
    for label in labels:
        axes[1, 1].hist(dist[label]["score"], bins=10, range=(0, 1), alpha=0.5, label=label)
    axes[1, 1].set_title("verify score")
    axes[1, 1].legend()
    fig.suptitle(f"category: {category or 'all'}")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    from PIL import Image

    buffer.seek(0)
    return Image.open(buffer)


def _token_boxes(data, category: str | None) -> dict[str, dict]:
    """Per teacher, matplotlib ``bxp`` stats of response tokens from ``stats.json``."""
    stats = next((r.stats for r in data.releases if r.stats), None) or {}
    block = stats.get("categories", {}).get(category) if category else stats.get("all")
    boxes = {}
    for teacher, s in ((block or {}).get("teachers") or {}).items():
        b = s.get("length") or {}
        if all(b.get(k) is not None for k in ("q1", "median", "q3", "whislo", "whishi")):
            boxes[teacher] = {"med": b["median"], "q1": b["q1"], "q3": b["q3"],
                              "whislo": b["whislo"], "whishi": b["whishi"],
                              "mean": b.get("mean"), "fliers": [], "label": teacher}  # fmt: skip
    return boxes


def _token_table(data, category: str | None) -> str:
    """Response tokens per teacher from ``assets/stats.json`` (what ``analyze`` drew)."""
    stats = next((r.stats for r in data.releases if r.stats), None)
    if not stats:
        return "Token counts: no `assets/stats.json` in these releases (single-teacher build)."
    block = stats.get("categories", {}).get(category) if category else stats.get("all")
    if not block:
        return f"Token counts: `analyze` recorded nothing for category {category!r}."
    lines = ["| teacher | responses | mean tokens | median | q1 | q3 | mean ppl |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for teacher, s in block.get("teachers", {}).items():
        b, p = s.get("length") or {}, s.get("ppl") or {}
        lines.append(f"| {teacher} | {s.get('instances', 0):,} | {_num(b.get('mean'), 1)} | "
                     f"{_num(b.get('median'), 0)} | {_num(b.get('q1'), 0)} | "
                     f"{_num(b.get('q3'), 0)} | {_num(p.get('mean'))} |")  # fmt: skip
    return "Response tokens (think + answer) from the releases' `assets/stats.json`:\n\n" + (
        "\n".join(lines)
    )


def _pass_table(data) -> str:
    """Pass rate per teacher and category, from each release card's funnel."""
    rates = {o["label"]: o["pass_rates"] for o in data.overview()}
    categories = sorted({c for r in rates.values() for c in r})
    if not categories:
        return "Pass rates: not recorded in these releases' cards."
    lines = ["| teacher | " + " | ".join(categories) + " |",
             "|---|" + "---|" * len(categories)]  # fmt: skip
    for label, mine in rates.items():
        cells = [("n/a" if mine.get(c) is None else f"{100 * mine[c]:.1f}%") for c in categories]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "Pass rate (queries passed / answered, from the cards):\n\n" + "\n".join(lines)


def build_app(data) -> gr.Blocks:
    """The Blocks of the Space over a ``reader.SpaceData``."""
    labels = data.labels
    facets = data.facets()
    figures = [(str(p), f"{r.label}: {name}") for r in data.releases
               for name in ("fig2_categories.png", "fig3_math_lengths.png",
                            "fig4_tokens_box.png", "fig5_ppl_box.png")
               if (p := data.asset(r.label, name))][:4]  # fmt: skip

    with gr.Blocks(title="hubtools: parallel datasets side by side") as demo:
        gr.Markdown(
            f"# Parallel distilled datasets, side by side\n\n"
            f"{len(labels)} release(s): " + ", ".join(f"`{r.spec}`" for r in data.releases)
        )
        with gr.Tabs(selected="side") as tabs:
            with gr.Tab("Overview", id="overview"):
                gr.Markdown(_overview_markdown(data))
            with gr.Tab("Side by side", id="side"):
                with gr.Row():
                    text = gr.Textbox(label="Search the prompts", placeholder="words…", scale=3)
                    category = gr.Dropdown([ANY, *facets["categories"]], value=ANY,
                                           label="Category")  # fmt: skip
                    source = gr.Dropdown([ANY, *facets["sources"]], value=ANY, label="Source")
                    release = gr.Dropdown([ANY, *labels], value=ANY, label="Filters apply to")
                with gr.Row():
                    score_lo = gr.Textbox(label="score ≥", placeholder="any")
                    score_hi = gr.Textbox(label="score ≤", placeholder="any")
                    unit = data.length_unit  # tokens if every row has its counts, else chars
                    chars_lo = gr.Textbox(label=f"length ≥ ({unit})", placeholder="any")
                    chars_hi = gr.Textbox(label=f"length ≤ ({unit})", placeholder="any")
                    ppl_lo = gr.Textbox(label="ppl ≥", placeholder="any")
                    ppl_hi = gr.Textbox(label="ppl ≤", placeholder="any")
                search = gr.Button("Search", variant="primary")
                page = gr.State(0)
                counter = gr.Markdown()
                picks = gr.Radio([], label="Queries (pick one)", elem_id="queries")
                with gr.Row():
                    prev_btn = gr.Button("← Previous page", size="sm")
                    next_btn = gr.Button("Next page →", size="sm", elem_id="next-page")
                link = gr.Markdown(elem_id="query-link")
                prompt = gr.Markdown(latex_delimiters=LATEX)
                with gr.Accordion("Reference, tests, constraints", open=False):
                    extras = gr.Markdown()
                headers, thinks, answers = [], [], []
                with gr.Row(equal_height=False):
                    for label in labels:
                        with gr.Column(elem_classes="answer-col", elem_id=f"col-{len(headers)}"):
                            headers.append(gr.Markdown(f"### {label}"))
                            with gr.Accordion(f"Thinking ({label})", open=False):
                                thinks.append(gr.Markdown(latex_delimiters=LATEX))
                            answers.append(gr.Markdown(latex_delimiters=LATEX))
            with gr.Tab("Distributions", id="dist"):
                dcat = gr.Dropdown([ANY, *facets["categories"]], value=ANY, label="Category")
                tokens = gr.Markdown()
                gr.Markdown(_pass_table(data))
                plot = gr.Image(label="per teacher", type="pil", interactive=False)
                if figures:
                    gr.Markdown("The figures `hubtools analyze` drew for the releases:")
                    for start in range(0, len(figures), 2):
                        with gr.Row():
                            for path, caption in figures[start : start + 2]:
                                gr.Image(path, label=caption, interactive=False,
                                         elem_classes="figure")  # fmt: skip

        filters = [text, category, source, release, score_lo, score_hi, chars_lo, chars_hi,
                   ppl_lo, ppl_hi]  # fmt: skip

        def run_page(n, text, category, source, release, s_lo, s_hi, c_lo, c_hi, p_lo, p_hi):
            s_lo, s_hi, c_lo, c_hi, p_lo, p_hi = map(_bound, (s_lo, s_hi, c_lo, c_hi, p_lo, p_hi))
            found = data.page(
                text=text or "", category=None if category in (None, ANY) else category,
                source=None if source in (None, ANY) else source,
                release=None if release in (None, ANY) else release,
                score=(s_lo, s_hi), length=(c_lo, c_hi), ppl=(p_lo, p_hi),
                page=n, page_size=PAGE_SIZE,
            )  # fmt: skip
            n = min(max(0, n), found.pages - 1)
            if found.page != n:
                return run_page(n, text, category, source, release, s_lo, s_hi, c_lo, c_hi,
                                p_lo, p_hi)  # fmt: skip
            choices = [(_choice(i), i["query_id"]) for i in found.items]
            note = f"page **{n + 1}** of {found.pages} · {found.total:,} queries"
            return n, note, gr.update(choices=choices, value=None)

        def open_query(query_id):
            empty = [gr.update()] * (3 + 3 * len(labels))
            if not query_id:
                return empty
            query = data.query(query_id)
            if query is None:
                return [f"query `{query_id}` is not in these releases", "", "",
                        *[""] * (3 * len(labels))]  # fmt: skip
            url = f"?q={query_id}"  # relative: the same page, this query opened
            outs = [f"[Link to this query]({url}) · `{query_id}`", _prompt_markdown(query),
                    _extras_markdown(query)]  # fmt: skip
            for label in labels:
                row = query["answers"].get(label)
                outs.append(_header(label, row))
            for label in labels:
                row = query["answers"].get(label)
                think = (row or {}).get("think")
                outs.append(think if think else "*no thinking*" if row else "")
            for label in labels:
                row = query["answers"].get(label)
                answer = (row or {}).get("answer")
                outs.append(answer if answer else "*no answer (truncated)*" if row else "")
            return outs

        query_outputs = [link, prompt, extras, *headers, *thinks, *answers]
        search.click(lambda *a: run_page(0, *a), filters, [page, counter, picks],
                     api_visibility="private")  # fmt: skip
        text.submit(lambda *a: run_page(0, *a), filters, [page, counter, picks],
                    api_visibility="private")  # fmt: skip
        next_btn.click(lambda n, *a: run_page(n + 1, *a), [page, *filters],
                       [page, counter, picks], api_visibility="private")  # fmt: skip
        prev_btn.click(lambda n, *a: run_page(n - 1, *a), [page, *filters],
                       [page, counter, picks], api_visibility="private")  # fmt: skip
        picks.change(open_query, picks, query_outputs, api_visibility="private")

        def distributions(category):
            category = None if category in (None, ANY) else category
            return _token_table(data, category), _figure(data, category)

        dcat.change(distributions, dcat, [tokens, plot], api_visibility="private")

        def on_load(request: gr.Request):
            first = run_page(0, "", ANY, ANY, ANY, *[None] * 6)
            wanted = dict(request.query_params).get("q") if request else None
            opened = open_query(wanted) if wanted else [gr.update()] * len(query_outputs)
            return [*first, *opened, *distributions(ANY)]

        demo.load(on_load, None, [page, counter, picks, *query_outputs, tokens, plot],
                  api_visibility="private")  # fmt: skip

        def api_search(
            text: str = "", category: str = "", source: str = "", release: str = "",
            score_min: float | None = None, score_max: float | None = None,
            chars_min: float | None = None, chars_max: float | None = None,
            ppl_min: float | None = None, ppl_max: float | None = None, page: int = 0,
            page_size: int = PAGE_SIZE, length_min: float | None = None,
            length_max: float | None = None,
        ) -> dict:  # fmt: skip
            """A page of queries matching the filters (as the Side by side tab shows);
            ``length_*`` in the overview's ``length_unit`` (tokens, else chars)."""
            found = data.page(
                text=text, category=category or None, source=source or None,
                release=release or None, score=(score_min, score_max),
                chars=(chars_min, chars_max), length=(length_min, length_max),
                ppl=(ppl_min, ppl_max), page=page, page_size=page_size,
            )  # fmt: skip
            return {"total": found.total, "page": found.page, "pages": found.pages,
                    "items": found.items}  # fmt: skip

        def api_query(query_id: str) -> dict:
            """Every release's row of one query (None where a release has none)."""
            return data.query(query_id) or {}

        def api_overview() -> dict:
            """The releases, their teachers and row counts, and the facets to filter on."""
            return {"releases": [{k: v for k, v in o.items() if k != "sections"}
                                 for o in data.overview()], "facets": facets,
                    "length_unit": data.length_unit}  # fmt: skip

        gr.api(api_search, api_name="search")
        gr.api(api_query, api_name="query")
        gr.api(api_overview, api_name="overview")
        demo.tabs = tabs
    return demo


def serve(data, *, host: str | None = None, port: int | None = None) -> None:
    """Launch the app over ``data`` (host/port default to GRADIO_SERVER_NAME/PORT)."""
    build_app(data).queue(default_concurrency_limit=4).launch(
        server_name=host, server_port=port, theme=THEME, css=CSS, show_error=True
    )


def main() -> None:
    specs, endpoint = config()
    serve(reader.SpaceData(specs, endpoint=endpoint))


if __name__ == "__main__":
    main()
