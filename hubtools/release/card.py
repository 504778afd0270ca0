"""Dataset cards: Jinja templates from ``dataset_cards/``, metadata through ``DatasetCardData``.

The parts of a card that only exist once a version is published (the usage snippet
pinned to the tag, the version history) sit between ``<!-- hubtools:NAME -->`` markers.
``build`` renders them as "unreleased"; ``publish`` re-renders them with the version
and keeps the history's data in the card itself, as JSON in an HTML comment, so the
next publish can extend it without any other file in the repo.
"""

from __future__ import annotations

import copy
import json
import re
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from huggingface_hub import DatasetCard, DatasetCardData

from hubtools.errors import UsageError
from hubtools.records import RELEASE_FEATURES
from hubtools.release.stats import CategoryStats, Funnel, describe_verifier, size_category
from hubtools.run import Run

TEMPLATES = ("generic", "am_thinking_v1", "am_qwen3")
ALL = "all"
CITATION = """@article{tian2025notallcorrect,
  title={Not All Correct Answers Are Equal: Why Your Distillation Source Matters},
  author={Tian, Xiaoyu and Ji, Yunjie and Wang, Haotian and Chen, Shuaiting and Zhao, Sitong and Peng, Yiping and Zhao, Han and Li, Xiangang},
  journal={arXiv preprint arXiv:2505.14464},
  year={2025}
}"""  # noqa: E501
# What each template states by default; every value can be overridden from the CLI.
DEFAULTS = {
    "generic": {"license": "other", "teacher_license": None, "pretty_name": None},
    "am_thinking_v1": {
        "license": "other",
        "teacher_license": "apache-2.0",
        "pretty_name": "AM-Thinking-v1-Distilled",
    },
    "am_qwen3": {
        "license": "other",
        "teacher_license": "apache-2.0",
        "pretty_name": "AM-Qwen3-Distilled",
    },
}
_BLOCK = re.compile(r"(<!-- hubtools:(\w+) -->\n)(.*?)(<!-- /hubtools:\2 -->)", re.S)
_HISTORY_DATA = re.compile(r"<!-- hubtools:history-data (.*?) -->", re.S)


@dataclass(slots=True)
class CardOptions:
    template: str | None = None
    license: str | None = None
    teacher_license: str | None = None
    pretty_name: str | None = None
    model: str | None = None  # the model the released answers name (most rows)


def templates_dir() -> Path:
    """``dataset_cards/`` of a checkout, or the copy a wheel installs under ``share/``."""
    here = Path(__file__).resolve()
    installed = Path(sysconfig.get_path("data")) / "share" / "hubtools" / "dataset_cards"
    for candidate in (here.parents[2] / "dataset_cards", installed):
        if (candidate / "generic.md.j2").exists():
            return candidate
    raise UsageError("the dataset card templates (dataset_cards/) are missing; reinstall hubtools")


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir()),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    missing = (type(None), jinja2.Undefined)  # a summary of no values reads as n/a
    env.filters["num"] = lambda v, d=0: "n/a" if isinstance(v, missing) else f"{v:,.{d}f}"
    env.filters["pct"] = lambda v: "n/a" if isinstance(v, missing) else f"{100 * v:.1f}%"
    return env


def _features_table() -> list[tuple[str, str]]:
    rows = [("system", "string"), ("conversations", "list of turns"), ("query_id", "string")]
    turn = RELEASE_FEATURES["conversations"].feature
    for name in ("from", "value"):
        rows.append((f"conversations[].{name}", turn[name].dtype))
    for name, value in turn["info"].items():
        rows.append((f"conversations[].info.{name}", value.dtype))
    return rows


def card_data(
    pretty_name: str,
    license: str,
    sources: list[str],
    tags: list[str],
    files: dict[str, list[Path]],
    rows: dict[str, int],
) -> DatasetCardData:
    """The card's YAML: configs with data_files, dataset_info with the one schema."""
    features = RELEASE_FEATURES._to_yaml_list()
    paths = {c: f"data/{c}/train-*.parquet" for c in files}
    configs = [
        {
            "config_name": ALL,
            "data_files": [{"split": "train", "path": list(paths.values())}],
            "default": True,
        }
    ]
    configs += [
        {"config_name": c, "data_files": [{"split": "train", "path": p}]} for c, p in paths.items()
    ]
    infos = []
    for name in [ALL, *files]:
        parts = [p for c in (files if name == ALL else [name]) for p in files[c]]
        size = sum(p.stat().st_size for p in parts)
        memory = sum(_arrow_bytes(p) for p in parts)
        info = {
            "config_name": name,
            "features": copy.deepcopy(features),
            "splits": [{"name": "train", "num_bytes": memory, "num_examples": rows[name]}],
            "download_size": size,
            "dataset_size": memory,
        }
        infos.append(info)
    hub_ids = sorted({s for s in sources if re.fullmatch(r"[\w.-]+/[\w.-]+", s)})
    return DatasetCardData(
        license=license,
        language=["en"],
        task_categories=["text-generation"],
        size_categories=[size_category(rows[ALL])],
        tags=tags,
        pretty_name=pretty_name,
        source_datasets=hub_ids or ["original"],
        configs=configs,
        dataset_info=infos,
    )


def _arrow_bytes(path: Path) -> int:
    """Uncompressed size of a Parquet file's data, what the Hub shows as the dataset size."""
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path).metadata
    return sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))


def write_card(
    folder: Path,
    run: Run,
    teacher: str,
    others: list[str],
    files: dict[str, list[Path]],
    stats: dict[str, CategoryStats],
    funnel: Funnel,
    threshold: float,
    options: CardOptions,
    sources: set[str],
    figures: dict[str, Any] | None = None,
    sft: dict[str, Any] | None = None,
) -> Path:
    """Render README.md into the release folder; ``figures``: the teacher comparison
    (``hubtools analyze``'s report, linking ``assets/``) of a parallel release."""
    name = options.template or "generic"
    if name not in TEMPLATES:
        raise UsageError(f"unknown card template {name!r}; use one of: {', '.join(TEMPLATES)}")
    defaults = DEFAULTS[name]
    section = {"sampling": None, "system_prompt": None, "max_attempts": None,
               **(run.config.get(f"teacher:{teacher}") or {})}  # fmt: skip
    model = options.model or section.get("model") or teacher
    pretty = options.pretty_name or defaults["pretty_name"] or f"{teacher} distilled reasoning"
    license = options.license or defaults["license"]
    rows = {ALL: sum(s.rows for s in stats.values()), **{c: s.rows for c, s in stats.items()}}
    data = card_data(
        pretty,
        license,
        sorted(sources),
        ["reasoning", "distillation", "synthetic", "hubtools"],
        files,
        rows,
    )
    totals = CategoryStats()
    for s in stats.values():
        totals = totals.merged(s)
    context = {
        "card_data": data.to_yaml(),
        "pretty_name": pretty,
        "teacher": teacher,
        "model": model,
        "section": section,
        "others": others,
        "threshold": threshold,
        "funnel": funnel,
        "stats": {c: s.to_dict() for c, s in stats.items()},
        "total": totals.to_dict(),
        "rows": rows,
        "files": {c: [p.name for p in ps] for c, ps in files.items()},
        "features": _features_table(),
        "license": license,
        "teacher_license": options.teacher_license or defaults["teacher_license"],
        "citation": CITATION,
        "describe_verifier": describe_verifier,
        "repo_id": None,
        "version": None,
        "history": [],
        "figures": figures,
        "sft": sft,
    }
    text = environment().get_template(f"{name}.md.j2").render(**context)
    card = DatasetCard(text)  # parses the YAML back: a template that breaks it fails here
    path = folder / "README.md"
    path.write_text(str(card) if str(card).endswith("\n") else f"{card}\n", encoding="utf-8")
    return path


# -- the parts publish fills in --------------------------------------------------------


def render_block(name: str, **context: Any) -> str:
    return environment().get_template(f"_{name}.md.j2").render(**context)


def stamp(
    readme: str, *, repo_id: str, version: str, configs: list[str], history: list[dict[str, Any]]
) -> str:
    """The card with its usage and history blocks rendered for ``version`` of ``repo_id``."""
    blocks = {
        "usage": render_block("usage", repo_id=repo_id, version=version, configs=configs),
        "history": render_block("history", history=history, version=version)
        + f"<!-- hubtools:history-data {json.dumps(history, sort_keys=True)} -->\n",
    }
    return _BLOCK.sub(
        lambda m: m.group(1) + blocks.get(m.group(2), m.group(3)) + m.group(4), readme
    )


def unstamped(readme: str) -> str:
    """The card with every publish-time block emptied: what two versions compare on."""
    return _BLOCK.sub(lambda m: m.group(1) + m.group(4), readme)


def history_of(readme: str) -> list[dict[str, Any]]:
    """The version history recorded in a published card (empty for a fresh build)."""
    match = _HISTORY_DATA.search(readme)
    if not match:
        return []
    try:
        history = json.loads(match.group(1))
    except json.JSONDecodeError:
        return []
    return history if isinstance(history, list) else []


def stamped_version(readme: str) -> str | None:
    """The version a published card was stamped with (its last history entry)."""
    history = history_of(readme)
    return history[-1].get("version") if history else None


def card_configs(readme: str) -> dict[str, list[str]]:
    """``config -> data_files paths (patterns)`` from a card's metadata, in card order."""
    data = DatasetCard(readme).data.to_dict()
    configs = {}
    for cfg in data.get("configs") or []:
        paths: list[str] = []
        for item in cfg.get("data_files") or []:
            path = item["path"] if isinstance(item, dict) else item
            paths += [path] if isinstance(path, str) else list(path)
        configs[cfg["config_name"]] = paths
    return configs
