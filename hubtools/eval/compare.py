"""``hubtools eval compare``: several evals side by side in the paper's Table 1/2 shape.

Benchmarks are rows; each model has an avg@k column (percent, with its standard error)
and a mean-length column (tokens), as the paper sets its students' scores next to their
"adaptive output" lengths. Numbers are only comparable under the same protocol, so every
benchmark whose dataset, revision, split, problem count, samples per problem or sampling
settings differ between the folders is marked and the differences are listed under the
table (the comparison is still drawn: the reader decides).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hubtools.checks import is_number
from hubtools.errors import InputFileError, UsageError

DISPLAY = {
    "aime_2024": "AIME2024", "aime_2025": "AIME2025", "math500": "MATH500",
    "livecodebench": "LiveCodeBench", "gpqa_diamond": "GPQA-Diamond", "ifeval": "IFEval",
}  # fmt: skip
ORDER = tuple(DISPLAY)
PROTOCOL = ("dataset", "revision", "split", "problems", "samples_per_problem", "settings")
FIGURE_FORMATS = (".png", ".svg", ".pdf")
_NEEDED = ("avg_at_k", "mean_length", "samples_per_problem")


@dataclass(slots=True)
class Evaluation:
    """One eval folder's results.json, and the column label it gets."""

    path: Path
    data: dict[str, Any]
    label: str = ""

    @property
    def benchmarks(self) -> dict[str, dict[str, Any]]:
        return self.data["benchmarks"]


@dataclass(slots=True)
class Comparison:
    evals: list[Evaluation]
    benchmarks: list[str]
    mismatches: dict[str, list[str]] = field(default_factory=dict)  # benchmark -> differences
    markdown: str = ""

    def to_dict(self) -> dict[str, Any]:
        def numbers(e: Evaluation, name: str) -> dict[str, Any] | None:
            b = e.benchmarks.get(name)
            return b and {k: b.get(k) for k in ("avg_at_k", "stderr", *_NEEDED[1:])}

        return {
            "models": [e.label for e in self.evals],
            "folders": [str(e.path) for e in self.evals],
            "benchmarks": {
                name: {e.label: numbers(e, name) for e in self.evals} for name in self.benchmarks
            },
            "mismatches": self.mismatches,
        }


def check_outputs(out: Path | None, figure: Path | None) -> None:
    """--out and --figure must be writable files of a known kind (checked before any reading)."""
    from hubtools.checks import check_writable

    for option, path in (("--out", out), ("--figure", figure)):
        if path is None:
            continue
        if path.is_dir():
            raise UsageError(f"{option} {path} is a folder; give a file name")
        check_writable(path, option)
    if figure is not None and figure.suffix.lower() not in FIGURE_FORMATS:
        raise UsageError(
            f"--figure {figure}: unknown image type {figure.suffix or '(none)'!r}; "
            f"use {', '.join(FIGURE_FORMATS)}"
        )


def read_results(folder: Path) -> Evaluation:
    """An eval folder's results.json, checked against the contract (one line when it is not)."""
    if not folder.exists():
        raise UsageError(f"{folder} does not exist; give the --out folder of a `hubtools eval`")
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder; give the --out folder of a `hubtools eval`")
    path = folder / "results.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{folder} has no results.json: not a finished `hubtools eval`") from None
    except (OSError, UnicodeDecodeError) as err:
        reason = getattr(err, "strerror", None) or "not UTF-8 text"
        raise InputFileError(str(path), None, f"cannot read it ({reason})") from None
    except json.JSONDecodeError as err:
        raise InputFileError(str(path), err.lineno, f"not valid JSON ({err.msg})") from None
    benchmarks = data.get("benchmarks") if isinstance(data, dict) else None
    if not isinstance(benchmarks, dict) or not isinstance(data.get("model"), str):
        raise InputFileError(str(path), None, "expected {'model': ..., 'benchmarks': {...}}")
    for name, values in benchmarks.items():
        missing = [k for k in _NEEDED if not isinstance(values, dict) or k not in values]
        if missing:
            raise InputFileError(str(path), None, f"benchmark {name!r} lacks {', '.join(missing)}")
        wrong = [k for k in _NEEDED if not is_number(values[k])]
        if wrong:
            raise InputFileError(str(path), None, f"benchmark {name!r}: {wrong[0]} is not a number")
    return Evaluation(folder, data)


def compare(folders: list[Path], out: Path | None = None, figure: Path | None = None) -> Comparison:
    """Read every folder first (any mistake stops before writing), then render."""
    if not folders:
        raise UsageError("give at least one eval folder")
    check_outputs(out, figure)
    evals = [read_results(Path(f)) for f in folders]
    _label(evals)
    names = {n for e in evals for n in e.benchmarks}
    benchmarks = [n for n in ORDER if n in names] + sorted(names - set(ORDER))
    result = Comparison(evals, benchmarks)
    for name in benchmarks:
        if diffs := protocol_differences(name, evals):
            result.mismatches[name] = diffs
    result.markdown = render_markdown(result)
    if out is not None:
        _write(out, result.markdown.encode())
    if figure is not None:
        draw_figure(result, figure)
    return result


def _label(evals: list[Evaluation]) -> None:
    """The model name, or model (folder) where two evals share one."""
    models = [e.data["model"] for e in evals]
    for e in evals:
        model = e.data["model"]
        e.label = model if models.count(model) == 1 else f"{model} ({e.path.name})"
    labels = [e.label for e in evals]
    for n, e in enumerate(evals):
        if labels.count(e.label) > 1:
            e.label = f"{e.label} #{n + 1}"


def protocol_differences(name: str, evals: list[Evaluation]) -> list[str]:
    """What differs between the evals that ran this benchmark: 'samples_per_problem: 64 vs 4'."""
    present = [e for e in evals if name in e.benchmarks]
    diffs = []
    for key in PROTOCOL:
        values = [e.benchmarks[name].get(key) for e in present]
        if key == "settings":
            keys = sorted({k for v in values if isinstance(v, dict) for k in v})
            for sub in keys:
                subs = [v.get(sub) if isinstance(v, dict) else None for v in values]
                if len({json.dumps(s, sort_keys=True) for s in subs}) > 1:
                    diffs.append(f"{sub}: " + " vs ".join(_short(s) for s in subs))
        elif len({json.dumps(v, sort_keys=True) for v in values}) > 1:
            diffs.append(f"{key}: " + " vs ".join(_short(v) for v in values))
    return diffs


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 24 else text[:21] + "..."


def display_name(name: str) -> str:
    return DISPLAY.get(name, name)


def render_markdown(c: Comparison) -> str:
    """The paper's Table 1/2 shape: avg@k per model, then mean length per model."""
    labels = [e.label for e in c.evals]
    head = ["benchmark", *(f"{m} avg@k (%)" for m in labels),
            *(f"{m} mean length" for m in labels)]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in c.benchmarks:
        ks = sorted({e.benchmarks[name]["samples_per_problem"] for e in c.evals
                     if name in e.benchmarks})  # fmt: skip
        row = f"{display_name(name)} (avg@{'/'.join(map(str, ks))})"
        if name in c.mismatches:
            row += " †"
        if any(e.benchmarks.get(name, {}).get("complete") is False for e in c.evals):
            row += " ‡"
        cells = [row]
        for e in c.evals:
            b = e.benchmarks.get(name)
            cells.append(_score(b) if b else "—")
        for e in c.evals:
            b = e.benchmarks.get(name)
            cells.append(f"{b['mean_length']:.1f}" if b else "—")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        "avg@k: pass@1 averaged over k samples per problem, in percent, ± its standard error; "
        "mean length: tokens per generated answer."
    )
    partial = [f"{e.label} ({display_name(n)})" for n in c.benchmarks for e in c.evals
               if e.benchmarks.get(n, {}).get("complete") is False]  # fmt: skip
    if partial:
        lines += ["", "‡ not every sample was made or verified yet: " + ", ".join(partial)
                  + "; run the same `hubtools eval` again to finish."]  # fmt: skip
    if c.mismatches:
        lines += ["", "† the evals ran this benchmark differently; compare with care:", ""]
        for name, diffs in c.mismatches.items():
            lines.append(f"- {display_name(name)}: " + "; ".join(diffs))
    lines += ["", "Folders: " + ", ".join(f"{e.label} = `{e.path}`" for e in c.evals)]
    return "\n".join(lines) + "\n"


def _score(b: dict[str, Any]) -> str:
    text = f"{100 * b['avg_at_k']:.1f}"
    if isinstance(b.get("stderr"), int | float):
        text += f" ± {100 * b['stderr']:.1f}"
    return text


def draw_figure(c: Comparison, path: Path) -> Path:
    """Two panels of grouped bars: avg@k and mean length per benchmark, one color per model."""
    from hubtools.analysis import figures  # matplotlib with the Agg backend, the same palette

    plt = figures.plt
    fig, (left, right) = plt.subplots(1, 2, figsize=(figures.WIDTH, figures.HEIGHT))
    n, width = len(c.evals), 0.8 / max(1, len(c.evals))
    xs = range(len(c.benchmarks))
    for i, e in enumerate(c.evals):
        offsets = [x - 0.4 + width * (i + 0.5) for x in xs]
        nan = float("nan")  # a benchmark this model did not run: no bar
        scores = [100 * e.benchmarks[b]["avg_at_k"] if b in e.benchmarks else nan
                  for b in c.benchmarks]  # fmt: skip
        errors = [100 * (e.benchmarks[b].get("stderr") or 0) if b in e.benchmarks else nan
                  for b in c.benchmarks]  # fmt: skip
        lengths = [e.benchmarks[b]["mean_length"] if b in e.benchmarks else nan
                   for b in c.benchmarks]  # fmt: skip
        color = figures.COLORS[i % len(figures.COLORS)]
        left.bar(offsets, scores, width, yerr=errors, color=color, label=e.label, capsize=2)
        right.bar(offsets, lengths, width, color=color, label=e.label)
    names = [display_name(b) + (" †" if b in c.mismatches else "") for b in c.benchmarks]
    for ax, title in ((left, "avg@k (%)"), (right, "mean generation length (tokens)")):
        ax.set_xticks(list(xs), names, rotation=20, ha="right")
        ax.set_title(title)
    left.set_ylim(0, 100)
    if n > 1:
        left.legend(fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix}")
    fig.savefig(temp, dpi=figures.DPI, metadata={"Software": "hubtools eval compare"}
                if path.suffix.lower() == ".png" else None)  # fmt: skip
    plt.close(fig)
    temp.replace(path)
    return path


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.write_bytes(data)
    temp.replace(path)
