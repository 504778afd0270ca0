"""The paper's quality filters, applied by ``build``: structure, 20-gram templates, perplexity.

The ``quality:`` section of run.yaml configures them (see README, "Quality filters")::

    quality:
      structure: true              # default on: alternating roles, non-empty think and answer
      max_ppl: 10                  # or max_ppl_percentile: 99 (of the teacher's own rows)
      allow_unscored: false        # a ppl filter needs every row scored (`hubtools score`)
      template: {n: 20, max_count: 20, count: documents}   # or `true`; absent: off
      teachers:
        am: {max_ppl: 8}           # per teacher: max_ppl / max_ppl_percentile override

Each filter says why it removes a response (``check`` returns a detail, or None to keep).
They take plain values, not release rows, so any stage can use them.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hubtools.errors import RunStoreError, UsageError
from hubtools.plural import plural
from hubtools.quality.template import count_templates, ids_hasher, token_hashes

SECTION = "quality"
_KEYS = {"structure", "max_ppl", "max_ppl_percentile", "allow_unscored", "template", "teachers"}
_TEACHER_KEYS = {"max_ppl", "max_ppl_percentile"}
_TEMPLATE_KEYS = {"n", "max_count", "count", "tokenizer"}


@dataclass(frozen=True, slots=True)
class Removal:
    """Why a row went: which filter, because of which teacher's answer, and the detail."""

    filter: str
    teacher: str
    detail: str

    def __str__(self) -> str:
        return f"{self.filter} ({self.teacher}): {self.detail}"


@dataclass(frozen=True, slots=True)
class PplLimit:
    max_ppl: float | None = None
    percentile: float | None = None

    @property
    def active(self) -> bool:
        return self.max_ppl is not None or self.percentile is not None


@dataclass(frozen=True, slots=True)
class TemplateSettings:
    n: int = 20
    max_count: int = 20
    count: str = "documents"
    tokenizer: str = "regex"  # or a transformers tokenizer: a Hub id or a folder


@dataclass(frozen=True)
class QualityConfig:
    """The validated ``quality:`` section; ``from_section(None)``: structure only."""

    structure: bool = True
    ppl: PplLimit = PplLimit()
    allow_unscored: bool = False
    template: TemplateSettings | None = None
    teachers: dict[str, PplLimit] = field(default_factory=dict)

    @classmethod
    def from_section(cls, section: Any) -> QualityConfig:
        if section is None:
            return cls()
        if not isinstance(section, Mapping):
            raise UsageError("quality: must be a mapping of settings (see README, Quality filters)")
        _known(section, _KEYS, "quality")
        structure = _bool(section.get("structure", True), "quality.structure")
        template = section.get("template")
        if template is True or template == {}:
            settings: TemplateSettings | None = TemplateSettings()
        elif template in (None, False):
            settings = None
        elif isinstance(template, Mapping):
            _known(template, _TEMPLATE_KEYS, "quality.template")
            settings = TemplateSettings(
                n=_int(template.get("n", 20), "quality.template.n"),
                max_count=_int(template.get("max_count", 20), "quality.template.max_count"),
                count=str(template.get("count", "documents")),
                tokenizer=str(template.get("tokenizer", "regex")),
            )
            if settings.count not in ("documents", "occurrences"):
                raise UsageError(
                    "quality.template.count must be documents or occurrences, "
                    f"not {settings.count!r}"
                )
        else:
            raise UsageError(
                "quality.template must be true, false or a mapping {n, max_count, count}"
            )
        teachers = section.get("teachers") or {}
        if not isinstance(teachers, Mapping):
            raise UsageError("quality.teachers must map teacher names to {max_ppl: ...} settings")
        per = {}
        for name, value in teachers.items():
            where = f"quality.teachers.{name}"
            if not isinstance(value, Mapping):
                raise UsageError(f"{where} must be a mapping such as {{max_ppl: 8}}")
            _known(value, _TEACHER_KEYS, where)
            per[str(name)] = _ppl_limit(value, where)
        return cls(
            structure=structure,
            ppl=_ppl_limit(section, "quality"),
            allow_unscored=_bool(section.get("allow_unscored", False), "quality.allow_unscored"),
            template=settings,
            teachers=per,
        )

    def ppl_for(self, teacher: str) -> PplLimit:
        """A teacher's own ``max_ppl``/``max_ppl_percentile`` replace the section's."""
        return self.teachers.get(teacher, self.ppl)

    def describe(self) -> list[str]:
        """One line per active filter, for the card."""
        lines = []
        if self.structure:
            lines.append(
                "structure: roles alternate (optional system turn first) and end with the "
                "answer; the answer has a non-empty think part and a non-empty answer part, "
                "and was not truncated"
            )
        if self.template:
            t = self.template
            lines.append(
                f"template: a response is removed when one of its token {t.n}-grams occurs in "
                f"more than {t.max_count} {'responses' if t.count == 'documents' else 'places'} "
                "of the teacher's answers (tokens: "
                + (
                    "words, punctuation marks and CJK characters)"
                    if t.tokenizer == "regex"
                    else f"`{t.tokenizer}`'s tokenizer)"
                )
            )
        for name, limit in [("", self.ppl), *self.teachers.items()]:
            if limit.active:
                who = f"teacher `{name}`" if name else "every teacher"
                what = (
                    f"ppl > {limit.max_ppl:g}"
                    if limit.max_ppl is not None
                    else f"ppl above the teacher's {limit.percentile:g}th percentile"
                )
                lines.append(f"perplexity ({who}): removed when {what}")
        return lines


def _known(section: Mapping, keys: set[str], where: str) -> None:
    unknown = sorted(str(k) for k in section if k not in keys)
    if unknown:
        raise UsageError(f"{where}: unknown key {unknown[0]!r}; known: {', '.join(sorted(keys))}")


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise UsageError(f"{where} must be true or false, not {value!r}")
    return value


def _int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(f"{where} must be an integer >= 1, not {value!r}")
    return value


def _ppl_limit(section: Mapping, where: str) -> PplLimit:
    absolute, percentile = section.get("max_ppl"), section.get("max_ppl_percentile")
    if absolute is not None and percentile is not None:
        raise UsageError(f"{where}: give max_ppl or max_ppl_percentile, not both")
    for key, value in (("max_ppl", absolute), ("max_ppl_percentile", percentile)):
        if value is not None and (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise UsageError(f"{where}.{key} must be a number, not {value!r}")
    if absolute is not None and absolute < 1:
        raise UsageError(f"{where}.max_ppl must be >= 1 (a perplexity is), not {absolute!r}")
    if percentile is not None and not 0 < percentile <= 100:
        raise UsageError(f"{where}.max_ppl_percentile must be in (0, 100], not {percentile!r}")
    return PplLimit(
        float(absolute) if absolute is not None else None,
        float(percentile) if percentile is not None else None,
    )


class StructureFilter:
    """Roles alternate and end with the answer; think and answer both non-empty; not truncated."""

    name = "structure"

    def check_turns(self, roles: Sequence[str]) -> str | None:
        """``roles`` of the query's turns; the answer is appended as an assistant turn."""
        roles = list(roles)
        if roles and roles[0] == "system":
            roles = roles[1:]
        if not roles:
            return "no user turn"
        for i, role in enumerate(roles):
            expected = "user" if i % 2 == 0 else "assistant"
            if role != expected:
                return f"turn {i + 1} is {role!r}, expected {expected!r} (roles must alternate)"
        if roles[-1] != "user":
            return "the query ends with an assistant turn, so the answer does not follow a user"
        return None

    def check_answer(
        self, think: str | None, answer: str | None, finish_reason: str | None
    ) -> str | None:
        if finish_reason == "length":
            return "truncated (finish_reason length)"
        if not (think or "").strip():
            return "empty think part"
        if not (answer or "").strip():
            return "empty answer part (or no </think>: truncated)"
        return None


class PerplexityFilter:
    """Remove answers above a teacher's perplexity threshold (absolute or a percentile)."""

    name = "ppl"

    def __init__(self, teacher: str, threshold: float, limit: PplLimit, allow_unscored: bool):
        self.teacher, self.threshold, self.limit = teacher, threshold, limit
        self.allow_unscored = allow_unscored

    @classmethod
    def for_teacher(
        cls, store_path: Path, teacher: str, pass_threshold: float, limit: PplLimit,
        allow_unscored: bool,
    ) -> PerplexityFilter:  # fmt: skip
        """Resolve a percentile on the teacher's own released candidates (first passes)."""
        if limit.max_ppl is not None:
            return cls(teacher, limit.max_ppl, limit, allow_unscored)
        values = np.fromiter(
            (v for (v,) in _candidate_ppls(store_path, teacher, pass_threshold) if v is not None),
            dtype=np.float64,
        )
        threshold = float(np.percentile(values, limit.percentile)) if len(values) else math.inf
        return cls(teacher, threshold, limit, allow_unscored)

    def check(self, ppl: float | None) -> str | None:
        if ppl is None:
            return None if self.allow_unscored else "no perplexity"
        if ppl > self.threshold:
            extra = f" ({self.limit.percentile:g}th percentile)" if self.limit.percentile else ""
            return f"ppl {ppl:.3g} > {self.threshold:.4g}{extra}"
        return None


_CANDIDATES = (
    " FROM (SELECT query_id, MIN(attempt) AS attempt FROM verdicts"
    "       WHERE teacher = ? AND score >= ? GROUP BY query_id) f"
    " JOIN attempts a ON a.query_id = f.query_id AND a.teacher = ? AND a.attempt = f.attempt"
    " LEFT JOIN scores s ON s.query_id = f.query_id AND s.teacher = ? AND s.attempt = f.attempt"
)
# A stored score wins over a ppl imported with the answer (see rows.row_ppl).
_PPL = "COALESCE(s.ppl, CAST(json_extract(a.params, '$.ppl') AS REAL))"


def _candidate_ppls(store_path: Path, teacher: str, pass_threshold: float) -> Iterable[tuple]:
    conn = sqlite3.connect(f"file:{store_path}?mode=ro", uri=True)
    try:
        yield from conn.execute(
            f"SELECT {_PPL}" + _CANDIDATES, (teacher, pass_threshold, teacher, teacher)
        )
    finally:
        conn.close()


def count_unscored(store_path: Path, teacher: str, pass_threshold: float) -> int:
    """The teacher's first passing attempts with neither a stored nor an imported ppl."""
    conn = sqlite3.connect(f"file:{store_path}?mode=ro", uri=True)
    try:
        return conn.execute(
            f"SELECT COUNT(*){_CANDIDATES} WHERE {_PPL} IS NULL",
            (teacher, pass_threshold, teacher, teacher),
        ).fetchone()[0]
    finally:
        conn.close()


class TemplateFilter:
    """Remove responses holding a token n-gram that occurs more than ``max_count`` times
    across the teacher's responses (``hubtools.quality.template``)."""

    name = "template"

    def __init__(self, teacher: str, settings: TemplateSettings):
        self.teacher, self.settings = teacher, settings
        self.flagged: dict[str, int] = {}
        self.responses = self.frequent = 0

    def fit(self, texts: Iterable[tuple[str, str]], workdir: Path) -> TemplateFilter:
        """Count over every ``(key, text)`` response of the teacher (keys: query ids)."""
        s = self.settings
        hasher = token_hashes if s.tokenizer == "regex" else ids_hasher(load_tokenizer(s.tokenizer))
        counts = count_templates(
            texts, n=s.n, max_count=s.max_count, count=s.count, workdir=workdir, hasher=hasher
        )
        self.flagged, self.responses, self.frequent = (
            counts.flagged,
            counts.responses,
            counts.frequent,
        )
        return self

    def check(self, key: str) -> str | None:
        top = self.flagged.get(key)
        if top is None:
            return None
        where = "responses" if self.settings.count == "documents" else "places"
        return (
            f"a token {self.settings.n}-gram of it occurs in {top:,} {where}"
            f" (> {self.settings.max_count})"
        )


def load_tokenizer(name: str) -> Any:
    """A transformers tokenizer for ``template.tokenizer``; one that does not load is a
    ``UsageError`` (raised before any row is written)."""
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(name)
    except Exception as err:  # OSError, ValueError, ImportError: all say "cannot load"
        reason = " ".join(str(err).split())[:200]
        raise UsageError(
            f"quality.template.tokenizer {name!r} does not load ({type(err).__name__}: {reason})"
        ) from None


def check_scored(store_path: Path, teachers: Sequence[str], pass_threshold: float,
                 config: QualityConfig, run: Path) -> None:  # fmt: skip
    """A ppl filter needs scores: unscored answers are an error unless ``allow_unscored``."""
    if config.allow_unscored:
        return
    missing = {}
    for teacher in teachers:
        if config.ppl_for(teacher).active:
            n = count_unscored(store_path, teacher, pass_threshold)
            if n:
                missing[teacher] = n
    if missing:
        per = ", ".join(f"{t} {plural(n, 'answer')}" for t, n in missing.items())
        raise RunStoreError(
            f"the quality section filters on perplexity but passed answers have no score "
            f"({per}); run `hubtools score {run}` first, or set quality.allow_unscored: true"
        )


def read_quality_file(path: Path) -> dict[str, Any]:
    """The ``quality:`` section of a YAML file (a run.yaml-like file, or the section alone),
    validated: a bad file is a one-line ``UsageError`` before any work."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"--quality {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"--quality {path}: cannot read it ({err})") from None
    except yaml.YAMLError as err:
        raise UsageError(
            f"--quality {path} is not valid YAML: {' '.join(str(err).split())}"
        ) from None
    if isinstance(data, Mapping) and SECTION in data:
        data = data[SECTION]
    if not isinstance(data, Mapping):
        raise UsageError(f"--quality {path}: expected a quality: mapping (README: Quality filters)")
    QualityConfig.from_section(data)
    return dict(data)
