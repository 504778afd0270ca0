"""The Space's index: one SQLite file per set of release commits, built a row group at a time.

Self-contained like ``reader.py`` (standard library, pyarrow, numpy only): ``hubtools space
deploy`` copies it beside the reader as ``space_index.py``. What it holds and why:
``reader.py``'s docstring ("How it scales").
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
import unicodedata
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

INDEX_VERSION = 2  # 2: token counts
SNIPPET = 300
_ROLE = {"human": "user", "user": "user", "assistant": "assistant", "gpt": "assistant"}
_MIDDLE = "\n</think>\n<answer>\n"
_INDEX_COLUMNS = [
    "conversations.list.element.from",
    "conversations.list.element.value",
    "conversations.list.element.info.category",
    "conversations.list.element.info.source",
    "conversations.list.element.info.verify_score",
    "conversations.list.element.info.ppl",
    "conversations.list.element.info.think_tokens",  # absent before token counts: skipped
    "conversations.list.element.info.answer_tokens",
]


def normalize_text(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).split())


def derived_query_id(turns: Sequence[tuple[str, str]]) -> str:
    """The join key of a row without ``query_id``: see the module docstring."""
    payload = [[_ROLE.get(r, r), normalize_text(v or "")] for r, v in turns]
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    return hashlib.blake2b(text, digest_size=16).hexdigest()


def _key(query_id: str) -> bytes | str:
    """A query id as the index build keeps it in memory: 16 bytes for a hex id, not 32 chars."""
    try:
        return bytes.fromhex(query_id)
    except ValueError:
        return query_id


def _alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def build_index(
    path: Path, releases: Sequence, open_parquet: Callable[..., pq.ParquetFile],
    log: Callable[[str], None],
) -> None:  # fmt: skip
    """The index of ``releases`` at ``path``, written to a temporary file renamed at the
    end: a killed build leaves no half index (the next start removes its file) and is
    simply rebuilt."""
    for stale in path.parent.glob(f".{path.name}.*"):
        if not _alive(stale.suffix.lstrip(".")):
            stale.unlink(missing_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.unlink(missing_ok=True)
    db = sqlite3.connect(tmp, isolation_level=None)
    db.executescript(
        """PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;
        CREATE TABLE queries (qid INTEGER PRIMARY KEY, query_id TEXT UNIQUE, category TEXT,
            source TEXT, snippet TEXT);
        CREATE TABLE rows (qid INTEGER, rel INTEGER, score REAL, ppl REAL,
            think_chars INTEGER, answer_chars INTEGER, think_tokens INTEGER,
            answer_tokens INTEGER, truncated INTEGER,
            file INTEGER, rg INTEGER, idx INTEGER, PRIMARY KEY (qid, rel)) WITHOUT ROWID;
        CREATE TABLE releases (rel INTEGER PRIMARY KEY, rows INTEGER, tokens INTEGER);
        CREATE VIRTUAL TABLE prompts USING fts5(text, content='');
        CREATE TABLE files (rel INTEGER, file INTEGER, path TEXT);"""
    )
    db.execute("BEGIN")
    qids: dict[bytes | str, int] = {}
    with ThreadPoolExecutor(1) as reader:  # the next row group downloads meanwhile
        for rel, release in enumerate(releases):
            started, rows, told, tokens = time.monotonic(), 0, 0, 0
            for file, name in enumerate(release.files):
                db.execute("INSERT INTO files VALUES (?, ?, ?)", (rel, file, name))
                parquet = open_parquet(release, name)
                has_id = "query_id" in parquet.schema_arrow.names
                columns = _INDEX_COLUMNS + (["query_id"] if has_id else [])
                groups = parquet.metadata.num_row_groups
                ahead = reader.submit(parquet.read_row_group, 0, columns=columns)
                for rg in range(groups):
                    table = ahead.result()
                    if rg + 1 < groups:
                        ahead = reader.submit(parquet.read_row_group, rg + 1, columns=columns)
                    got, counted = _index_group(db, qids, rel, file, rg, table, has_id)
                    rows, tokens = rows + got, tokens + counted
                    if rows - told >= 100_000:
                        told = rows
                        log(f"index: {release.spec}: {rows:,} rows so far")
            db.execute("INSERT INTO releases VALUES (?, ?, ?)", (rel, rows, tokens))
            log(
                f"index: {release.spec} ({release.label}): {rows:,} rows in "
                f"{time.monotonic() - started:.1f} s"
            )
    db.execute("COMMIT")
    db.executescript(
        "CREATE INDEX queries_category ON queries (category, qid);"
        "CREATE INDEX queries_source ON queries (source, qid);"
    )
    db.close()
    os.replace(tmp, path)


def _index_group(
    db: sqlite3.Connection, qids: dict, rel: int, file: int, rg: int,
    table: pa.Table, has_id: bool,
) -> tuple[int, int]:  # fmt: skip
    conv = table.column("conversations").combine_chunks()
    turns = pc.list_flatten(conv)
    offsets = conv.offsets.to_numpy()
    starts, ends = offsets[:-1], offsets[1:]
    last = pa.array(np.maximum(ends - 1, 0))
    values = turns.field("value")
    info = turns.field("info")
    final = values.take(last)
    # The AM value is "<think>\n{think}\n</think>\n<answer>\n{answer}\n</answer>": one
    # scan for the middle marker gives both lengths (three scans cost 3x the time).
    middle = pc.find_substring(final, _MIDDLE).to_numpy(zero_copy_only=False)
    closed = pc.ends_with(final, "\n</answer>").to_numpy(zero_copy_only=False)
    total = pc.binary_length(final).to_numpy(zero_copy_only=False)
    score = info.field("verify_score").take(last).to_pylist()
    ppl, think_tokens, answer_tokens = (
        _final(info, name, last) for name in ("ppl", "think_tokens", "answer_tokens")
    )
    category = info.field("category").take(last).to_pylist()
    source = info.field("source").take(last).to_pylist()
    froms = texts = None
    firsts = values.take(pa.array(starts)).to_pylist()
    ids = table.column("query_id").to_pylist() if has_id else None
    out, new_queries, new_prompts = [], [], []
    for i in range(len(conv)):
        s, e = int(starts[i]), int(ends[i])
        if e - s < 2:
            continue  # no prompt or no answer: not a release row
        qid = ids[i] if ids is not None else None
        if not qid:
            if texts is None:
                froms, texts = turns.field("from").to_pylist(), values.to_pylist()
            qid = derived_query_id(list(zip(froms[s : e - 1], texts[s : e - 1], strict=True)))
        seen = _key(qid)
        key = qids.get(seen)
        if key is None:
            key = qids[seen] = len(qids) + 1
            prompt = firsts[i] or ""
            new_queries.append((key, qid, category[i], source[i], prompt[:SNIPPET]))
            new_prompts.append((key, prompt))
        if middle[i] >= 0:
            think = max(int(middle[i]) - len("<think>\n"), 0)
            tail = len("\n</answer>") if closed[i] else 0
            answer = max(int(total[i]) - int(middle[i]) - len(_MIDDLE) - tail, 0)
        else:  # not in the AM shape: the whole value is the answer
            think, answer = 0, int(total[i])
        truncated = int(not closed[i] or answer == 0)
        out.append((key, rel, score[i], ppl[i], think, answer, think_tokens[i],
                    answer_tokens[i], truncated, file, rg, i))  # fmt: skip
    db.executemany("INSERT INTO queries VALUES (?, ?, ?, ?, ?)", new_queries)
    db.executemany("INSERT INTO prompts (rowid, text) VALUES (?, ?)", new_prompts)
    db.executemany("INSERT OR IGNORE INTO rows VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", out)
    counted = sum(r[6] is not None and r[7] is not None for r in out)
    return len(out), counted


def _final(info: pa.StructArray, name: str, last: pa.Array) -> list[Any]:
    """The final turns' ``info.NAME``; all None where the release has no such column."""
    if info.type.get_field_index(name) < 0:
        return [None] * len(last)
    return info.field(name).take(last).to_pylist()
