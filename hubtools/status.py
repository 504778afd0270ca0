"""`hubtools status`: what a run holds, summed over its shards."""

from __future__ import annotations

from dataclasses import asdict, astuple, dataclass, field
from pathlib import Path
from typing import Any

from hubtools.records import PASS_THRESHOLD
from hubtools.run import AttemptStore, Run, TeacherCounts


@dataclass(slots=True)
class RunStatus:
    path: str
    shards: int
    threshold: float
    queries: dict[str, int]
    teachers: dict[str, TeacherCounts] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def render(self) -> str:
        split = f"{self.shards} shards" if self.shards > 1 else "1 shard"
        lines = [f"run {self.path} ({split}, pass threshold {self.threshold:g})"]
        lines.append(f"queries  {sum(self.queries.values()):>10,}")
        lines += [f"  {name:<7}{count:>10,}" for name, count in self.queries.items()]
        if not self.teachers:
            return "\n".join([*lines, "no attempts yet"])
        width = max(7, *map(len, self.teachers))
        header = ("queries", "attempts", "errors", "passed", "failed")
        lines.append(f"{'teacher':<{width}}" + "".join(f"{h:>10}" for h in header))
        for name, counts in self.teachers.items():
            lines.append(f"{name:<{width}}" + "".join(f"{v:>10,}" for v in astuple(counts)))
        return "\n".join(lines)


def status(run: Path | str, *, threshold: float = PASS_THRESHOLD) -> RunStatus:
    """Queries by category and each teacher's progress, summed over the shards."""
    opened = Run.open(run)
    teachers: dict[str, TeacherCounts] = {}
    for path in opened.shard_paths():
        with AttemptStore(path) as store:
            for teacher, counts in store.counts(threshold).items():
                teachers[teacher] = teachers.get(teacher, TeacherCounts()) + counts
    return RunStatus(
        path=str(opened.path),
        shards=opened.shard_count() or 1,
        threshold=threshold,
        queries=opened.categories(),
        teachers=dict(sorted(teachers.items())),
    )
