"""Published releases as the responses to compare, read with ``datasets.load_dataset``.

Release rows carry no query id, so rows are joined by their prompt: the turns before
the final answer, normalised and hashed as ``hubtools.records.query_id_for`` does (the
``system`` field is left out: it may be the teacher's own system prompt). Rows stream
(``streaming=True``); each keeps a 32-byte key and a few numbers in numpy chunks, so a
release of millions of rows fits. A prompt repeated within one release counts once.
Token counts come from the rows (``info.think_tokens`` + ``answer_tokens``, which releases
of scored runs carry), else from ``--tokenizer``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from hubtools.analysis.collect import Collected, TokenCounter, missing_counts_error
from hubtools.errors import DataSourceError, EmptyReleaseError, UsageError
from hubtools.records import query_id_for

_ROLE = {"human": "user", "user": "user", "assistant": "assistant", "gpt": "assistant"}
_BATCH = 1000
_SPEC = re.compile(r"^(?P<repo>[^@\s]+?)(?:@(?P<revision>[^@\s]+))?$")


@dataclass(frozen=True, slots=True)
class ReleaseSpec:
    repo: str
    revision: str | None
    label: str

    def __str__(self) -> str:
        return f"{self.repo}@{self.revision}" if self.revision else self.repo


def parse_releases(text: str) -> list[ReleaseSpec]:
    """``ORG/NAME[@REVISION],...``; each labelled by its NAME (ORG/NAME when names repeat)."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id  # reads no endpoint setting

    parsed = []
    for item in (part.strip() for part in text.split(",")):
        match = _SPEC.match(item)
        if not item or not match or match["repo"].count("/") != 1:
            raise UsageError(
                f"--releases: {item!r} is not ORG/NAME[@REVISION] (e.g. acme/ds@v1.0.0)"
            )
        try:
            validate_repo_id(match["repo"])
        except HFValidationError as err:
            reason = f"--releases: {match['repo']!r} is not a valid repo id: {err}"
            raise UsageError(reason) from None
        parsed.append((match["repo"], match["revision"]))
    if len(set(parsed)) < len(parsed):
        raise UsageError("--releases names the same release twice")
    names = [repo.split("/")[1] for repo, _ in parsed]
    labels = [
        repo if names.count(repo.split("/")[1]) > 1 else repo.split("/")[1] for repo, _ in parsed
    ]
    if len(set(labels)) < len(labels):  # one repo at two revisions
        labels = [f"{repo}@{rev}" for repo, rev in parsed]
    return [ReleaseSpec(r, v, label) for (r, v), label in zip(parsed, labels, strict=True)]


def open_release(spec: ReleaseSpec, token: str | None) -> Any:
    """The streaming ``all`` config of a release, resolved now (a bad one fails before work)."""
    import datasets

    try:
        return datasets.load_dataset(
            spec.repo, "all", split="train", revision=spec.revision, streaming=True, token=token
        )
    except Exception as err:  # DatasetNotFoundError, HTTP errors, a missing revision or config
        reason = " ".join(str(err).split())[:300]
        raise DataSourceError(f"release {spec}: cannot load its 'all' config ({reason})") from None


def _rows_of(dataset: Any) -> int | None:
    try:
        return dataset.info.splits["train"].num_examples
    except (AttributeError, KeyError, TypeError):
        return None


class _Columns:
    """One release's rows as numpy chunks: key, category, tokens, think, answer, ppl."""

    def __init__(self) -> None:
        self.chunks: list[tuple] = []
        self.categories: list[str] = []

    def add(self, keys, categories, tokens, thinks, answers, ppls, counted) -> None:  # noqa: ANN001
        import numpy as np

        codes = []
        for name in categories:
            if name not in self.categories:
                self.categories.append(name)
            codes.append(self.categories.index(name))
        self.chunks.append((
            np.array(keys, dtype="S32"), np.array(codes, dtype=np.int16),
            np.array(tokens, dtype=np.int64), np.array(thinks, dtype=np.int64),
            np.array(answers, dtype=np.int64), np.array(ppls, dtype=np.float64),
            np.array(counted, dtype=bool),
        ))  # fmt: skip

    def arrays(self) -> tuple:
        import numpy as np

        if not self.chunks:
            return (np.array([], dtype="S32"),) + tuple(np.array([]) for _ in range(6))
        return tuple(np.concatenate(parts) for parts in zip(*self.chunks, strict=True))


def _number(info: dict[str, Any], name: str) -> int | None:
    value = info.get(name)
    return int(value) if isinstance(value, int | float) and value == value else None


def _total(info: dict[str, Any]) -> int | None:
    """A row's response tokens: ``total_tokens``, else think + answer (what hubtools
    releases of scored runs carry, counted by the scorer's tokenizer), else unknown."""
    total = _number(info, "total_tokens")
    if total is None:
        think, answer = _number(info, "think_tokens"), _number(info, "answer_tokens")
        if think is not None and answer is not None:
            total = think + answer
    return total


def _read(spec: ReleaseSpec, dataset: Any, tokenizer: TokenCounter | None, bar: Any) -> _Columns:
    from hubtools.reasoning import split_reasoning

    columns = _Columns()
    batch: list[list[dict[str, Any]]] = []  # the conversations of a batch of rows

    def flush() -> None:
        keys, categories, tokens, thinks, answers, ppls, todo = [], [], [], [], [], [], []
        counted = [False] * len(batch)
        for turns in batch:
            prompt = [{"role": _ROLE.get(t["from"], t["from"]), "content": t["value"]}
                      for t in turns[:-1]]  # fmt: skip
            final = turns[-1]
            info = final.get("info") or {}
            keys.append(query_id_for(prompt))
            categories.append(info.get("category") or "general")
            ppl = info.get("ppl")
            ppls.append(float(ppl) if isinstance(ppl, int | float) else float("nan"))
            total = _total(info)
            tokens.append(-1 if total is None else total)
            for into, name in ((thinks, "think_tokens"), (answers, "answer_tokens")):
                number = _number(info, name)
                into.append(-1 if number is None else number)
            if total is None:
                think, answer = info.get("think_content"), info.get("answer_content")
                if think is None and answer is None:
                    split = split_reasoning(final["value"])
                    think, answer = split.think, split.answer
                todo.append((len(tokens) - 1, think or "", answer or ""))
        if todo:
            if tokenizer is None:
                raise missing_counts_error(len(todo), f"release {spec}")
            think_n = tokenizer.count([t for _, t, _ in todo])
            answer_n = tokenizer.count([a for _, _, a in todo])
            for (i, _, _), t, a in zip(todo, think_n, answer_n, strict=True):
                tokens[i], thinks[i], answers[i], counted[i] = t + a, t, a, True
        columns.add(keys, categories, tokens, thinks, answers, ppls, counted)
        bar.update(len(batch))
        batch.clear()

    try:  # batches of columns: ~10x cheaper than datasets' per-row dicts
        for rows in dataset.iter(batch_size=_BATCH):
            batch.extend(rows["conversations"])
            flush()
    except (UsageError, DataSourceError):
        raise
    except Exception as err:  # a file of the release fails to stream
        reason = " ".join(str(err).split())[:300]
        raise DataSourceError(f"release {spec}: reading its rows failed ({reason})") from None
    return columns


def collect_releases(
    specs: list[ReleaseSpec], tokenizer: TokenCounter | None, progress: bool, token: str | None
) -> Collected:
    """Every release's rows, joined by prompt: the rows of prompts present in all of them."""
    import numpy as np
    from tqdm import tqdm

    datasets = [open_release(spec, token) for spec in specs]  # every one resolves first
    for spec, dataset in zip(specs, datasets, strict=True):
        if tokenizer is None:
            first = next(iter(dataset.take(1)), None)
            info = (first["conversations"][-1].get("info") or {}) if first else {}
            if first is not None and _total(info) is None:
                raise missing_counts_error(1, f"release {spec} (its rows carry no counts)")
    sizes = [_rows_of(d) for d in datasets]
    total = sum(sizes) if all(s is not None for s in sizes) else None
    bar = tqdm(total=total, unit="row", desc="analyze releases", disable=not progress)
    read = [_read(s, d, tokenizer, bar) for s, d in zip(specs, datasets, strict=True)]
    bar.close()

    firsts, common = [], None
    for columns in read:
        keys = columns.arrays()[0]
        unique, first = np.unique(keys, return_index=True)  # a repeated prompt counts once
        firsts.append((unique, first))
        common = unique if common is None else np.intersect1d(common, unique, assume_unique=True)
    if common is None or not len(common):
        raise EmptyReleaseError(
            "nothing to analyze: no prompt is in every release (they are not parallel)"
        )
    source = {"releases": [str(s) for s in specs], "rows": {}}
    collected = Collected([s.label for s in specs], source)
    for spec, columns, (unique, first) in zip(specs, read, firsts, strict=True):
        keys, codes, tokens, thinks, answers, ppls, counted = columns.arrays()
        source["rows"][spec.label] = int(len(keys))
        at = first[np.searchsorted(unique, common)]
        collected.skipped += int(len(keys) - len(at))
        via = {True: tokenizer.source if tokenizer else "", False: "info"}
        for i in at.tolist():
            t, a, p = int(thinks[i]), int(answers[i]), float(ppls[i])
            collected.add(
                spec.label, columns.categories[codes[i]], int(tokens[i]), via[bool(counted[i])],
                None if p != p else p, None if t < 0 else t, None if a < 0 else a,
            )  # fmt: skip
    return collected
