"""The verbs that make and publish releases: build, publish, import, demo."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from hubtools.checks import check_writable
from hubtools.cli._app import RunOption, WaitOption, app
from hubtools.errors import UsageError


@app.command("build")
def build(
    run: Path = typer.Argument(..., help="Run directory."),
    teacher: str = typer.Option(..., "--teacher", help="Teacher whose answers to release."),
    out: Path = typer.Option(..., "--out", help="Release folder to write."),
    parallel: str | None = typer.Option(
        None, "--parallel", help="T1,T2,...: keep only queries every listed teacher passed."
    ),
    card: str = typer.Option("generic", "--card", help="generic, am_thinking_v1 or am_qwen3."),
    license: str | None = typer.Option(None, "--license", help="The dataset's licence id."),
    teacher_license: str | None = typer.Option(
        None, "--teacher-license", help="The teacher model's licence, stated in the card."
    ),
    pretty_name: str | None = typer.Option(None, "--pretty-name", help="The card's title."),
    max_shard_mb: float = typer.Option(
        256, "--max-shard-mb", min=0.001, help="Largest Parquet shard."
    ),
    max_shard_rows: int | None = typer.Option(
        None, "--max-shard-rows", min=1, help="Rows per shard."
    ),
    threshold: float | None = typer.Option(
        None, "--threshold", min=0, max=1, help="Pass score (default: the teacher's, else 0.9)."
    ),
    force: bool = typer.Option(False, "--force", help="Replace a non-empty --out."),
    allow_empty: bool = typer.Option(
        False, "--allow-empty", help="Build even when no answer passed (else an error)."
    ),
    quality: Path | None = typer.Option(
        None, "--quality", help="YAML with the quality: section (README, Quality filters)."
    ),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Write a teacher's verified answers as a release folder: card, Parquet configs, assets."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a folder for the release")
    check_writable(out, "--out")
    from hubtools.quality.filters import read_quality_file

    section = read_quality_file(quality) if quality is not None else None
    from hubtools.release.build import build as run_build

    result = run_build(
        run, teacher=teacher, out=out, card=card, license=license,
        parallel=[t.strip() for t in parallel.split(",") if t.strip()] if parallel else None,
        teacher_license=teacher_license, pretty_name=pretty_name,
        max_shard_bytes=int(max_shard_mb * 1024**2), max_shard_rows=max_shard_rows,
        threshold=threshold, force=force, allow_empty=allow_empty, progress=not quiet,
        quality=section,
    )  # fmt: skip
    print(json.dumps(result.to_dict(), indent=2) if as_json else result)


@app.command("publish")
def publish(
    folder: Path = typer.Argument(..., help="Release folder made by `hubtools build`."),
    repo: str = typer.Option(..., "--repo", help="Dataset repo, ORG/NAME."),
    version: str = typer.Option(..., "--version", help="X.Y.Z; tagged vX.Y.Z, never moved."),
    private: bool = typer.Option(False, "--private", help="Create the repo private."),
    create_pr: bool = typer.Option(False, "--create-pr", help="Open a pull request instead."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan; change nothing."),
    endpoint: str | None = typer.Option(
        None, "--endpoint", help="Hub URL (default: HF_ENDPOINT, else huggingface.co)."
    ),
    hub: str | None = typer.Option(
        None, "--hub", help="'local': the embedded local Hub (~/.cache/hubtools/hub)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Publish a release folder as one atomic, verified, tagged version on the Hub."""
    from hubtools.release.publish import publish as run_publish

    result = run_publish(
        folder, repo=repo, version=version, private=private, create_pr=create_pr,
        dry_run=dry_run, endpoint=endpoint, hub=hub,
    )  # fmt: skip
    print(json.dumps(result.to_dict(), indent=2) if as_json else result)


@app.command("import")
def import_(
    file: Path = typer.Argument(..., help="JSONL or Parquet of teacher outputs (see README)."),
    run: Path = RunOption,
    teacher: str = typer.Option(..., "--teacher", help="Name the answers are stored under."),
    category: str | None = typer.Option(
        None, "--category", help="Category for records that have none (default: general)."
    ),
    source: str | None = typer.Option(
        None, "--source", help="Source for records that have none (default: the file name)."
    ),
    model: str | None = typer.Option(
        None, "--model", help="Model name for records that have none (default: the teacher)."
    ),
    workers: int | None = typer.Option(None, "--workers", min=1, help="Verifier processes."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    wait: bool = WaitOption,
) -> None:
    """Bring teacher outputs made elsewhere into a run, verified (or with their given score)."""
    from hubtools.release.importer import import_outputs

    check_writable(run, "--run")
    result = import_outputs(
        file, run=run, teacher=teacher, category=category, source=source, model=model,
        workers=workers, progress=not quiet, wait=wait,
    )  # fmt: skip
    print(json.dumps(result.to_dict(), indent=2) if as_json else result)


@app.command("demo")
def demo(
    root: Path | None = typer.Option(
        None, "--root", help="Local Hub directory (default: ~/.cache/hubtools/hub)."
    ),
) -> None:
    """Publish a small sample dataset to the embedded local Hub and load it back."""
    from hubtools.demo import demo as run_demo

    print(run_demo(root))
