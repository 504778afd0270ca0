"""The Space's reader against the naive way, on synthetic parallel releases on a local Hub.

Three teachers answer the same ``--rows`` queries (default 1M); each teacher's answers
are one release folder laid out as ``hubtools build`` writes it (a Parquet config per
category, row groups of ``ROW_GROUP_ROWS``, shards rolled at 256 MB, the card from the
same templates, ``assets/`` with ``analyze``'s ``stats.json`` and figures), published
with ``hubtools publish`` to a local Hub on loopback at tag ``v1.0.0``. Rows carry a
top-level ``query_id`` column (the join key of parallel rows). Generated once, cached
under ``--cache`` (a marker file says the Hub there is complete).

Then, each way in its own fresh process, cold (empty caches) then warm:

- naive: ``load_dataset(repo, "all", revision=tag)`` per teacher, ``.to_pandas()``, the
  filters in pandas, the join by ``query_id``, pages of 20; and opening one query;
- space: the same through ``hubtools.space.reader.SpaceData`` (its index cached on disk);
- app: ``hubtools space run`` (the Gradio app): until it answers HTTP, the first view in
  Debian's chromium, then the same page and query through ``gradio_client``.

Peak RSS is each process's ``VmHWM``; a child past ``--limit-gb`` (the machine is shared)
is killed and recorded as such. All ways must find the same rows (``same_pages``).

Usage: ``python bench/space.py [--rows 1000000] [--teachers A,B] [--kinds naive,space,app]``;
``--rows 20000`` is the smoke mode. Results merge into bench/space.json (keyed by rows and
teachers); ``--report`` prints the tables of bench/space.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TEACHERS = {  # name: (model, think-length factor, ppl median)
    "am-thinking-v1": ("a-m-team/AM-Thinking-v1", 1.0, 1.9),
    "qwen3-235b": ("Qwen/Qwen3-235B-A22B", 1.25, 2.3),
    "deepseek-r1": ("deepseek-ai/DeepSeek-R1", 1.45, 2.6),
}
CATEGORIES = ["math", "code", "science", "if", "chat", "general"]
SHARES = [0.295, 0.171, 0.084, 0.031, 0.209, 0.21]  # the paper's category shares
VERIFIER = {"math": "math-verify", "code": "code-sandbox", "science": "science",
            "if": "ifeval", "chat": "llm-judge", "general": "llm-judge"}  # fmt: skip
SOURCES = {c: [f"bench/{c}-{k}" for k in ("a", "b", "c")] for c in CATEGORIES}
TOPICS = [f"topic{i:03d}" for i in range(200)]  # one per prompt: what a text search finds
ORG, VERSION = "bench", "1.0.0"
CHROMIUM = "/usr/bin/chromium"
CHUNK = 10_000


def repo_of(teacher: str) -> str:
    return f"{ORG}/space-{teacher}"


# -- the synthetic releases ------------------------------------------------------------


def _words(rng: np.random.Generator, vocab: np.ndarray, lengths: np.ndarray) -> list[str]:
    picks = vocab[rng.integers(0, len(vocab), size=int(lengths.sum()))]
    ends = np.cumsum(lengths)
    return [" ".join(picks[e - n : e]) for n, e in zip(lengths, ends, strict=True)]


def _queries(rng: np.random.Generator, vocab: np.ndarray, n: int, start: int) -> dict:
    """``n`` queries: id, category, source, prompt, reference/tests/constraints."""
    from hubtools.records import query_id_for

    cats = rng.choice(len(CATEGORIES), size=n, p=SHARES)
    topics = rng.integers(0, len(TOPICS), size=n)
    bodies = _words(rng, vocab, rng.integers(10, 70, size=n))
    prompts = [
        f"Question {start + i} about {TOPICS[t]}: {b}?"
        for i, (t, b) in enumerate(zip(topics, bodies, strict=True))
    ]
    ids = [query_id_for([{"role": "user", "content": p}]) for p in prompts]
    category = [CATEGORIES[c] for c in cats]
    source = [SOURCES[c][k] for c, k in zip(category, rng.integers(0, 3, size=n), strict=True)]
    truth, tests, constraints = [], [], []
    for i, c in enumerate(category):
        truth.append(str((start + i) * 7919 % 100003) if c in ("math", "science") else None)
        tests.append(
            json.dumps({"inputs": [f"{i}\n"], "outputs": [f"{i * 2}\n"]}) if c == "code" else None
        )
        constraints.append(json.dumps([{"id": "length_words", "max": 300}]) if c == "if" else None)
    return {"id": ids, "category": category, "source": source, "prompt": prompts,
            "truth": truth, "tests": tests, "constraints": constraints}  # fmt: skip


def _answers(rng: np.random.Generator, vocab: np.ndarray, q: dict, teacher: str) -> dict:
    """One teacher's passing answers to the queries ``q``: think, answer, score, ppl."""
    _, factor, ppl_median = TEACHERS[teacher]
    n = len(q["id"])
    think_len = np.clip(rng.lognormal(np.log(60 * factor), 0.6, size=n), 5, 600).astype(int)
    thinks = _words(rng, vocab, think_len)
    answers = [
        f"{a} The answer is $\\boxed{{{t or k}}}$."
        for k, (a, t) in enumerate(zip(_words(rng, vocab, rng.integers(3, 25, size=n)), q["truth"],
                                       strict=True))
    ]  # fmt: skip
    scores = np.ones(n)
    graded = np.isin(q["category"], ["code", "if", "chat", "general"])
    scores[graded] = rng.choice([0.9, 0.92, 0.95, 1.0], size=int(graded.sum()))
    ppl = rng.lognormal(np.log(ppl_median), 0.25, size=n)
    tokens = (think_len * 1.6 + 20).astype(int)  # what a tokenizer would count, about
    return {"think": thinks, "answer": answers, "score": scores, "ppl": ppl, "tokens": tokens}


def _rows(q: dict, a: dict, model: str) -> list[dict]:
    from hubtools.reasoning import assistant_value

    rows = []
    for i, qid in enumerate(q["id"]):
        base = {"source": q["source"][i], "category": q["category"][i],
                "ground_truth": q["truth"][i], "test_case": q["tests"][i],
                "instruction_constrain": q["constraints"][i]}  # fmt: skip
        empty = {"think_content": None, "answer_content": None, "verify_score": None,
                 "model_name": None, "ppl": None}  # fmt: skip
        final = {"think_content": a["think"][i], "answer_content": a["answer"][i],
                 "verify_score": float(a["score"][i]), "model_name": model,
                 "ppl": float(a["ppl"][i])}  # fmt: skip
        rows.append({
            "query_id": qid,
            "system": "",
            "conversations": [
                {"from": "human", "value": q["prompt"][i], "info": {**base, **empty}},
                {"from": "assistant", "value": assistant_value(a["think"][i], a["answer"][i]),
                 "info": {**base, **final}},
            ],
        })  # fmt: skip
    return rows


def _schema():  # noqa: ANN202
    """The release schema with ``query_id``: hubtools' own once it carries one, else added."""
    import datasets

    from hubtools.records import release_features

    features = release_features()
    if "query_id" not in features:
        features = datasets.Features({"query_id": datasets.Value("string"), **features})
    return features


class _Writer:
    """One config's shards as ``build``'s ``_ShardWriter`` writes them (row groups, rolls)."""

    def __init__(self, folder: Path, schema) -> None:  # noqa: ANN001
        from hubtools.release.build import DEFAULT_MAX_SHARD_BYTES, ROW_GROUP_BYTES, ROW_GROUP_ROWS

        self.folder, self.schema = folder, schema
        self.group_rows, self.max_bytes = ROW_GROUP_ROWS, DEFAULT_MAX_SHARD_BYTES
        self.group_bytes = min(ROW_GROUP_BYTES, DEFAULT_MAX_SHARD_BYTES // 4)
        self.parts: list[Path] = []
        self.buffer: list[dict] = []
        self.size = 0
        self.writer = self.sink = None

    def add(self, row: dict, size: int) -> None:
        self.buffer.append(row)
        self.size += size
        if len(self.buffer) >= self.group_rows or self.size >= self.group_bytes:
            self.flush()

    def flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self.buffer:
            return
        if self.writer is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            path = self.folder / f".part-{len(self.parts):05d}.parquet"
            self.parts.append(path)
            self.sink = pa.OSFile(str(path), "wb")
            self.writer = pq.ParquetWriter(self.sink, self.schema, compression="zstd")
        self.writer.write_table(pa.Table.from_pylist(self.buffer, schema=self.schema))
        self.buffer, self.size = [], 0
        if self.sink.tell() >= self.max_bytes:
            self.writer.close()
            self.sink.close()
            self.writer = None

    def close(self) -> list[Path]:
        self.flush()
        if self.writer is not None:
            self.writer.close()
            self.sink.close()
        final = []
        for i, part in enumerate(self.parts):
            name = self.folder / f"train-{i:05d}-of-{len(self.parts):05d}.parquet"
            part.rename(name)
            final.append(name)
        return final


def generate(rows: int, out: Path) -> dict:
    """The three teachers' release folders under ``out``; returns what was written."""
    from hubtools.analysis.collect import Collected
    from hubtools.analysis.report import render
    from hubtools.analysis.stage import analysis_stats, write_outputs
    from hubtools.release.card import CardOptions, write_card
    from hubtools.release.stats import CategoryStats, Funnel

    features = _schema()
    schema = features.arrow_schema
    rng = np.random.default_rng(0)
    vocab = np.array([f"w{i:x}" + "abcdefg"[i % 7 :] for i in range(5000)], dtype=object)
    writers = {t: {} for t in TEACHERS}
    stats = {t: {} for t in TEACHERS}
    collected = Collected(list(TEACHERS), {"run": "bench-synthetic", "threshold": 0.9})
    text_bytes = 0
    started = time.monotonic()
    q: dict[str, list] = {}
    for start in range(0, rows, CHUNK):  # all queries first: build streams them by query_id
        for key, values in _queries(rng, vocab, min(CHUNK, rows - start), start).items():
            q.setdefault(key, []).extend(values)
    order = sorted(range(rows), key=q["id"].__getitem__)
    q = {key: [values[i] for i in order] for key, values in q.items()}
    del order
    print(f"{rows:,} queries in {time.monotonic() - started:.0f} s", flush=True)
    for start in range(0, rows, CHUNK):
        part = {key: values[start : start + CHUNK] for key, values in q.items()}
        for teacher, (model, _, _) in TEACHERS.items():
            a = _answers(rng, vocab, part, teacher)
            for k, row in enumerate(_rows(part, a, model)):
                category = part["category"][k]
                writer = writers[teacher].get(category)
                if writer is None:
                    folder = out / teacher / "data" / category
                    writer = writers[teacher][category] = _Writer(folder, schema)
                    stats[teacher][category] = CategoryStats()
                value = row["conversations"][-1]["value"]
                size = len(value) + len(row["conversations"][0]["value"])
                text_bytes += size
                writer.add(row, 2 * size)
                tokens, ppl = int(a["tokens"][k]), float(a["ppl"][k])
                stats[teacher][category].add(tokens, len(value), ppl)
                collected.add(teacher, category, tokens, "teacher", ppl,
                              int(tokens * 0.85), tokens - int(tokens * 0.85))  # fmt: skip
        if start % 100_000 == 0:
            print(f"{start:,} rows x 3, {time.monotonic() - started:.0f} s", flush=True)
    del q
    figures_stats = analysis_stats(collected)
    report = render(figures_stats, images="assets/", level=3)
    order = [c for c in CATEGORIES if c in stats[next(iter(TEACHERS))]]
    written = {}
    for teacher, (model, _, _) in TEACHERS.items():
        folder = out / teacher
        files = {c: writers[teacher][c].close() for c in order}
        per = {c: stats[teacher][c] for c in order}
        kept = {c: s.rows for c, s in per.items()}
        funnel = Funnel(
            queries_in=int(rows * 1.25), filters=[{"name": "dedup", "removed": rows // 4}],
            queries=kept, attempted=kept, attempts={c: int(n * 1.3) for c, n in kept.items()},
            passed=kept, kept=kept, verifiers={c: {VERIFIER[c]: n} for c, n in kept.items()},
            scoring={"ppl": [{"scorer": "bench", "backend": "synthetic", "rows": rows}],
                     "tokens": {"teacher": rows}},
            quality={"filters": ["structure: <think> and <answer> present (synthetic)"],
                     "removed": [], "removed_rows": {}, "removed_file": None,
                     "ppl_thresholds": {}, "unscored_kept": {}, "template": {}},
        )  # fmt: skip
        write_outputs(figures_stats, folder / "assets")
        run = argparse.Namespace(config={f"teacher:{teacher}": {"model": model}})
        others = [t for t in TEACHERS if t != teacher]
        _write_card(write_card, folder, run, teacher, others, files, per, funnel,
                    CardOptions(model=model), {s for c in order for s in SOURCES[c]},
                    {"report": report, "missing": None}, features)  # fmt: skip
        paths = sorted(p for p in folder.rglob("*") if p.is_file())
        written[teacher] = {
            "files": len(paths),
            "bytes": sum(p.stat().st_size for p in paths),
            "parquet_bytes": sum(p.stat().st_size for p in paths if p.suffix == ".parquet"),
            "row_groups": _row_groups(folder),
        }
    return {"rows": rows, "text_bytes_per_teacher": text_bytes // len(TEACHERS),
            "seconds": time.monotonic() - started, "teachers": written}  # fmt: skip


def _write_card(write_card, folder, run, teacher, others, files, per, funnel, options,
                sources, figures, features) -> None:  # noqa: ANN001  # fmt: skip
    """The card, from hubtools' templates; its features are the rows' (``query_id`` too)."""
    import hubtools.release.card as card

    before = card.RELEASE_FEATURES
    card.RELEASE_FEATURES = features  # a no-op once hubtools' schema carries query_id
    try:
        write_card(folder, run, teacher, others, files, per, funnel, 0.9, options, sources,
                   figures=figures)  # fmt: skip
    finally:
        card.RELEASE_FEATURES = before


def _row_groups(folder: Path) -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(p).num_row_groups for p in folder.rglob("*.parquet"))


# -- the local Hub ---------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Hub:
    """``hubtools hub serve`` on loopback over ``root``, with a write token of org ``bench``."""

    def __init__(self, root: Path):
        self.root, self.port = root, _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Hub:
        cmd = [sys.executable, "-m", "hubtools", "hub", "serve", "--root", str(self.root),
               "--port", str(self.port)]  # fmt: skip
        self.log = open(self.root.parent / "hub.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError("the local Hub did not start; see hub.log")
        cmd = [sys.executable, "-m", "hubtools", "hub", "token", "create", "--root",
               str(self.root), "--user", "alice", "--org", ORG, "--write"]  # fmt: skip
        try:
            made = subprocess.run(cmd, check=True, capture_output=True, text=True)
        except BaseException:
            self.__exit__()
            raise
        self.token = made.stdout.strip()
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        self.log.close()

    def env(self, hf_home: Path) -> dict[str, str]:
        return {**os.environ, "HF_ENDPOINT": self.url, "HF_TOKEN": self.token,
                "HF_HOME": str(hf_home), "HF_HUB_DISABLE_XET": "1",
                "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
                "HF_DATASETS_DISABLE_PROGRESS_BARS": "1", "PYTHONPATH": str(ROOT)}  # fmt: skip


def prepare(rows: int, cache: Path) -> dict:
    """Generate and publish once; the marker ``ready.json`` holds what was made."""
    marker = cache / "ready.json"
    if marker.exists():
        return json.loads(marker.read_text())
    shutil.rmtree(cache, ignore_errors=True)
    (cache / "hub").mkdir(parents=True)
    made = generate(rows, cache / "releases")
    with Hub(cache / "hub") as hub:
        for teacher in TEACHERS:
            t0 = time.monotonic()
            cmd = [sys.executable, "-m", "hubtools", "publish", str(cache / "releases" / teacher),
                   "--repo", repo_of(teacher), "--version", VERSION]  # fmt: skip
            subprocess.run(cmd, check=True, env=hub.env(cache / "publish-hf"))
            shutil.rmtree(cache / "publish-hf", ignore_errors=True)  # its load_dataset cache
            made["teachers"][teacher]["publish_seconds"] = time.monotonic() - t0
            print(f"published {repo_of(teacher)}@v{VERSION}", flush=True)
    shutil.rmtree(cache / "releases")  # the Hub holds them now
    marker.write_text(json.dumps(made, indent=2))
    return made


# -- the measurements, each in its own process -----------------------------------------

# The filtered pages, every way: the first teacher's math answers scored >= 0.9 with
# 400-2,500 characters of think + answer; "text" adds a word of the prompt (0.14% of
# the queries match), "broad" does not (26% match).
FILTERS = {
    "text": {"category": "math", "min_score": 0.9, "min_chars": 400, "max_chars": 2500,
             "text": "topic042"},
    "broad": {"category": "math", "min_score": 0.9, "min_chars": 400, "max_chars": 2500,
              "text": ""},
}  # fmt: skip
PAGE_SIZE = 20


def naive(teachers: list[str], pages: list[int]) -> dict:
    """``load_dataset`` + ``to_pandas`` per teacher, columns derived once; then the page."""
    t0 = time.monotonic()
    from datasets import load_dataset

    frames = {}
    for teacher in teachers:
        ds = load_dataset(repo_of(teacher), "all", revision=f"v{VERSION}", split="train")
        df = ds.to_pandas()
        final = df["conversations"].map(lambda c: c[-1])
        df["category"] = final.map(lambda t: t["info"]["category"])
        df["score"] = final.map(lambda t: t["info"]["verify_score"])
        df["ppl"] = final.map(lambda t: t["info"]["ppl"])
        df["chars"] = final.map(
            lambda t: len(t["info"]["think_content"] or "") + len(t["info"]["answer_content"] or "")
        )
        df["prompt"] = df["conversations"].map(lambda c: c[0]["value"])
        frames[teacher] = df
        del ds, final
        _progress(f"loaded {teacher}", t0)
    out = {"startup_s": time.monotonic() - t0, "rows": {t: len(f) for t, f in frames.items()}}
    first, others = teachers[0], teachers[1:]
    for name, f in FILTERS.items():
        for page in pages:
            t1 = time.monotonic()
            df = frames[first]
            hit = df[(df["category"] == f["category"]) & (df["score"] >= f["min_score"])
                     & df["chars"].between(f["min_chars"], f["max_chars"])]  # fmt: skip
            if f["text"]:
                hit = hit[hit["prompt"].str.contains(f["text"], regex=False, case=False)]
            joined = hit[["query_id", "prompt", "score", "ppl", "chars"]]
            for other in others:
                cols = frames[other][["query_id", "score", "ppl", "chars"]]
                joined = joined.merge(cols, on="query_id", suffixes=("", f"_{other}"))
            rows = joined.iloc[page * PAGE_SIZE : (page + 1) * PAGE_SIZE]
            out[f"{name}_page{page}_s"] = time.monotonic() - t1
            out[f"{name}_matches"] = len(joined)
            out[f"{name}_page{page}_ids"] = rows["query_id"].tolist()
    qid = out[f"text_page{pages[0]}_ids"][len(out[f"text_page{pages[0]}_ids"]) // 2]
    t2 = time.monotonic()
    opened = {}
    for teacher, df in frames.items():
        row = df[df["query_id"] == qid].iloc[0]
        final = row["conversations"][-1]
        opened[teacher] = {"think": final["info"]["think_content"],
                           "answer": final["info"]["answer_content"]}  # fmt: skip
    out["open_s"] = time.monotonic() - t2
    t3 = time.monotonic()
    dist = {t: f[["score", "ppl", "chars"]].to_numpy() for t, f in frames.items()}
    out["distributions_s"] = time.monotonic() - t3
    out["distributions_rows"] = sum(len(d) for d in dist.values())
    out["opened"] = qid
    out["opened_chars"] = {t: len(o["think"]) + len(o["answer"]) for t, o in opened.items()}
    return out


def _progress(what: str, t0: float) -> None:
    """A line on stderr with the time and memory so far: a killed child's last words."""
    status = Path("/proc/self/status").read_text()
    mb = {k: int(status.split(f"{k}:")[1].split()[0]) // 1024 for k in ("RssAnon", "RssFile")}
    print(f"progress {what} after {time.monotonic() - t0:.1f} s, RSS anon {mb['RssAnon']} MB,"
          f" file {mb['RssFile']} MB", file=sys.stderr, flush=True)  # fmt: skip


def space(teachers: list[str], pages: list[int]) -> dict:
    """``hubtools.space``'s reader: the index from the Hub (or its disk cache), then SQL."""
    t0 = time.monotonic()
    from hubtools.space.reader import SpaceData

    cache = Path(os.environ["HF_HOME"]) / "space-cache"
    data = SpaceData([f"{repo_of(t)}@v{VERSION}" for t in teachers], cache_dir=cache,
                     log=lambda *a: print(*a, file=sys.stderr))  # fmt: skip
    _progress("reader ready", t0)
    data.overview()
    facets = data.facets()
    out = {"startup_s": time.monotonic() - t0, "rows": facets.get("rows")}
    first = data.labels[0]
    for name, f in FILTERS.items():
        for page in pages:
            t1 = time.monotonic()
            got = data.page(text=f["text"], category=f["category"], release=first,
                            score=(f["min_score"], None), chars=(f["min_chars"], f["max_chars"]),
                            page=page, page_size=PAGE_SIZE)  # fmt: skip
            out[f"{name}_page{page}_s"] = time.monotonic() - t1
            out[f"{name}_matches"] = got.total
            out[f"{name}_page{page}_ids"] = [item["query_id"] for item in got.items]
    qid = out[f"text_page{pages[0]}_ids"][len(out[f"text_page{pages[0]}_ids"]) // 2]
    t2 = time.monotonic()
    opened = data.query(qid)
    out["open_s"] = time.monotonic() - t2
    t3 = time.monotonic()
    dist = data.distributions(None)
    out["distributions_s"] = time.monotonic() - t3
    out["distributions_rows"] = sum(len(d["think_chars"]) for d in dist.values())
    out["opened"] = qid
    answers = opened["answers"]
    out["opened_chars"] = {t: len(a["think"] or "") + len(a["answer"] or "")
                           for t, a in answers.items()}  # fmt: skip
    out["reader_startup_s"] = data.startup_seconds
    out["cache_bytes"] = sum(p.stat().st_size for p in cache.rglob("*") if p.is_file())
    return out


CHILDREN = {"naive": naive, "space": space}


def measure(kind: str, teachers: list[str], env: dict[str, str], limit_gb: float,
            pages: list[int]) -> dict:  # fmt: skip
    """Run ``kind`` in a fresh process; its numbers, wall time and peak RSS (``VmHWM``).

    The child is killed when its RSS passes ``limit_gb`` (this machine is shared): the
    result then says so, with the RSS and time it had reached.
    """
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", kind,
           "--teachers", ",".join(teachers), "--pages", ",".join(map(str, pages))]  # fmt: skip
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    peak = 0
    while proc.poll() is None:
        try:
            status = Path(f"/proc/{proc.pid}/status").read_text()
            peak = max(peak, int(status.split("VmHWM:")[1].split()[0]))
        except (OSError, IndexError):
            pass
        if peak > limit_gb * 1024**2:
            proc.kill()
            _, stderr = proc.communicate()
            lines = [x for x in stderr.splitlines() if x.startswith("progress ")]
            return {"killed": f"RSS passed {limit_gb} GB", "after_s": time.monotonic() - t0,
                    "peak_rss_mb": peak / 1024, "progress": lines}  # fmt: skip
        time.sleep(0.2)
    stdout, stderr = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} failed ({proc.returncode}):\n{stderr[-3000:]}")
    result = json.loads(stdout.strip().splitlines()[-1])
    result["peak_rss_mb"] = int(stderr.rsplit("VmHWM", 1)[1].split()[0]) / 1024
    result["process_s"] = time.monotonic() - t0
    result["progress"] = [x for x in stderr.splitlines() if x.startswith("progress ")]
    return result


def measure_app(teachers: list[str], env: dict[str, str], pages: list[int]) -> dict:
    """``hubtools space run`` (the Gradio app): until it answers HTTP, then its API through
    ``gradio_client``; peak RSS is the app process's ``VmHWM`` just before it is stopped."""
    import urllib.request

    from gradio_client import Client

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    specs = ",".join(f"{repo_of(t)}@v{VERSION}" for t in teachers)
    cmd = [sys.executable, "-m", "hubtools", "space", "run", "--datasets", specs, "--port",
           str(port), "--endpoint", env["HF_ENDPOINT"]]  # fmt: skip
    env = {**env, "HUBTOOLS_SPACE_CACHE": str(Path(env["HF_HOME"]) / "space-cache")}
    log = open(Path(env["HF_HOME"]).parent / f"app-{port}.log", "wb")  # noqa: SIM115
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    out: dict = {}
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the app exited ({proc.returncode}); see {log.name}")
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.2)
        out["startup_s"] = time.monotonic() - t0
        out["first_view_s"] = _first_view(url)
        client = Client(url, verbose=False)
        first = teachers[0]
        for name, f in FILTERS.items():
            for page in pages:
                t1 = time.monotonic()
                got = client.predict(text=f["text"], category=f["category"], release=first,
                                     score_min=f["min_score"], chars_min=f["min_chars"],
                                     chars_max=f["max_chars"], page=page, page_size=PAGE_SIZE,
                                     api_name="/search")  # fmt: skip
                out[f"{name}_page{page}_s"] = time.monotonic() - t1
                out[f"{name}_matches"] = got["total"]
                out[f"{name}_page{page}_ids"] = [i["query_id"] for i in got["items"]]
        qid = out[f"text_page{pages[0]}_ids"][len(out[f"text_page{pages[0]}_ids"]) // 2]
        t2 = time.monotonic()
        opened = client.predict(qid, api_name="/query")
        out["open_s"] = time.monotonic() - t2
        out["opened"] = qid
        out["opened_chars"] = {t: len(a["think"] or "") + len(a["answer"] or "")
                               for t, a in opened["answers"].items()}  # fmt: skip
        status = Path(f"/proc/{proc.pid}/status").read_text()
        out["peak_rss_mb"] = int(status.split("VmHWM:")[1].split()[0]) / 1024
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
    return out


def _first_view(url: str) -> float | None:
    """Seconds until Debian's chromium shows the first page of queries (the app's on-load:
    the first page and the distributions tab); None without chromium."""
    if not Path(CHROMIUM).exists():
        return None
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        t0 = time.monotonic()
        page.goto(url)
        page.get_by_text("page 1 of").wait_for(timeout=300_000)
        seconds = time.monotonic() - t0
        browser.close()
    return seconds


def child(kind: str, teachers: list[str], pages: list[int]) -> None:
    started = time.monotonic()
    result = CHILDREN[kind](teachers, pages)
    _progress("done", started)
    print(json.dumps(result))
    hwm = next(x for x in Path("/proc/self/status").read_text().splitlines() if "VmHWM" in x)
    print("VmHWM", hwm.split()[1], file=sys.stderr)


def machine() -> dict:
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next((x.split(":", 1)[1].strip() for x in cpu.splitlines() if "Model name" in x), "")
    mem = Path("/proc/meminfo").read_text().split()
    disk = shutil.disk_usage("/tmp")
    return {"cpus": os.cpu_count(), "cpu": model, "ram_gb": int(mem[1]) / 1024**2,
            "disk_free_gb": disk.free / 1e9, "python": sys.version.split()[0],
            "loadavg": os.getloadavg()}  # fmt: skip


def _available_gb() -> float:
    """MemAvailable: this machine is shared, a child must not push others out."""
    meminfo = Path("/proc/meminfo").read_text()
    return int(meminfo.split("MemAvailable:")[1].split()[0]) / 1024**2


def table(mine: dict, pages: list[int]) -> str:
    """The side-by-side table of one data set's runs (what bench/space.md shows)."""

    def sec(run: dict, key: str) -> str:
        value = run.get(key)
        if value is None:
            return "n/a"
        return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"

    head = ["way", "phase", "start-up", "first view", *[f"{f} page {p + 1}" for f in FILTERS
            for p in pages], "open a query", "distributions", "peak RSS", "load"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for kind, name in (
        ("naive", "naive (pandas)"),
        ("space", "Space reader"),
        ("app", "Space app"),
    ):
        for phase in ("cold", "warm"):
            run = mine.get(f"{kind}_{phase}")
            if run is None:
                continue
            if "killed" in run:
                cells = [name, phase, f"killed at {run['peak_rss_mb'] / 1024:.1f} GB RSS after "
                         f"{run['after_s']:.0f} s"] + [""] * (len(head) - 4)  # fmt: skip
            else:
                cells = [name, phase, sec(run, "startup_s"), sec(run, "first_view_s")]
                cells += [sec(run, f"{f}_page{p}_s") for f in FILTERS for p in pages]
                cells += [sec(run, "open_s"), sec(run, "distributions_s"),
                          f"{run['peak_rss_mb']:,.0f} MB"]  # fmt: skip
            load = run.get("loadavg_after")
            cells.append(f"{load[0]:.1f}" if load else "n/a")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="queries per teacher")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/hubtools-bench-space"))
    parser.add_argument(
        "--limit-gb",
        type=float,
        default=None,
        help="kill a child above this RSS (default: available RAM - 4 GB)",
    )
    parser.add_argument("--kinds", default="naive,space,app")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "space.json")
    parser.add_argument("--phases", default="cold,warm", help="warm alone reuses the caches")
    parser.add_argument("--report", action="store_true", help="print the tables of --out")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument(
        "--teachers", default=",".join(TEACHERS), help="the releases compared (default: all three)"
    )
    parser.add_argument("--pages", default="0,9", help="the pages measured (0-based)")
    args = parser.parse_args()
    pages = [int(p) for p in args.pages.split(",")]
    phases = [p for p in args.phases.split(",") if p in ("cold", "warm")]
    if args.child:
        return child(args.child, args.teachers.split(","), pages)
    if args.report:
        for key, mine in json.loads(args.out.read_text()).items():
            print(f"### {key}\n\n{table(mine, pages)}\n")
        return
    cache = args.cache / f"rows-{args.rows}"
    made = prepare(args.rows, cache)
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    teachers = args.teachers.split(",")
    if set(teachers) - set(TEACHERS):
        parser.error(f"--teachers: pick from {','.join(TEACHERS)}")
    key = str(args.rows) if len(teachers) == len(TEACHERS) else f"{args.rows}:{args.teachers}"
    mine = results.setdefault(key, {})
    mine.update({"data": made, "machine": machine()})
    with Hub(cache / "hub") as hub:
        for kind in [k for k in args.kinds.split(",") if k]:
            home = cache / f"hf-{kind}"
            if "cold" in phases:
                shutil.rmtree(home, ignore_errors=True)
            for phase in phases:
                limit = args.limit_gb or min(16.0, _available_gb() - 4)
                if kind == "app":
                    got = measure_app(teachers, hub.env(home), pages)
                else:
                    got = measure(kind, teachers, hub.env(home), limit, pages)
                got["rss_limit_gb"] = limit
                got["loadavg_after"] = os.getloadavg()  # the machine is shared: how busy
                mine[f"{kind}_{phase}"] = got
                print(kind, phase, json.dumps(got)[:400], flush=True)
                args.out.write_text(json.dumps(results, indent=2) + "\n")
            if kind == "naive":  # its datasets cache: GBs; the Space's index is kept
                shutil.rmtree(home, ignore_errors=True)
    mine["same_pages"] = _same_pages(mine)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print("same pages and opened query both ways:", mine["same_pages"])


def _same_pages(mine: dict) -> bool | None:
    """Whether both ways found the same matches, page ids and opened query's texts."""
    runs = [mine[k] for k in ("naive_warm", "space_warm", "app_warm") if k in mine]
    runs = [r for r in runs if "killed" not in r]
    if len(runs) < 2:
        return None
    keys = [k for k in runs[0] if k.endswith(("_ids", "_matches")) or k == "opened_chars"]
    return all(r.get(k) == runs[0][k] for r in runs[1:] for k in keys)


if __name__ == "__main__":
    main()
