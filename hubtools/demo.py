"""`hubtools demo`: the README's first command, the whole release path on the embedded Hub.

It writes a small file of teacher outputs (as if generated elsewhere), imports it into a
fresh run (math answers verified with Math-Verify, the others carrying their score),
builds the release folder with its card, publishes it as v1.0.0 of
``local/hubtools-demo`` on the embedded local Hub and reads every config back with
``load_dataset`` at the tag. Nothing leaves the machine.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from hubtools.hub.local import local_hub, reach_lines
from hubtools.plural import plural

DEMO_REPO = "hubtools-demo"
DEMO_VERSION = "1.0.0"
TEACHER = "demo-teacher"
_SAMPLES = [
    {"prompt": "What is 17 * 23?", "category": "math", "reference": "391",
     "output": "<think>17*23 = 17*20 + 17*3 = 340 + 51 = 391.</think>"
     "The answer is $\\boxed{391}$."},
    {"prompt": "Solve x + 5 = 12.", "category": "math", "reference": "7",
     "output": "<think>Subtract 5 from both sides: x = 7.</think>So $\\boxed{7}$."},
    {"prompt": "What is 2^10?", "category": "math", "reference": "1024",
     "output": "<think>2^10 = 1000, roughly.</think>The answer is $\\boxed{1000}$."},
    {"prompt": "Write a Python function add(a, b) returning the sum.", "category": "code",
     "output": "<think>A one-line function suffices.</think>```python\ndef add(a, b):\n"
     "    return a + b\n```", "score": 1.0, "verifier": "code-sandbox"},
    {"messages": [{"role": "user", "content": "Give one tip for clear commit messages."}],
     "category": "chat", "score": 0.95, "verifier": "llm-judge",
     "output": "<think>Short imperative subjects scan best.</think>Start with a short "
     "imperative summary line, e.g. 'Fix tag overwrite in publish'."},
]  # fmt: skip


@dataclass(frozen=True)
class DemoResult:
    repo_id: str
    tag: str
    endpoint: str
    root: Path
    rows: dict[str, int]
    action: str
    dropped: int
    running: bool = False  # the local Hub was serving before the demo, and still does

    def __str__(self) -> str:
        configs = ", ".join(f"{k}: {plural(v, 'row')}" for k, v in self.rows.items())
        did = "published" if self.action == "published" else "already published (verified)"
        left = "was" if self.dropped == 1 else "were"
        reach = reach_lines(self.root, self.endpoint, running=self.running)
        return (
            f"imported {plural(len(_SAMPLES), 'teacher answer')}; {self.dropped:,} failed "
            f"verification and {left} left out\n"
            f"{did} {self.repo_id}@{self.tag} to the local Hub in {self.root} ({configs})\n"
            f"read it back with the official clients:\n"
            + "".join(f"  {line}\n" for line in reach)
            + f'  python -c "from datasets import load_dataset; '
            f"print(load_dataset('{self.repo_id}', 'all', revision='{self.tag}'))\"\n"
            f"inspect it in the Space (with the local Hub serving, see above):\n"
            f"  hubtools space run --datasets {self.repo_id}@{self.tag} --endpoint {self.endpoint}"
        )


def demo(root: Path | None = None) -> DemoResult:
    """Import -> build -> card -> publish v1.0.0 on the embedded local Hub, read back."""
    with local_hub(root) as hub, tempfile.TemporaryDirectory(prefix="hubtools-demo-") as work:
        # Imported only now: huggingface_hub and datasets read HF_ENDPOINT at import time.
        import datasets
        import huggingface_hub

        from hubtools.release.build import build
        from hubtools.release.importer import import_outputs
        from hubtools.release.publish import publish

        datasets.disable_progress_bars()  # a few tiny files: the bars would only be noise
        huggingface_hub.utils.disable_progress_bars()

        work = Path(work)
        sample = work / "teacher-outputs.jsonl"
        sample.write_text("".join(json.dumps(s) + "\n" for s in _SAMPLES), encoding="utf-8")
        imported = import_outputs(sample, run=work / "run", teacher=TEACHER, progress=False)
        build(work / "run", teacher=TEACHER, out=work / "release", progress=False,
              pretty_name="hubtools demo", teacher_license="apache-2.0")  # fmt: skip
        repo_id = f"{hub.user}/{DEMO_REPO}"
        result = publish(work / "release", repo=repo_id, version=DEMO_VERSION, token=hub.token)
        return DemoResult(repo_id, result.tag, hub.url, hub.root, result.rows, result.action,
                          imported.records - imported.passed, not hub.started)  # fmt: skip
