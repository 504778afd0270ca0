"""The record types every stage reads and writes: the only vocabulary stages share.

Records validate themselves on construction (``ValueError`` with a message a user
can act on), so a stage that holds a record can trust it. Timestamps are Unix
seconds (``float``, UTC) as returned by ``time.time()``: exact, sortable and
cheap to store; durations such as ``latency_s`` come from a monotonic clock.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    import datasets
    import pyarrow as pa

ROLES = ("system", "user", "assistant")

# The paper re-asks a teacher until the verification score reaches this (arXiv 2505.14464, §2).
PASS_THRESHOLD = 0.9


class Category(StrEnum):
    MATH = "math"
    CODE = "code"
    SCIENCE = "science"
    IF = "if"
    CHAT = "chat"
    GENERAL = "general"

    @classmethod
    def parse(cls, value: Any) -> Category:
        try:
            return cls(value)
        except ValueError:
            choices = ", ".join(c.value for c in cls)
            raise ValueError(f"unknown category {value!r}; use one of: {choices}") from None


def normalize_text(text: str) -> str:
    """NFKC plus collapsed whitespace, so cosmetic variants of one prompt share a query_id."""
    return " ".join(unicodedata.normalize("NFKC", text).split())


def query_id_for(messages: Sequence[Mapping[str, str]]) -> str:
    """Hex of a 128-bit hash of the normalised conversation: equal prompts, equal ids.

    Roles are part of the hash so that the same words said by a different speaker
    (or split into different turns) are a different query.
    """
    turns = [[m["role"], normalize_text(m["content"])] for m in messages]
    payload = json.dumps(turns, ensure_ascii=False, separators=(",", ":")).encode()
    return hashlib.blake2b(payload, digest_size=16).hexdigest()


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _check_messages(messages: Any) -> None:
    _require(
        isinstance(messages, list) and len(messages) > 0,
        f"'messages' must be a non-empty list of turns, got {_type_name(messages)}",
    )
    for n, turn in enumerate(messages, 1):
        _require(
            isinstance(turn, dict) and set(turn) == {"role", "content"},
            f"turn {n} of 'messages' must be an object with exactly 'role' and 'content'",
        )
        _require(turn["role"] in ROLES, f"turn {n} has role {turn['role']!r}; use one of {ROLES}")
        _require(isinstance(turn["content"], str), f"turn {n} 'content' must be a string")
        _require(turn["role"] != "system" or n == 1, f"turn {n}: a system turn may only come first")
    _require(messages[-1]["role"] == "user", "the last turn of 'messages' must be the user's")
    _require(messages[-1]["content"].strip() != "", "the prompt (last user turn) is empty")


def _check_constraints(constraints: Any) -> None:
    """IFEval shape: instruction ids and one kwargs object per id, in the same order."""
    hint = "'constraints' must be {instruction_id_list: [str], kwargs: [object]} of equal length"
    _require(isinstance(constraints, dict), hint)
    ids, kwargs = constraints.get("instruction_id_list"), constraints.get("kwargs")
    _require(isinstance(ids, list) and all(isinstance(i, str) for i in ids), hint)
    _require(isinstance(kwargs, list) and all(isinstance(k, dict) for k in kwargs), hint)
    _require(len(ids) == len(kwargs), hint)


class _Record:
    """``to_dict``/``from_dict`` for the plain dataclasses below (JSON-ready values)."""

    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:
        return {name: _plain(getattr(self, name)) for name in _field_names(type(self))}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        return cls(**data)


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


def _plain(value: Any) -> Any:
    """What `dataclasses.asdict` returns for a value, without its `deepcopy` of every leaf.

    Containers are copied (a caller may change the dict it gets) and records become
    dicts; leaves are JSON values or enums, which are immutable, so they are shared.
    For an attempt: ~6 us instead of asdict's ~17 us.
    """
    if isinstance(value, str | int | float | None):
        return value
    if isinstance(value, _Record):
        return value.to_dict()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_plain(v) for v in value)
    return value


@dataclass(slots=True, kw_only=True)
class Query(_Record):
    """One prompt to distil, shared by every teacher (hence the content-derived id)."""

    query_id: str
    category: Category
    source: str
    messages: list[dict[str, str]]
    reference: str | None = None
    tests: list[dict[str, Any]] | None = None
    constraints: dict[str, Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.category = Category.parse(self.category)
        _check_messages(self.messages)
        _require(
            isinstance(self.source, str) and self.source != "",
            "'source' must be a non-empty string",
        )
        _require(
            isinstance(self.query_id, str) and bool(re.fullmatch(r"[0-9a-f]{32}", self.query_id)),
            f"'query_id' must be 32 lowercase hex digits, got {self.query_id!r}",
        )
        _require(
            self.reference is None or isinstance(self.reference, str),
            f"'reference' must be a string (write numbers as \"42\"), "
            f"got {_type_name(self.reference)}",
        )
        _require(
            self.tests is None
            or (isinstance(self.tests, list) and all(isinstance(t, dict) for t in self.tests)),
            "'tests' must be a list of test-case objects",
        )
        if self.constraints is not None:
            _check_constraints(self.constraints)
        _require(
            isinstance(self.meta, dict), f"'meta' must be an object, got {_type_name(self.meta)}"
        )

    @classmethod
    def from_prompt(
        cls,
        prompt: str | Sequence[Mapping[str, str]],
        *,
        source: str,
        category: Category | str = Category.GENERAL,
        reference: str | None = None,
        tests: list[dict[str, Any]] | None = None,
        constraints: dict[str, Any] | None = None,
        meta: dict[str, Any] | None = None,
    ) -> Query:
        """A query from a single user prompt or a list of turns, with its id computed."""
        if isinstance(prompt, str):
            messages = [{"role": "user", "content": prompt}]
        elif isinstance(prompt, list | tuple):
            messages = [dict(m) if isinstance(m, Mapping) else m for m in prompt]
        else:
            raise ValueError(
                f"prompt must be a string or a list of turns, got {_type_name(prompt)}"
            )
        _check_messages(messages)
        return cls(
            query_id=query_id_for(messages),
            category=category,
            source=source,
            messages=messages,
            reference=reference,
            tests=tests,
            constraints=constraints,
            meta={} if meta is None else meta,
        )

    def to_dict(self) -> dict[str, Any]:
        return {**_Record.to_dict(self), "category": self.category.value}


@dataclass(slots=True, kw_only=True)
class Attempt(_Record):
    """One teacher response to one query; ``attempt`` counts re-asks from 0."""

    query_id: str
    teacher: str
    attempt: int
    params: dict[str, Any] = field(default_factory=dict)
    text: str = ""
    think: str | None = None
    answer: str | None = None
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_s: float | None = None
    model: str | None = None
    error: str | None = None
    started_at: float | None = None
    finished_at: float | None = None

    def __post_init__(self) -> None:
        _require(
            isinstance(self.attempt, int) and self.attempt >= 0,
            f"attempt must be an integer >= 0, got {self.attempt!r}",
        )


@dataclass(slots=True, kw_only=True)
class Verdict(_Record):
    """A verifier's score for one attempt: 1.0 is fully correct, 0.0 fully wrong."""

    query_id: str
    teacher: str
    attempt: int
    verifier: str
    score: float
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _require(
            isinstance(self.score, int | float)
            and not isinstance(self.score, bool)
            and math.isfinite(self.score)
            and 0.0 <= self.score <= 1.0,
            f"score must be a number in [0, 1], got {self.score!r}",
        )
        self.score = float(self.score)


@dataclass(slots=True, kw_only=True)
class ResponseScore(_Record):
    """The quality measures of one attempt's response (``hubtools score``), keyed like verdicts.

    ``ppl`` is exp(mean negative log-likelihood) of the response tokens under ``scorer``,
    given the prompt, both rendered with the scorer's chat template; ``nll_sum`` and
    ``scored_tokens`` keep what it was computed from, so means over many responses can be
    token-weighted. Token counts: ``total_tokens`` is the teacher's reported
    ``completion_tokens`` when there is one, else the tokenizer's count
    (``token_source`` says which: ``teacher`` or ``tokenizer:NAME``); the think/answer
    split is always the tokenizer's.
    """

    query_id: str
    teacher: str
    attempt: int
    scorer: str
    backend: str
    ppl: float | None = None
    nll_sum: float | None = None
    scored_tokens: int = 0
    think_tokens: int | None = None
    answer_tokens: int | None = None
    total_tokens: int | None = None
    token_source: str = "teacher"

    def __post_init__(self) -> None:
        _require(
            self.ppl is None or (math.isfinite(self.ppl) and self.ppl >= 1.0),
            f"ppl must be a finite number >= 1, got {self.ppl!r}",
        )
        _require(
            isinstance(self.scored_tokens, int) and self.scored_tokens >= 0,
            f"scored_tokens must be an integer >= 0, got {self.scored_tokens!r}",
        )


def _json_or_none(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, sort_keys=True)


@dataclass(slots=True, kw_only=True)
class TurnInfo(_Record):
    """Per-turn metadata of a release row, with the key names of the a-m-team datasets.

    Structured fields (``test_case``, ``instruction_constrain``) hold JSON text so
    that every config of a release shares one Arrow schema (the published
    AM-Thinking-v1-Distilled fails ``load_dataset`` because these change type).
    ``ppl``, ``think_tokens`` and ``answer_tokens`` (the assistant turn's, from
    ``hubtools score``; null when unknown) come after the AM keys; releases made before
    the token counts existed lack those two columns and still load.
    """

    source: str | None = None
    category: str | None = None
    ground_truth: str | None = None
    test_case: str | None = None
    instruction_constrain: str | None = None
    think_content: str | None = None
    answer_content: str | None = None
    verify_score: float | None = None
    model_name: str | None = None
    ppl: float | None = None
    think_tokens: int | None = None
    answer_tokens: int | None = None

    @classmethod
    def for_query(cls, query: Query, **assistant_fields: Any) -> TurnInfo:
        """The info of a turn of ``query``'s row; the only place structured fields are encoded."""
        return cls(
            source=query.source,
            category=query.category.value,
            ground_truth=query.reference,
            test_case=_json_or_none(query.tests),
            instruction_constrain=_json_or_none(query.constraints),
            **assistant_fields,
        )


@dataclass(slots=True)
class Turn(_Record):
    """One turn of a release conversation; ``from`` is a keyword, hence ``from_``."""

    from_: str
    value: str
    info: TurnInfo = field(default_factory=TurnInfo)

    def __post_init__(self) -> None:
        _require(
            self.from_ in ("human", "assistant"),
            f"turn 'from' must be 'human' or 'assistant', got {self.from_!r}",
        )

    def to_dict(self) -> dict[str, Any]:
        return {"from": self.from_, "value": self.value, "info": self.info.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Turn:
        return cls(data["from"], data["value"], TurnInfo.from_dict(data["info"]))


@dataclass(slots=True)
class ReleaseRow(_Record):
    """A row of a released dataset, AM-compatible: ``system`` plus the conversation.

    ``query_id`` (an extra top-level column) is the query's id, equal across the parallel
    datasets of one run: the key the Space joins them on. Releases made before it existed
    have no such column (the Space derives a key from the prompt turns then).
    """

    system: str
    conversations: list[Turn]
    query_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "conversations": [t.to_dict() for t in self.conversations],
            "query_id": self.query_id,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReleaseRow:
        turns = [Turn.from_dict(t) for t in data["conversations"]]
        return cls(data["system"], turns, data.get("query_id"))


_INFO_TYPES = {
    "verify_score": "float64",
    "ppl": "float64",
    "think_tokens": "int64",
    "answer_tokens": "int64",
}


@functools.cache
def release_features() -> datasets.Features:
    """The one schema of every release config, as ``datasets`` features.

    Built on first use: importing ``datasets`` costs ~0.6 s of CPU, which light verbs
    (``status``, ``--help``) that import this module must not pay (bench/startup.md).
    """
    import datasets

    info = {f.name: datasets.Value(_INFO_TYPES.get(f.name, "string")) for f in fields(TurnInfo)}
    turn = {"from": datasets.Value("string"), "value": datasets.Value("string"), "info": info}
    return datasets.Features(
        {
            "system": datasets.Value("string"),
            "conversations": datasets.List(turn),
            "query_id": datasets.Value("string"),
        }
    )


@functools.cache
def release_schema() -> pa.Schema:
    """The same schema in Arrow, with the features in its metadata so readers recover them."""
    return release_features().arrow_schema


_LAZY = {"RELEASE_FEATURES": release_features, "RELEASE_SCHEMA": release_schema}


def __getattr__(name: str) -> Any:
    """``RELEASE_FEATURES`` and ``RELEASE_SCHEMA``, built when first asked for (see above)."""
    if name in _LAZY:
        return _LAZY[name]()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
