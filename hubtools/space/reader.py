"""The Space's data layer: hubtools releases read lazily from the Hub, joined by query id.

SELF-CONTAINED on purpose: it and ``index.py`` (the index build) import only the standard
library, pyarrow, numpy and huggingface_hub, because ``hubtools space deploy`` copies both
into the Space repo (as ``space_reader.py`` and ``space_index.py``) where hubtools is not
installed.

Public API (stable; the Space app and bench/space.py use only this)::

    data = SpaceData(["acme/ds-r1@v1.0.0", "acme/ds-qwq@v1.0.0"],
                     endpoint=None, token=None, cache_dir=None, log=print)
    data.labels                      # one label per release (its teacher), in order
    data.index_path, data.startup_seconds  # the cached index file; time the constructor took
    data.releases                    # [Release(repo, revision, sha, label, readme, stats, ...)]
    data.overview()                  # per release: rows per config, card sections (Markdown),
                                     #   pass_rates {category: share of answered passed}
    data.facets()                    # {"categories": [...], "sources": [...], "rows": N}
    data.length_unit                 # "tokens" when every row of every release carries
                                     #   think/answer token counts, else "chars"
    data.page(text="", category=None, source=None, release=None, score=(lo, hi),
              chars=(lo, hi), tokens=(lo, hi), length=(lo, hi), ppl=(lo, hi), page=0,
              page_size=20)          # length: in length_unit (tokens, else chars)
                                     # -> Page(total, items=[{query_id, category, source,
                                     #    snippet, rows: {label: {score, ppl, think_chars,
                                     #    answer_chars, think_tokens, answer_tokens,
                                     #    truncated} | None}}])   (tokens: None if unknown)
    data.query(query_id)             # every release's full row of that query (or None)
    data.distributions(category)     # {label: {"score", "ppl", "think_chars",
                                     #   "answer_chars", "think_tokens", "answer_tokens":
                                     #   numpy arrays}} (ppl, tokens: the rows that have
                                     #   them), sampled evenly to DIST_SAMPLE rows a release
    data.asset(label, "fig4_tokens_box.png")  # local path of a file under assets/, or None

How it scales: start-up reads each release's README.md (card data, funnel and
verification tables) and ``assets/stats.json`` (what ``analyze`` computed), then builds
an on-disk SQLite index once per set of commits (cached under ``cache_dir``; a later
start with the same revisions reuses it). The index is built a Parquet row group at a
time with column projection: ``query_id``, the turns' ``from``/``value`` and the small
``info`` fields (category, source, verify_score, ppl, think_tokens, answer_tokens: the
last three absent from older releases, read as null); ``think_content`` and
``answer_content`` are never read for the index, and no more than one row group's text
is in memory. It keeps per row the numbers above, the think/answer lengths, whether
the answer is truncated, and where the row lives (file, row group, offset); per query a
300-character snippet and an FTS5 full-text index of the prompt. Pages are SQL over that
index; ``query`` reads one row group of each release (through ``HfFileSystem``'s
range requests) and keeps the one row.

Join key: the ``query_id`` column the release carries. Releases built before it existed
have none; their key is derived from the prompt as hubtools derives query ids: blake2b
(128 bits) of the JSON ``[[role, NFKC-and-whitespace-normalised text], ...]`` of the
turns before the final answer (``system`` left out). It equals the real id for queries
without a system turn, so old and new releases of one run still line up.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pyarrow.parquet as pq

# The index build lives beside this file (derived_query_id: part of this module's API).
if __package__:  # hubtools.space.reader
    from .index import INDEX_VERSION, build_index, derived_query_id  # noqa: F401
else:  # a deployed Space: space_reader.py beside space_index.py
    from space_index import INDEX_VERSION, build_index, derived_query_id  # noqa: F401

DIST_SAMPLE = 200_000  # rows per release the Distributions tab draws at most
_SPEC = re.compile(r"^(?P<repo>[\w.-]+/[\w.-]+)(?:@(?P<revision>[^@\s]+))?$")
_TEACHER = re.compile(r"\(teacher `([^`]+)`\)")
_SECTIONS = ("Teacher and sampling", "How it was made", "Quality filters", "Verification",
             "Statistics")  # fmt: skip


class SpaceDataError(Exception):
    """A release that cannot be read (missing, private without a token, not hubtools')."""


def parse_spec(spec: str) -> tuple[str, str]:
    """``ORG/NAME[@REVISION]`` -> (repo, revision); the revision defaults to ``main``."""
    match = _SPEC.match(spec.strip())
    if not match:
        raise SpaceDataError(f"{spec!r} is not ORG/NAME[@REVISION] (e.g. acme/ds@v1.0.0)")
    return match["repo"], match["revision"] or "main"


def parse_specs(text: str | Sequence[str]) -> list[str]:
    """A comma-separated list (or a list) of specs, checked, without duplicates."""
    items = [s.strip() for s in (text.split(",") if isinstance(text, str) else text)]
    items = [s for s in items if s]
    if not items:
        raise SpaceDataError("no dataset given; name one or more ORG/NAME@REVISION")
    for item in items:
        parse_spec(item)
    if len({parse_spec(s) for s in items}) < len(items):
        raise SpaceDataError("the same dataset is named twice")
    return items


def default_cache_dir() -> Path:
    """``$HUBTOOLS_SPACE_CACHE``, else a Space's persistent ``/data``, else ~/.cache."""
    if os.environ.get("HUBTOOLS_SPACE_CACHE"):
        return Path(os.environ["HUBTOOLS_SPACE_CACHE"])
    if os.path.isdir("/data") and os.access("/data", os.W_OK):
        return Path("/data/hubtools-space")
    return Path.home() / ".cache" / "hubtools-space"


@dataclass
class Release:
    repo: str
    revision: str
    sha: str
    label: str = ""
    teacher: str = ""
    readme: str = ""
    card: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, Any] | None = None
    files: list[str] = field(default_factory=list)
    assets: list[str] = field(default_factory=list)

    @property
    def spec(self) -> str:
        return f"{self.repo}@{self.revision}"

    def path(self, name: str) -> str:
        """The ``HfFileSystem`` path of a file of this release, pinned to its commit."""
        return f"datasets/{self.repo}@{quote(self.sha, safe='')}/{name}"


@dataclass
class Page:
    total: int
    page: int
    page_size: int
    items: list[dict[str, Any]]

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.page_size))


class SpaceData:
    """Releases to inspect side by side; see the module docstring for the API."""

    def __init__(
        self,
        specs: str | Sequence[str],
        *,
        endpoint: str | None = None,
        token: str | bool | None = None,
        cache_dir: str | Path | None = None,
        log: Callable[[str], None] | None = print,
    ):
        from huggingface_hub import HfApi, HfFileSystem

        self.specs = parse_specs(specs)
        self.endpoint = endpoint or os.environ.get("HF_ENDPOINT") or None
        token = token or os.environ.get("HF_TOKEN") or None
        self._log = log or (lambda _msg: None)
        self.api = HfApi(endpoint=self.endpoint, token=token)
        self.fs = HfFileSystem(endpoint=self.endpoint, token=token, skip_instance_cache=True)
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._meta: dict[str, pq.FileMetaData] = {}
        self._dist: dict[str | None, dict[str, dict[str, np.ndarray]]] = {}
        self._counts: dict[tuple, int] = {}  # paging forward recounts nothing
        started = time.monotonic()
        self.releases = [self._open_release(s) for s in self.specs]
        self._label()
        key = json.dumps([INDEX_VERSION, [(r.repo, r.sha) for r in self.releases]])
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        self.index_path = self.cache_dir / f"index-{digest}.sqlite"
        if not self.index_path.exists():
            build_index(self.index_path, self.releases, self._parquet, self._log)
        else:
            self._log(f"index: reusing {self.index_path}")
        self.db = sqlite3.connect(
            f"file:{self.index_path}?mode=ro", uri=True, check_same_thread=False
        )
        self.labels = [r.label for r in self.releases]
        counted = dict(self.db.execute("SELECT rel, rows = tokens FROM releases").fetchall())
        every = all(counted.get(rel) for rel in range(len(self.releases)))
        self.length_unit = "tokens" if every else "chars"
        self.startup_seconds = time.monotonic() - started

    # -- releases ---------------------------------------------------------------------

    def _open_release(self, spec: str) -> Release:
        from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

        repo, revision = parse_spec(spec)
        try:
            info = self.api.dataset_info(repo, revision=revision, files_metadata=False)
        except RepositoryNotFoundError:
            raise SpaceDataError(
                f"dataset {repo} not found at {self.api.endpoint} (or private: set HF_TOKEN)"
            ) from None
        except HfHubHTTPError as err:
            status = getattr(err.response, "status_code", None)
            what = f"revision {revision!r} not found" if status == 404 else str(err)
            raise SpaceDataError(f"dataset {repo}: {what}") from None
        except Exception as err:  # noqa: BLE001 (an unreachable Hub): one line, no traceback
            reason = " ".join(str(err).split())[:200]
            raise SpaceDataError(f"dataset {repo}: {type(err).__name__}: {reason}") from None
        release = Release(repo=repo, revision=revision, sha=info.sha or revision)
        names = [s.rfilename for s in info.siblings or []]
        release.assets = sorted(n[len("assets/") :] for n in names if n.startswith("assets/"))
        if "README.md" in names:
            release.readme = self._read_text(release, "README.md")
            release.card = _card_data(release.readme)
        if "assets/stats.json" in names:
            release.stats = json.loads(self._read_text(release, "assets/stats.json"))
        release.files = _data_files(release.card, names)
        if not release.files:
            raise SpaceDataError(f"dataset {spec} has no Parquet files to show")
        found = _TEACHER.search(release.readme)
        release.teacher = found.group(1) if found else repo.split("/")[1]
        return release

    def _read_text(self, release: Release, name: str) -> str:
        with self.fs.open(release.path(name), "rb") as f:
            return f.read().decode("utf-8")

    def _label(self) -> None:
        teachers = [r.teacher for r in self.releases]
        names = [r.repo.split("/")[1] for r in self.releases]
        for r in self.releases:
            if teachers.count(r.teacher) == 1:
                r.label = r.teacher
            elif names.count(r.repo.split("/")[1]) == 1:
                r.label = r.repo.split("/")[1]
            else:
                r.label = r.spec

    def _parquet(self, release: Release, name: str) -> pq.ParquetFile:
        path = release.path(name)
        handle = self.fs.open(path, "rb", block_size=4 * 1024**2, cache_type="readahead")
        meta = self._meta.get(path)
        parquet = pq.ParquetFile(handle, metadata=meta)
        self._meta.setdefault(path, parquet.metadata)
        return parquet

    # -- what the app shows -----------------------------------------------------------

    def overview(self) -> list[dict[str, Any]]:
        """Per release: spec, label, teacher, pretty name, rows per config, card sections."""
        out = []
        for r in self.releases:
            infos = r.card.get("dataset_info") or []
            rows = {
                i.get("config_name"): sum(s.get("num_examples", 0) for s in i.get("splits", []))
                for i in infos
                if isinstance(i, dict)
            }
            out.append({
                "spec": r.spec, "label": r.label, "teacher": r.teacher, "sha": r.sha,
                "pretty_name": r.card.get("pretty_name") or r.repo, "rows": rows,
                "sections": _sections(r.readme), "figures": r.stats is not None,
                "pass_rates": _pass_rates(r.readme),
            })  # fmt: skip
        return out

    def facets(self) -> dict[str, Any]:
        with self._lock:
            cats = [c for (c,) in self.db.execute("SELECT DISTINCT category FROM queries")]
            sources = [s for (s,) in self.db.execute("SELECT DISTINCT source FROM queries")]
            (n,) = self.db.execute("SELECT COUNT(*) FROM queries").fetchone()
        return {"categories": sorted(c for c in cats if c), "rows": n,
                "sources": sorted(s for s in sources if s)}  # fmt: skip

    def page(
        self,
        *,
        text: str = "",
        category: str | None = None,
        source: str | None = None,
        release: str | None = None,
        score: tuple[float | None, float | None] = (None, None),
        chars: tuple[float | None, float | None] = (None, None),
        tokens: tuple[float | None, float | None] = (None, None),
        length: tuple[float | None, float | None] = (None, None),
        ppl: tuple[float | None, float | None] = (None, None),
        page: int = 0,
        page_size: int = 20,
    ) -> Page:
        """One page of queries matching every filter, in index order.

        ``text``: words that must all appear in the prompt (full-text, case-insensitive).
        ``score``/``chars`` (think + answer)/``tokens`` (think + answer; rows without
        counts never match)/``length`` (``tokens`` or ``chars``: ``length_unit``)/``ppl``:
        inclusive ranges, None = open; they hold for the row of ``release`` (a label), or for
        at least one release when None.
        """
        where, args = [], []
        words = re.findall(r"\w+", text or "")
        if words:
            match = " ".join('"' + w.replace('"', "") + '"' for w in words)
            where.append("q.qid IN (SELECT rowid FROM prompts WHERE prompts MATCH ?)")
            args.append(match)
        if category:
            where.append("q.category = ?")
            args.append(category)
        if source:
            where.append("q.source = ?")
            args.append(source)
        cond, cargs = [], []
        sizes = {"chars": "think_chars + answer_chars", "tokens": "think_tokens + answer_tokens"}
        ranges = [("score", score), (sizes["chars"], chars), (sizes["tokens"], tokens),
                  (sizes[self.length_unit], length), ("ppl", ppl)]  # fmt: skip
        for column, (lo, hi) in ranges:
            if lo is not None:
                cond.append(f"{column} >= ?")
                cargs.append(lo)
            if hi is not None:
                cond.append(f"{column} <= ?")
                cargs.append(hi)
        if release:
            if release not in self.labels:
                raise SpaceDataError(f"unknown release {release!r}; one of {self.labels}")
            cond.append("r.rel = ?")
            cargs.append(self.labels.index(release))
        if cond:
            where.append(f"EXISTS (SELECT 1 FROM rows r WHERE r.qid = q.qid AND "
                         f"{' AND '.join(cond)})")  # fmt: skip
            args += cargs
        sql_where = f" WHERE {' AND '.join(where)}" if where else ""
        page, page_size = max(0, int(page)), max(1, min(int(page_size), 200))
        with self._lock:
            count = f"SELECT COUNT(*) FROM queries q{sql_where}"
            key = (count, tuple(args))
            total = self._counts.get(key)
            if total is None:  # the index is read-only: a filter's count never changes
                (total,) = self.db.execute(count, args).fetchone()
                if len(self._counts) >= 256:
                    self._counts.pop(next(iter(self._counts)))
                self._counts[key] = total
            found = self.db.execute(
                f"SELECT qid, query_id, category, source, snippet FROM queries q{sql_where}"
                " ORDER BY qid LIMIT ? OFFSET ?",
                [*args, page_size, page * page_size],
            ).fetchall()
            per = {}
            if found:
                marks = ",".join("?" * len(found))
                for row in self.db.execute(
                    "SELECT qid, rel, score, ppl, think_chars, answer_chars, think_tokens,"
                    " answer_tokens, truncated FROM rows"
                    f" WHERE qid IN ({marks})",
                    [f[0] for f in found],
                ):
                    per[(row[0], row[1])] = row[2:]
        items = []
        for qid, query_id, cat, src, snippet in found:
            rows = {}
            for rel, label in enumerate(self.labels):
                got = per.get((qid, rel))
                rows[label] = None if got is None else dict(zip(
                    ("score", "ppl", "think_chars", "answer_chars", "think_tokens",
                     "answer_tokens", "truncated"), got,
                    strict=True))  # fmt: skip
            items.append({"query_id": query_id, "category": cat, "source": src,
                          "snippet": snippet, "rows": rows})  # fmt: skip
        return Page(total=total, page=page, page_size=page_size, items=items)

    def query(self, query_id: str) -> dict[str, Any] | None:
        """The full rows of one query, one per release (None where a release lacks it)."""
        with self._lock:
            found = self.db.execute(
                "SELECT qid, category, source FROM queries WHERE query_id = ?", (query_id,)
            ).fetchone()
            if found is None:
                return None
            where = self.db.execute(
                "SELECT r.rel, f.path, r.rg, r.idx, r.truncated FROM rows r JOIN files f"
                " ON f.rel = r.rel AND f.file = r.file WHERE r.qid = ?",
                (found[0],),
            ).fetchall()
        located = {rel: (path, rg, idx, bool(t)) for rel, path, rg, idx, t in where}

        def fetch(rel: int) -> dict[str, Any]:
            path, rg, idx, _ = located[rel]
            table = self._parquet(self.releases[rel], path).read_row_group(rg)
            return table.slice(idx, 1).to_pylist()[0]

        # One row group per release, read together: on a remote Hub the round trips overlap.
        with ThreadPoolExecutor(max_workers=max(1, min(8, len(located)))) as pool:
            fetched = dict(zip(located, pool.map(fetch, located), strict=True))
        answers, prompt, system, info0 = {}, None, None, {}
        for rel, release in enumerate(self.releases):
            if rel not in located:
                answers[release.label] = None
                continue
            truncated = located[rel][3]
            row = fetched[rel]
            turns = row["conversations"]
            final = turns[-1].get("info") or {}
            if prompt is None:
                prompt = [{"from": t["from"], "value": t["value"]} for t in turns[:-1]]
                system, info0 = row.get("system") or "", final
            answers[release.label] = {
                "think": final.get("think_content"),
                "answer": final.get("answer_content"),
                "value": turns[-1]["value"],
                "score": final.get("verify_score"),
                "ppl": final.get("ppl"),
                "think_tokens": final.get("think_tokens"),
                "answer_tokens": final.get("answer_tokens"),
                "model": final.get("model_name"),
                "truncated": truncated,
                "system": row.get("system") or "",
            }
        return {
            "query_id": query_id, "category": found[1], "source": found[2], "system": system,
            "prompt": prompt or [], "reference": info0.get("ground_truth"),
            "tests": _json(info0.get("test_case")),
            "constraints": _json(info0.get("instruction_constrain")), "answers": answers,
        }  # fmt: skip

    def distributions(self, category: str | None = None) -> dict[str, dict[str, np.ndarray]]:
        """Per release label: numpy arrays of score, ppl (scored rows), think/answer chars,
        think/answer tokens (the rows that carry both counts).

        A release of more than ``DIST_SAMPLE`` rows is sampled evenly (every k-th query):
        enough for histograms and boxes, and flat in memory at millions of rows.
        """
        if category in self._dist:
            return self._dist[category]
        out = {}
        for rel, label in enumerate(self.labels):
            join = " JOIN queries q ON q.qid = r.qid AND q.category = ?" if category else ""
            args: list[Any] = [category] if category else []
            with self._lock:
                (n,) = self.db.execute(
                    f"SELECT COUNT(*) FROM rows r{join} WHERE r.rel = ?", [*args, rel]
                ).fetchone()
                step = max(1, -(-n // DIST_SAMPLE))
                cursor = self.db.execute(
                    "SELECT IFNULL(r.score, -1), IFNULL(r.ppl, -1), r.think_chars, "
                    "r.answer_chars, IFNULL(r.think_tokens, -1), IFNULL(r.answer_tokens, -1)"
                    f" FROM rows r{join} WHERE r.rel = ? AND r.qid % ? = 0",
                    [*args, rel, step],
                )
                flat = np.fromiter((v for row in cursor for v in row), dtype=np.float64)
            data = flat.reshape(-1, 6)
            counted = (data[:, 4] >= 0) & (data[:, 5] >= 0)
            out[label] = {
                "score": data[:, 0][data[:, 0] >= 0],
                "ppl": data[:, 1][data[:, 1] >= 0],
                "think_chars": data[:, 2],
                "answer_chars": data[:, 3],
                "think_tokens": data[:, 4][counted],
                "answer_tokens": data[:, 5][counted],
            }
        self._dist[category] = out
        return out

    def asset(self, label: str, name: str) -> Path | None:
        """A file under the release's ``assets/`` (an ``analyze`` figure), cached locally."""
        release = self.releases[self.labels.index(label)]
        if name not in release.assets:
            return None
        local = self.cache_dir / "assets" / release.sha / name
        if not local.exists():
            local.parent.mkdir(parents=True, exist_ok=True)
            tmp = local.with_name(f".{name}.{os.getpid()}")
            with self.fs.open(release.path(f"assets/{name}"), "rb") as f:
                tmp.write_bytes(f.read())
            os.replace(tmp, local)
        return local

    def close(self) -> None:
        self.db.close()


def _card_data(readme: str) -> dict[str, Any]:
    from huggingface_hub import DatasetCard

    try:
        return DatasetCard(readme).data.to_dict()
    except Exception:  # noqa: BLE001 (a card we cannot parse still shows its rows)
        return {}


def _data_files(card: dict[str, Any], names: list[str]) -> list[str]:
    """Every Parquet file once: the category configs' files (``all`` repeats them)."""
    import fnmatch

    patterns = []
    for cfg in card.get("configs") or []:
        if cfg.get("config_name") == "all" and len(card["configs"]) > 1:
            continue
        for item in cfg.get("data_files") or []:
            path = item.get("path") if isinstance(item, dict) else item
            patterns += [path] if isinstance(path, str) else list(path or [])
    parquet = sorted(n for n in names if n.endswith(".parquet"))
    if not patterns:
        return parquet
    return [n for n in parquet if any(fnmatch.fnmatch(n, p) for p in patterns)]


def _sections(readme: str) -> dict[str, str]:
    """The card's ``## `` sections the Overview shows, as Markdown, by heading."""
    found = {}
    parts = re.split(r"^## +(.+)$", readme, flags=re.M)
    for title, body in zip(parts[1::2], parts[2::2], strict=False):
        if title.strip() in _SECTIONS:
            found[title.strip()] = body.strip()
    return found


def _pass_rates(readme: str) -> dict[str, float | None]:
    """Per category, the share of answered queries the teacher passed (the card's funnel)."""
    rates: dict[str, float | None] = {}
    header = None
    for line in readme.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if "category" in cells and "pass rate" in cells:
            header = cells
            continue
        if header is None or not line.startswith("|"):
            header = None if header is not None and not line.strip() else header
            continue
        if len(cells) != len(header) or set(cells[0]) <= {"-", ":"}:
            continue
        value = cells[header.index("pass rate")].rstrip("%").replace(",", "")
        try:
            rates[cells[0]] = float(value) / 100
        except ValueError:
            rates[cells[0]] = None
    return rates


def _json(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text
