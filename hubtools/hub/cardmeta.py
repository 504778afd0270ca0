"""README metadata of the local Hub: `cardData` and `validate-yaml`.

The checks are the ones whose failure later breaks a user: YAML that does not
parse, known keys with the wrong type (a `configs` entry without
`config_name`, `license` as a number, ...), size categories the Hub does not
know. Unknown keys pass, as on the Hub.
"""

from __future__ import annotations

from typing import Any

import yaml

SIZE_CATEGORIES = {
    "n<1K", "1K<n<10K", "10K<n<100K", "100K<n<1M", "1M<n<10M", "10M<n<100M",
    "100M<n<1B", "1B<n<10B", "10B<n<100B", "100B<n<1T", "n>1T", "unknown",
}  # fmt: skip
SPACE_SDKS = {"gradio", "streamlit", "docker", "static"}

_STR = "a string"
_STRS = "a string or a list of strings"
_COMMON = {
    "license": _STRS, "license_name": _STR, "license_link": _STR, "language": _STRS,
    "tags": _STRS, "pretty_name": _STR, "thumbnail": _STR, "datasets": _STRS, "metrics": _STRS,
}  # fmt: skip
_BY_TYPE = {
    "dataset": {
        "task_categories": _STRS, "task_ids": _STRS, "size_categories": _STRS,
        "source_datasets": _STRS, "annotations_creators": _STRS, "language_creators": _STRS,
        "multilinguality": _STRS, "paperswithcode_id": _STR, "viewer": "a boolean",
    },
    "model": {"library_name": _STR, "pipeline_tag": _STR, "base_model": _STRS},
    "space": {
        "title": _STR, "sdk": _STR, "sdk_version": _STR, "app_file": _STR, "emoji": _STR,
        "colorFrom": _STR, "colorTo": _STR, "pinned": "a boolean", "short_description": _STR,
    },
}  # fmt: skip


def split_front_matter(readme: str) -> str | None:
    """The YAML block at the top of a README, or None when there is none."""
    text = readme.lstrip("\ufeff")
    if not text.startswith("---"):
        return None
    lines = text.splitlines()
    for i in range(1, len(lines)):
        if lines[i].strip() == "---":
            return "\n".join(lines[1:i])
    return None


def card_data(readme: str) -> dict[str, Any] | None:
    """Metadata for `cardData`; a README whose YAML does not parse has none."""
    block = split_front_matter(readme)
    if block is None:
        return None
    try:
        data = yaml.safe_load(block)
    except yaml.YAMLError:
        return None
    return data if isinstance(data, dict) else None


def _type_ok(value: Any, expected: str) -> bool:
    if expected == _STR:
        return isinstance(value, str)
    if expected == _STRS:
        return isinstance(value, str) or (
            isinstance(value, list) and all(isinstance(v, str) for v in value)
        )
    if expected == "a boolean":
        return isinstance(value, bool)
    return True


def _check_configs(configs: Any) -> list[str]:
    if not isinstance(configs, list):
        return ["'configs' must be a list of {config_name, data_files} mappings"]
    errors, names = [], set()
    for i, cfg in enumerate(configs):
        if not isinstance(cfg, dict) or not isinstance(cfg.get("config_name"), str):
            errors.append(f"configs[{i}] must be a mapping with a string 'config_name'")
            continue
        if cfg["config_name"] in names:
            errors.append(f"configs[{i}]: duplicate config_name '{cfg['config_name']}'")
        names.add(cfg["config_name"])
        files = cfg.get("data_files")
        if files is not None and not _data_files_ok(files):
            errors.append(
                f"configs[{i}].data_files must be a path, a list of paths, or a list of "
                "{split, path} mappings"
            )
    return errors


def _data_files_ok(files: Any) -> bool:
    if isinstance(files, str):
        return True
    if not isinstance(files, list):
        return False
    for item in files:
        if isinstance(item, str):
            continue
        if not (isinstance(item, dict) and isinstance(item.get("split"), str)):
            return False
        if not _type_ok(item.get("path"), _STRS):
            return False
    return True


def _check_dataset_info(info: Any) -> list[str]:
    infos = info if isinstance(info, list) else [info]
    errors = []
    for i, item in enumerate(infos):
        if not isinstance(item, dict):
            errors.append(f"dataset_info[{i}] must be a mapping")
            continue
        splits = item.get("splits") or []
        if not isinstance(splits, list):
            errors.append(f"dataset_info[{i}].splits must be a list")
            continue
        for split in splits:
            if not isinstance(split, dict) or not isinstance(split.get("name"), str):
                errors.append(f"dataset_info[{i}].splits entries need a string 'name'")
            elif not isinstance(split.get("num_examples", 0), int):
                errors.append(f"dataset_info[{i}].splits '{split['name']}': num_examples is an int")
    return errors


def validate(readme: str, repo_type: str) -> tuple[list[str], list[str]]:
    """(errors, warnings) for a README's metadata, as `/api/validate-yaml` reports them."""
    block = split_front_matter(readme)
    if block is None:
        return [], ["Empty metadata: add a YAML block at the top of README.md"]
    try:
        data = yaml.safe_load(block)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 2})" if mark else ""
        return [f"YAML metadata does not parse{where}: {getattr(e, 'problem', e)}"], []
    if data is None:
        return [], ["Empty metadata"]
    if not isinstance(data, dict):
        return ["YAML metadata must be a mapping of keys to values"], []
    errors = []
    expected = _COMMON | _BY_TYPE.get(repo_type, {})
    for key, kind in expected.items():
        if key in data and data[key] is not None and not _type_ok(data[key], kind):
            errors.append(f"'{key}' must be {kind}, got {type(data[key]).__name__}")
    sizes = data.get("size_categories")
    for size in [sizes] if isinstance(sizes, str) else sizes or []:
        if isinstance(size, str) and size not in SIZE_CATEGORIES:
            errors.append(f"size_categories: unknown value '{size}'")
    if "configs" in data:
        errors += _check_configs(data["configs"])
    if "dataset_info" in data:
        errors += _check_dataset_info(data["dataset_info"])
    if repo_type == "space" and isinstance(data.get("sdk"), str) and data["sdk"] not in SPACE_SDKS:
        errors.append(f"sdk must be one of {sorted(SPACE_SDKS)}")
    return errors, []
