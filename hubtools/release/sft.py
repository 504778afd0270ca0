"""The training view of a release: conversational prompt/completion rows TRL trains on as is.

``build`` writes it beside the AM rows, in ``sft/``, and ``publish`` uploads it in the same
commit, so the view of version ``vX.Y.Z`` is read at that tag like the data. Why a view:
TRL reads the AM rows wrongly (the role ``human`` is dropped by Qwen's template, the
``system`` column is never rendered, and ``completion_only_loss`` has no completion to
mask to). A row here is

- ``prompt``: the system turn first (when the row has one), then every earlier turn, with
  ``human`` written ``user``; ``completion``: the final assistant turn, ``<think>...</think>
  <answer>...</answer>``. TRL's default ``completion_only_loss`` then puts the loss on that
  answer (and its end-of-turn tokens) only, the paper's rule for multi-turn data;
- ``num_tokens``: the length of prompt + completion under the scorer's tokenizer and chat
  template (``hubtools score``: its stored response tokens plus the prompt rendered here),
  null when the answer was never scored.

TRL truncates samples longer than ``max_length`` and has no option to drop them, so the
view is split by that length: ``sft/tokens-00512/`` holds rows of 1..512 tokens,
``sft/tokens-01024/`` 513..1024, and so on (``tokens-over``: longer than the last bound;
``tokens-unknown``: not scored). A recipe lists the folders up to its ``max_length`` in its
``data_files``, and longer samples are never loaded. Every folder exists, with an empty
file when no row falls in it, so a recipe's patterns always match (a release whose
lengths are all unknown has ``tokens-unknown/`` alone, and an empty release no view).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hubtools.records import ResponseScore
from hubtools.release.rows import AM_FROM

if TYPE_CHECKING:
    import pyarrow as pa

FOLDER = "sft"
BOUNDS = tuple(2**k for k in range(9, 18))  # 512 .. 131072
OVER, UNKNOWN = "tokens-over", "tokens-unknown"
_ROLE = {am: role for role, am in AM_FROM.items()}  # AM `from` -> chat role
PAGE = 512  # rows whose prompts are tokenized in one batch


def bucket(num_tokens: int | None) -> str:
    """The folder a row of ``num_tokens`` goes to: the smallest bound that holds it."""
    if num_tokens is None:
        return UNKNOWN
    for bound in BOUNDS:
        if num_tokens <= bound:
            return f"tokens-{bound:05d}"
    return OVER


def buckets() -> list[str]:
    return [bucket(b) for b in BOUNDS] + [OVER, UNKNOWN]


def up_to(max_length: int) -> list[str]:
    """The folders whose every row is at most ``max_length`` tokens long."""
    return [bucket(b) for b in BOUNDS if b <= max_length]


@functools.cache
def sft_schema() -> pa.Schema:
    import pyarrow as pa

    turn = pa.struct([("role", pa.string()), ("content", pa.string())])
    return pa.schema(
        [
            ("prompt", pa.list_(turn)),
            ("completion", pa.list_(turn)),
            ("num_tokens", pa.int64()),
            ("category", pa.string()),
            ("query_id", pa.string()),
        ]
    )


def conversation(row: dict[str, Any]) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """(prompt, completion) turns of one AM release row."""
    turns = row["conversations"]
    prompt = [{"role": "system", "content": row["system"]}] if row["system"] else []
    prompt += [{"role": _ROLE[t["from"]], "content": t["value"]} for t in turns[:-1]]
    return prompt, [{"role": "assistant", "content": turns[-1]["value"]}]


class PromptCounter:
    """Counts a prompt's tokens as ``hubtools score`` renders it: the scorer's chat template
    with the generation prompt, no special tokens added on top."""

    def __init__(self, tokenizer: Any, name: str):
        self.tokenizer, self.name = tokenizer, name

    @classmethod
    def for_run(cls, config: dict[str, Any]) -> tuple[PromptCounter | None, str | None]:
        """The counter of the run's scorer (its ``score:`` section), or None and why not."""
        section = config.get("score") or {}
        name = section.get("tokenizer") or section.get("model")
        if not name:
            return None, "the answers were not scored (`hubtools score`)"
        gguf = section.get("gguf_file") if not section.get("tokenizer") else None
        try:
            from transformers import AutoTokenizer
            from transformers.utils import logging

            logging.set_verbosity_error()
            tokenizer = AutoTokenizer.from_pretrained(name, **({"gguf_file": gguf} if gguf else {}))
        except Exception as err:  # offline and not cached, or gone: the view says why
            return None, f"the scorer's tokenizer {name} could not be loaded ({str(err)[:200]})"
        if not getattr(tokenizer, "chat_template", None):
            return None, f"the scorer's tokenizer {name} has no chat template"
        return cls(tokenizer, f"{name}/{gguf}" if gguf else name), None

    def count(self, prompts: list[list[dict[str, str]]]) -> list[int]:
        """Token counts of many prompts, tokenized in one batch (the fast tokenizer's threads)."""
        render = self.tokenizer.apply_chat_template
        texts = [render(p, tokenize=False, add_generation_prompt=True) for p in prompts]
        return [len(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]


@dataclass(slots=True)
class SftView:
    """Writes the view's rows into one shard writer per length folder."""

    staging: Path
    make_writer: Any  # (folder) -> a writer with add(row, size) and close() -> [paths]
    counter: PromptCounter | None
    why_unknown: str | None
    rows: dict[str, int] = field(default_factory=dict)
    _writers: dict[str, Any] = field(default_factory=dict)
    _page: list[tuple[dict[str, Any], int | None]] = field(default_factory=list)

    def add(
        self, row: dict[str, Any], category: str, query_id: str, score: ResponseScore | None
    ) -> None:
        prompt, completion = conversation(row)
        response = score.scored_tokens if score is not None and self.counter is not None else 0
        sft = {"prompt": prompt, "completion": completion, "num_tokens": None,
               "category": category, "query_id": query_id}  # fmt: skip
        self._page.append((sft, response or None))
        if len(self._page) >= PAGE:
            self._flush()

    def _flush(self) -> None:
        """Count the page's prompts in one batch, then route each row to its length folder."""
        scored = [sft for sft, response in self._page if response]
        counts = iter(self.counter.count([s["prompt"] for s in scored]) if scored else [])
        for sft, response in self._page:
            if response:
                sft["num_tokens"] = next(counts) + response
            name = bucket(sft["num_tokens"])
            writer = self._writers.get(name)
            if writer is None:
                writer = self._writers[name] = self.make_writer(self.staging / FOLDER / name)
            writer.add(sft, sum(len(t["content"]) for t in sft["prompt"] + sft["completion"]))
            self.rows[name] = self.rows.get(name, 0) + 1
        self._page = []

    def close(self) -> dict[str, Any]:
        """Close every folder; what the card shows. Once any row has a known length every
        length folder exists (an empty file where no row fell); else only what was written."""
        import pyarrow.parquet as pq

        self._flush()
        known = any(name != UNKNOWN for name in self._writers)
        for name in buckets():
            if name in self._writers:
                self._writers.pop(name).close()
            elif known and name != UNKNOWN:
                folder = self.staging / FOLDER / name
                folder.mkdir(parents=True, exist_ok=True)
                empty = sft_schema().empty_table()
                pq.write_table(empty, folder / "train-00000-of-00001.parquet", compression="zstd")
        rows = {name: self.rows.get(name, 0) for name in buckets() if known or name in self.rows}
        if not rows:
            return {}
        return {
            "folder": FOLDER,
            "tokenizer": self.counter.name if self.counter else None,
            "why_unknown": self.why_unknown,
            "rows": rows,
            "bounds": {bucket(b): b for b in BOUNDS},
        }
