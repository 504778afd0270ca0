"""`hubtools demo`: the README's first command, end to end on the embedded local Hub.

It publishes a small AM-style sample (one config per category plus `all`) with
`datasets`, tags it, and reads every config back with `load_dataset` at the
tag, exactly as users will read real releases. Nothing leaves the machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hubtools.hub.local import local_hub

DEMO_REPO = "hubtools-demo"
DEMO_TAG = "v1.0.0"
SYSTEM_PROMPT = (
    "You are a helpful assistant. To answer the user's question, you first think about the "
    "reasoning process and then provide the user with the answer. The reasoning process and "
    "answer are enclosed within <think> </think> and <answer> </answer> tags, respectively."
)
_SAMPLES = [
    ("math", "What is 17 * 23?", "17*23 = 17*20 + 17*3 = 340 + 51 = 391.", "\\boxed{391}", "391"),
    ("math", "Solve x + 5 = 12.", "Subtract 5 from both sides: x = 7.", "\\boxed{7}", "7"),
    (
        "code",
        "Write a Python function add(a, b) returning the sum.",
        "A one-line function suffices.",
        "```python\ndef add(a, b):\n    return a + b\n```",
        None,
    ),
    (
        "chat",
        "Give one tip for writing clear commit messages.",
        "Short imperative subject lines are easiest to scan.",
        "Start with a short imperative summary line, e.g. 'Fix tag overwrite in publish'.",
        None,
    ),
]


@dataclass(frozen=True)
class DemoResult:
    repo_id: str
    tag: str
    endpoint: str
    root: Path
    rows: dict[str, int]

    def __str__(self) -> str:
        configs = ", ".join(f"{k}: {v} rows" for k, v in self.rows.items())
        return (
            f"published {self.repo_id}@{self.tag} to the local Hub in {self.root} ({configs})\n"
            f"read it back with the official clients:\n"
            f"  hubtools hub serve --root {self.root} --port {self.endpoint.rsplit(':', 1)[1]} &\n"
            f"  export HF_ENDPOINT={self.endpoint} HF_HUB_DISABLE_XET=1\n"
            f'  python -c "from datasets import load_dataset; '
            f"print(load_dataset('{self.repo_id}', 'all', revision='{self.tag}'))\""
        )


def _rows() -> dict[str, list[dict]]:
    from hubtools.records import Query, ReleaseRow, Turn, TurnInfo

    by_config: dict[str, list[dict]] = {"all": []}
    for category, prompt, think, answer, reference in _SAMPLES:
        query = Query.from_prompt(prompt, category=category, source="hubtools-demo",
                                  reference=reference)  # fmt: skip
        value = f"<think>\n{think}\n</think>\n<answer>\n{answer}\n</answer>"
        row = ReleaseRow(SYSTEM_PROMPT, [
            Turn("human", prompt, TurnInfo.for_query(query)),
            Turn("assistant", value, TurnInfo.for_query(
                query, think_content=think, answer_content=answer, verify_score=1.0,
                model_name="demo-teacher",
            )),
        ]).to_dict()  # fmt: skip
        by_config.setdefault(category, []).append(row)
        by_config["all"].append(row)
    return by_config


def demo(root: Path | None = None) -> DemoResult:
    """Publish the sample to the embedded local Hub and load every config back."""
    with local_hub(root) as hub:
        # Imported only now: both read HF_ENDPOINT at import time.
        from datasets import Dataset, load_dataset
        from huggingface_hub import HfApi

        from hubtools.records import RELEASE_FEATURES

        api = HfApi(endpoint=hub.url, token=hub.token)
        repo_id = f"{hub.user}/{DEMO_REPO}"
        api.create_repo(repo_id, repo_type="dataset", exist_ok=True)
        configs = _rows()
        for name, rows in configs.items():
            Dataset.from_list(rows, features=RELEASE_FEATURES).push_to_hub(
                repo_id, config_name=name, token=hub.token, commit_message=f"demo: {name}"
            )
        tags = {t.name for t in api.list_repo_refs(repo_id, repo_type="dataset").tags}
        if DEMO_TAG not in tags:
            api.create_tag(repo_id, tag=DEMO_TAG, repo_type="dataset")
        counts = {}
        for name in configs:
            ds = load_dataset(repo_id, name, revision=DEMO_TAG, split="train", token=hub.token)
            counts[name] = ds.num_rows
        return DemoResult(repo_id, DEMO_TAG, hub.url, hub.root, counts)
