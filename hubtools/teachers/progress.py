"""Progress bars per teacher and the end-of-run summary."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from hubtools.teachers.runner import TeacherStats


class Progress:
    """One bar per teacher: queries finished, passed, failed, in flight, tokens/s, ETA."""

    def __init__(self, names: list[str], enabled: bool = True):
        self.bars = {
            name: tqdm(desc=name, unit="q", position=i, disable=not enabled, dynamic_ncols=True)
            for i, name in enumerate(names)
        }
        self._last = 0.0

    def __call__(self, stats: TeacherStats) -> None:
        bar = self.bars[stats.name]
        if bar.total != stats.queries:
            bar.total = stats.queries
        bar.update(stats.done - bar.n)
        now = time.monotonic()
        if now - self._last >= 0.5:
            self._last = now
            elapsed = max(now - stats.started, 1e-6)
            bar.set_postfix(
                passed=stats.passed, failed=stats.failed + stats.rejected,
                in_flight=stats.in_flight, tok_s=f"{stats.completion_tokens / elapsed:.0f}",
                refresh=False,
            )  # fmt: skip

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


@dataclass
class GenerateSummary:
    run: str
    shard: tuple[int, int]
    seconds: float
    teachers: list[TeacherStats] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(t.down is None for t in self.teachers)

    def to_dict(self) -> dict[str, Any]:
        return {"run": self.run, "shard": list(self.shard), "seconds": round(self.seconds, 3),
                "teachers": [t.to_dict() for t in self.teachers]}  # fmt: skip

    def __str__(self) -> str:
        i, n = self.shard
        lines = [f"generate {self.run} shard {i}/{n} in {self.seconds:.1f}s"]
        for t in self.teachers:
            per_query = t.attempts / t.done if t.done else 0.0
            lines.append(
                f"{t.name}: {t.done:,}/{t.queries:,} queries done, {t.passed:,} passed, "
                f"{t.failed:,} failed, {t.rejected:,} rejected; {t.attempts:,} attempts "
                f"({per_query:.2f}/query), {t.retries:,} retried requests; tokens in "
                f"{t.prompt_tokens:,}, out {t.completion_tokens:,}"
            )
            for cat, done in sorted(t.done_by_category.items()):
                rate = t.passed_by_category[cat] / done
                lines.append(f"  {cat:<8} pass rate {rate:6.1%} ({done:,} queries)")
            if t.unverified:
                lines.append(f"  {t.unverified:,} answers left unverified (verifier unavailable): "
                             "run again to verify them")  # fmt: skip
            if t.down:
                lines.append(f"  STOPPED: {t.down}")
        return "\n".join(lines)
