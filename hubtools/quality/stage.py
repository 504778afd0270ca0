"""``hubtools score``: the perplexity and token counts of a run's stored responses.

Reads the attempts without a score (passed ones by default, errors never), renders each
with the scoring model's chat template (``render.py``), asks the backend for the
response's log-likelihood and commits each batch's scores in one transaction: a killed
stage resumes where it stopped and nothing is scored twice. ``force`` scores scored
attempts again, each new score replacing the old one in the transaction that writes it
(nothing is deleted first). Before the first row is written, everything is tried: the
config, the teacher, the model (loaded), the tokenizer's chat template and the backend
itself (one probe request through the same path as the real ones).
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from hubtools.plural import plural
from hubtools.quality.backends.base import ScoringBackend
from hubtools.quality.config import ScoreConfig
from hubtools.quality.render import Renderer
from hubtools.records import Attempt, Query, ResponseScore
from hubtools.run import AttemptStore, Run

BATCH = 256  # attempts per commit: the work a kill -9 can lose
PROBE = [{"role": "user", "content": "What is 2 + 2?"}]


@dataclass(slots=True)
class ScoreResult:
    """What a score call did. ``ppl_mean``: the mean of the responses' perplexities;
    ``ppl_pooled``: exp(total NLL / total tokens), the token-weighted one."""

    scored: int = 0
    replaced: int = 0
    missing_queries: int = 0
    scored_tokens: int = 0
    nll_sum: float = 0.0
    ppl_sum: float = 0.0
    seconds: float = 0.0
    scorer: str | None = None
    backend: str | None = None

    @property
    def ppl_mean(self) -> float | None:
        return self.ppl_sum / self.scored if self.scored else None

    @property
    def ppl_pooled(self) -> float | None:
        return math.exp(self.nll_sum / self.scored_tokens) if self.scored_tokens else None

    @property
    def tokens_per_s(self) -> float:
        return self.scored_tokens / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {
            "ppl_mean": self.ppl_mean,
            "ppl_pooled": self.ppl_pooled,
            "tokens_per_s": self.tokens_per_s,
        }

    def __str__(self) -> str:
        if not self.scored:
            text = "scored 0 responses: nothing left to score"
        else:
            text = (
                f"scored {plural(self.scored, 'response')} ({plural(self.scored_tokens, 'token')}"
                f", {self.tokens_per_s:,.0f} tokens/s) with {self.scorer} ({self.backend}): "
                f"mean perplexity {self.ppl_mean:.3f}"
            )
        if self.replaced:
            text += f"; replaced {plural(self.replaced, 'earlier score')}"
        if self.missing_queries:
            text += f"; {self.missing_queries:,} attempts skipped: their query is not in the run"
        return text


def score(
    run: Path | str,
    *,
    shard: tuple[int, int] = (0, 1),
    teacher: str | None = None,
    force: bool = False,
    wait: bool = False,
    progress: bool = True,
    batch: int = BATCH,
    **settings: Any,
) -> ScoreResult:
    """Score a run's responses with its ``score:`` config; ``settings`` (ScoreConfig keys,
    None meaning unset) override run.yaml for this call, and freeze it if it has none."""
    opened = Run.open(run)
    config = ScoreConfig.resolve(opened.config.get("score"), settings)
    opened.check_teachers([teacher] if teacher else [])
    if opened.shard_count() is None:
        return ScoreResult()  # nothing stored yet (and no shard layout to check)
    with opened.shard_lock(shard, "score", wait=wait), opened.store(shard) as store:
        return asyncio.run(_score_run(opened, store, shard, teacher, force, config, progress,
                                      batch))  # fmt: skip


async def _score_run(
    run: Run, store: AttemptStore, shard: tuple[int, int], teacher: str | None, force: bool,
    config: ScoreConfig, progress: bool, size: int,
) -> ScoreResult:  # fmt: skip
    from hubtools.quality.backends.factory import open_backend

    select = dict(passed_only=config.passed_only, threshold=config.threshold, scored=force)
    backend, tokenizer = open_backend(config)  # loads the model: a UsageError comes here
    try:
        renderer = Renderer(tokenizer, config.tokenizer_name)
        [probe] = renderer.render([_probe()])
        await backend.score([probe.request])  # the model runs, the endpoint answers log-probs
        if "score" not in run.config:  # freeze the data-shaping keys, as the first to use them
            Run.create(run.path, {"score": config.frozen()})
        result = ScoreResult(scorer=backend.model, backend=backend.name)
        total = store.count_unscored(teacher, **select)
        needed = {a.query_id for a in store.iter_unscored(teacher, **select)}
        sharded = shard if (run.shard_count() or 1) > 1 else None
        queries = {q.query_id: q for q in run.iter_queries(shard=sharded) if q.query_id in needed}
        bar = tqdm(total=total, unit="response", desc="score", disable=not progress)
        start = time.monotonic()
        pending: list[tuple[Query, Attempt]] = []
        for attempt in store.iter_unscored(teacher, **select):
            query = queries.get(attempt.query_id)
            if query is None:
                result.missing_queries += 1
                bar.update(1)
                continue
            pending.append((query, attempt))
            if len(pending) >= size:
                await _score_batch(backend, renderer, store, pending, force, result, bar, start)
                pending = []
        if pending:
            await _score_batch(backend, renderer, store, pending, force, result, bar, start)
        bar.close()
        return result
    finally:
        await backend.aclose()


def _probe() -> tuple[Query, Attempt]:
    """A tiny conversation scored before any real one: the backend's whole path, tried."""
    query = Query(query_id="0" * 32, category="math", source="probe", messages=PROBE)
    return query, Attempt(query_id=query.query_id, teacher="probe", attempt=0, think="2 + 2 = 4.",
                          answer="4")  # fmt: skip


async def _score_batch(
    backend: ScoringBackend, renderer: Renderer, store: AttemptStore,
    pairs: list[tuple[Query, Attempt]], force: bool, result: ScoreResult, bar: tqdm,
    start: float,
) -> None:  # fmt: skip
    """Render, score and commit one batch (one transaction: all of it or none)."""
    rendered = renderer.render(pairs)
    logprobs = await backend.score([r.request for r in rendered])
    scores = []
    for (_, attempt), r, lp in zip(pairs, rendered, logprobs, strict=True):
        ppl = None if lp.ppl is None else max(1.0, lp.ppl)  # rounding never makes it < 1
        scores.append(ResponseScore(
            query_id=attempt.query_id, teacher=attempt.teacher, attempt=attempt.attempt,
            scorer=backend.model, backend=backend.name, ppl=ppl, nll_sum=lp.nll_sum,
            scored_tokens=lp.tokens, think_tokens=r.think_tokens, answer_tokens=r.answer_tokens,
            total_tokens=r.total_tokens, token_source=r.token_source,
        ))  # fmt: skip
        result.scored += 1
        result.scored_tokens += lp.tokens
        result.nll_sum += lp.nll_sum
        result.ppl_sum += ppl or 0.0
    if force:
        keys = [(s.query_id, s.teacher, s.attempt) for s in scores]
        result.replaced += len(store.scores_for(keys))
    store.add_scores(scores, replace=force)
    result.seconds = time.monotonic() - start
    bar.update(len(pairs))
    bar.set_postfix_str(f"{result.tokens_per_s:,.0f} tokens/s", refresh=False)
