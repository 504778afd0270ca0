"""``sources.yaml``: the Hub datasets a run's queries come from, and how their rows map
onto the Query record.

Each source names a dataset (repo, config, split, revision), a category and a ``shape``,
the adapter for one common layout of rows:

- ``problem``: a problem text and an answer (OpenR1-Math, Big-Math, NuminaMath);
- ``messages``: a conversation as ``messages`` (role/content) or ``conversations``
  (ShareGPT from/value); the query is every turn up to the last user turn;
- ``code``: a prompt plus test cases (PRIME, DeepCoder, KodCode);
- ``ifeval``: a prompt plus IFEval ``instruction_id_list`` and ``kwargs``.

``fields`` maps the adapter's inputs to columns (``a.b`` reaches into a struct); the
defaults fit the usual column names. A row an adapter cannot use (an empty prompt, a
conversation without a user turn) is counted as unusable, not an error.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hubtools.errors import UsageError
from hubtools.records import Category, Query

ROLE_NAMES = {
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "model": "assistant",
    "chatgpt": "assistant",
    "bot": "assistant",
    "system": "system",
}


def _get(row: Mapping[str, Any], path: str) -> Any:
    value: Any = row
    for key in path.split("."):
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


def _text(value: Any) -> str | None:
    """A reference as text: numbers become strings, empty values None."""
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return repr(value) if isinstance(value, float) else str(value)
    return json.dumps(value, ensure_ascii=False)


def _parse_json(value: Any) -> Any:
    if isinstance(value, str) and value.lstrip()[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


class RowAdapter:
    """Turns one dataset row into a Query (``ValueError``: the row is unusable)."""

    shape = ""
    defaults: dict[str, str] = {}

    def __init__(self, source: SourceSpec):
        self.source = source
        self.fields = {**self.defaults, **source.fields}
        unknown = set(source.fields) - set(self.defaults)
        if unknown:
            raise UsageError(
                f"source {source.name}: shape {self.shape!r} has no field "
                f"{sorted(unknown)[0]!r}; it maps {', '.join(self.defaults)}"
            )

    def columns(self) -> set[str]:
        """Top-level columns the mapping reads (checked against the dataset's)."""
        return {path.split(".")[0] for path in self.fields.values() if path}

    def to_query(self, row: Mapping[str, Any], index: int) -> Query:
        raise NotImplementedError

    def _query(self, prompt: Any, row: Mapping[str, Any], index: int, **fields: Any) -> Query:
        meta = {"source_row": index}
        meta.update({key: _get(row, key) for key in self.source.meta})
        if isinstance(prompt, str):
            system = _text(_get(row, self.fields["system"])) if self.fields.get("system") else None
            prompt = [{"role": "user", "content": prompt}]
            if system:
                prompt.insert(0, {"role": "system", "content": system})
        return Query.from_prompt(
            prompt,
            source=self.source.name,
            category=self.source.category,
            meta=meta,
            **fields,
        )

    def _prompt(self, row: Mapping[str, Any]) -> str | list[dict[str, str]]:
        """The prompt field: a string, or a list of turns (PRIME's chat-formatted prompts)."""
        prompt = _get(row, self.fields["prompt"])
        if isinstance(prompt, list):
            return conversation(prompt)
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(f"empty or missing prompt ({self.fields['prompt']!r})")
        return prompt


class ProblemAdapter(RowAdapter):
    shape = "problem"
    defaults = {"prompt": "problem", "reference": "answer", "system": ""}

    def to_query(self, row: Mapping[str, Any], index: int) -> Query:
        reference = _text(_get(row, self.fields["reference"])) if self.fields["reference"] else None
        return self._query(self._prompt(row), row, index, reference=reference)


def conversation(turns: Any) -> list[dict[str, str]]:
    """role/content or ShareGPT from/value turns as Query messages, up to the last user turn
    (the dataset's own answer goes: the teachers write theirs)."""
    turns = _parse_json(turns)
    if not isinstance(turns, list) or not turns:
        raise ValueError("no conversation")
    messages: list[dict[str, str]] = []
    for turn in turns:
        if not isinstance(turn, Mapping):
            raise ValueError("a turn is not an object")
        role = turn.get("role", turn.get("from"))
        content = turn.get("content", turn.get("value"))
        if ROLE_NAMES.get(str(role).lower()) is None or not isinstance(content, str):
            raise ValueError(f"unsupported turn (role {role!r})")
        role = ROLE_NAMES[str(role).lower()]
        if role == "system" and (messages or not content.strip()):
            continue  # empty system prompts, and system notes mid-conversation
        messages.append({"role": role, "content": content})
    while messages and messages[-1]["role"] != "user":
        messages.pop()
    if not messages:
        raise ValueError("no user turn")
    return messages


class MessagesAdapter(RowAdapter):
    shape = "messages"
    defaults = {"messages": "messages", "reference": ""}

    def to_query(self, row: Mapping[str, Any], index: int) -> Query:
        messages = conversation(_get(row, self.fields["messages"]))
        reference = _text(_get(row, self.fields["reference"])) if self.fields["reference"] else None
        return self._query(messages, row, index, reference=reference)


class CodeAdapter(RowAdapter):
    """Prompt plus tests. ``tests_kind`` (auto, stdio, script, check, pytest) says how a
    test string is run; auto reads JSON (``[{input, output}]``, ``{inputs, outputs}``,
    DeepCoder's ``{functional}``) and treats other strings as assert scripts."""

    shape = "code"
    defaults = {"prompt": "prompt", "tests": "tests", "entry_point": "", "system": ""}

    def to_query(self, row: Mapping[str, Any], index: int) -> Query:
        tests = self._tests(row)
        return self._query(self._prompt(row), row, index, tests=tests or None)

    def _tests(self, row: Mapping[str, Any]) -> list[dict[str, Any]]:
        kind = self.source.tests_kind
        value = _get(row, self.fields["tests"])
        if kind in ("script", "check", "pytest") and isinstance(value, str):
            case: dict[str, Any] = {kind: value}
            if kind == "check" and self.fields["entry_point"]:
                case["entry_point"] = _get(row, self.fields["entry_point"])
            return [case]
        return _cases(_parse_json(value))


def _cases(value: Any) -> list[dict[str, Any]]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [{"script": value}]
    if isinstance(value, Mapping):
        if "functional" in value:
            return [{"check": value["functional"]}]
        if "inputs" in value and "outputs" in value:
            return [{"inputs": list(value["inputs"]), "outputs": list(value["outputs"])}]
        if "input" in value and "output" in value:
            return [{"input": value["input"], "output": value["output"]}]
        return [dict(value)]
    if isinstance(value, list):
        return [case for item in value for case in _cases(item)]
    raise ValueError(f"tests of type {type(value).__name__}")


class IFEvalAdapter(RowAdapter):
    shape = "ifeval"
    defaults = {
        "prompt": "prompt",
        "instruction_id_list": "instruction_id_list",
        "kwargs": "kwargs",
        "system": "",
    }

    def to_query(self, row: Mapping[str, Any], index: int) -> Query:
        ids = _parse_json(_get(row, self.fields["instruction_id_list"]))
        kwargs = _parse_json(_get(row, self.fields["kwargs"]))
        if not isinstance(ids, list) or not ids:
            raise ValueError("no instruction ids")
        if not isinstance(kwargs, list):
            kwargs = [{} for _ in ids]
        # Arrow gives every kwargs struct every key, null where unused: drop those.
        kwargs = [
            {k: v for k, v in (_parse_json(a) or {}).items() if v is not None} for a in kwargs
        ]
        constraints = {"instruction_id_list": [str(i) for i in ids], "kwargs": kwargs}
        return self._query(self._prompt(row), row, index, constraints=constraints)


def _present(kwargs: Any) -> dict[str, Any]:
    return {k: v for k, v in (kwargs or {}).items() if v is not None}


ADAPTERS: dict[str, type[RowAdapter]] = {
    a.shape: a for a in (ProblemAdapter, MessagesAdapter, CodeAdapter, IFEvalAdapter)
}


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """One Hub dataset to pull queries from."""

    name: str
    repo: str
    category: Category
    shape: str
    split: str = "train"
    config: str | None = None
    revision: str | None = None
    data_files: tuple[str, ...] = ()
    fields: dict[str, str] = field(default_factory=dict)
    meta: tuple[str, ...] = ()
    tests_kind: str = "auto"
    limit: int | None = None

    def adapter(self) -> RowAdapter:
        return ADAPTERS[self.shape](self)

    def identity(self) -> dict[str, Any]:
        """What decides which rows and how they map: a source is resumed only if equal."""
        data = asdict(self)
        data.update(category=self.category.value, data_files=list(self.data_files))
        data["meta"] = list(self.meta)
        return data


def _source(entry: Any, number: int) -> SourceSpec:
    where = f"source {number}"
    if not isinstance(entry, Mapping) or "repo" not in entry:
        raise UsageError(f"{where}: each source needs at least 'repo', 'category' and 'shape'")
    data = dict(entry)
    data.setdefault("name", str(data["repo"]).split("/")[-1])
    where = f"source {data['name']!r}"
    known = set(SourceSpec.__dataclass_fields__)
    if unknown := set(data) - known:
        raise UsageError(f"{where}: unknown key {sorted(unknown)[0]!r}; use {', '.join(known)}")
    try:
        data["category"] = Category.parse(data.get("category"))
    except ValueError as err:
        raise UsageError(f"{where}: {err}") from None
    if data.get("shape") not in ADAPTERS:
        raise UsageError(f"{where}: 'shape' must be one of {', '.join(ADAPTERS)}")
    if data.get("tests_kind", "auto") not in ("auto", "stdio", "script", "check", "pytest"):
        raise UsageError(f"{where}: tests_kind must be auto, stdio, script, check or pytest")
    for key in ("data_files", "meta"):
        value = data.get(key) or ()
        data[key] = (value,) if isinstance(value, str) else tuple(value)
    data["fields"] = {str(k): str(v) for k, v in (data.get("fields") or {}).items()}
    spec = SourceSpec(**data)
    spec.adapter()  # checks the field names now, not mid-pull
    return spec


def read_sources(path: Path | str) -> list[SourceSpec]:
    """The sources of a ``sources.yaml`` (a top-level ``sources:`` list)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as err:
        raise UsageError(f"{path}: cannot read ({err.strerror})") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: cannot read (not UTF-8 text)") from None
    except yaml.YAMLError as err:
        raise UsageError(f"{path} is not valid YAML: {' '.join(str(err).split())}") from None
    entries = data.get("sources") if isinstance(data, Mapping) else None
    if not isinstance(entries, list) or not entries:
        raise UsageError(f"{path}: expected a top-level 'sources:' list")
    specs = [_source(entry, n) for n, entry in enumerate(entries, 1)]
    names = [s.name for s in specs]
    if dupes := {n for n in names if names.count(n) > 1}:
        raise UsageError(f"{path}: source name {sorted(dupes)[0]!r} is used twice; set 'name'")
    return specs
