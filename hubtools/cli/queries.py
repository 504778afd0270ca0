"""`hubtools queries ...`: build a run's query set."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from hubtools.checks import check_writable, parse_shard
from hubtools.cli._app import RunOption, WaitOption, queries_app


@queries_app.command("add")
def queries_add(
    file: Path = typer.Argument(..., help="JSONL or Parquet file of queries (see README)."),
    run: Path = RunOption,
    category: str | None = typer.Option(
        None, "--category", help="Category for records that have none (default: general)."
    ),
    source: str | None = typer.Option(
        None, "--source", help="Source for records that have none (default: the file name)."
    ),
) -> None:
    """Load Query records from a file into a run; a bad line loads nothing."""
    from hubtools.queries import add

    check_writable(run, "--run")
    print(add(file, run, category=category, source=source))


@queries_app.command("pull")
def queries_pull(
    config: Path = typer.Option(..., "--config", help="sources.yaml (see recipes/sources.yaml)."),
    run: Path = RunOption,
    chunk_rows: int = typer.Option(
        50_000, "--chunk-rows", min=1, help="Rows per committed chunk (a kill loses one)."
    ),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    wait: bool = WaitOption,
) -> None:
    """Stream Hub datasets into the run's pool, pinned to their commits; resumable."""
    from hubtools.queries.pull import pull

    check_writable(run, "--run")
    result = pull(config, run, progress=not quiet, chunk_rows=chunk_rows, wait=wait)
    print(json.dumps(result.to_dict(), indent=2) if as_json else result)


@queries_app.command("clean")
def queries_clean(
    run: Path = typer.Option(..., "--run", help="Run directory holding pulled queries."),
    benchmarks: str | None = typer.Option(
        None,
        "--benchmarks",
        help="Comma-separated: aime_2024, aime_2025, math500, gpqa_diamond, livecodebench, "
        "ifeval, ORG/NAME[:CONFIG]@SPLIT#FIELD, or none (default: all six, or run.yaml's).",
    ),
    embeddings: bool | None = typer.Option(
        None,
        "--embeddings/--no-embeddings",
        help="Also decontaminate by embedding similarity (needs hubtools[embed]; default off).",
    ),
    embedding_model: str | None = typer.Option(None, "--embedding-model", help="Model id."),
    threshold: float | None = typer.Option(
        None,
        "--embedding-threshold",
        min=0,
        max=1,
        help="Cosine similarity that counts (default 0.9).",
    ),
    shard: str | None = typer.Option(None, "--shard", help="Only scan shard i of N, as i/N."),
    workers: int | None = typer.Option(None, "--workers", min=1, help="Scan processes."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    wait: bool = WaitOption,
) -> None:
    """Filter, deduplicate and decontaminate the pool into the run's query set."""
    index_count = None if shard is None else parse_shard(shard)
    from hubtools.queries.clean import clean
    from hubtools.queries.decontaminate import parse_benchmarks

    result = clean(
        run, benchmarks=None if benchmarks is None else tuple(parse_benchmarks(benchmarks)),
        embeddings=embeddings, embedding_model=embedding_model, embedding_threshold=threshold,
        shard=index_count, workers=workers, progress=not quiet, wait=wait,
    )  # fmt: skip
    print(json.dumps(result.to_dict(), indent=2) if as_json else result)


@queries_app.command("export")
def queries_export(
    run: Path = typer.Option(..., "--run", help="Run directory."),
    out: Path = typer.Option(..., "--out", help="JSONL file to write."),
    removed: bool = typer.Option(
        False, "--removed", help="The removed queries, with reason and match, instead."
    ),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Write the run's query set (or the removed queries) as JSONL."""
    from hubtools.queries.export import export

    check_writable(out, "--out")
    print(export(run, out, removed=removed, progress=not quiet))
