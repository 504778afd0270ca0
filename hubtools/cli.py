"""The `hubtools` command line: parses arguments and calls the stage functions.

Every verb is a function of the same name in the library; a `HubtoolsError`
becomes one line on stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from hubtools.checks import check_queries, check_writable, parse_shard
from hubtools.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_PARTIAL,
    EXIT_USAGE,
    HubtoolsError,
    UsageError,
)

# Plain help (no Rich markup): Rich would eat `hubtools[embed]` and print `<bool>` on flags.
_PLAIN = dict(no_args_is_help=True, rich_markup_mode=None)
app = typer.Typer(
    help="Verified, versioned reasoning-data distillation on the Hugging Face Hub.",
    pretty_exceptions_enable=False,
    add_completion=False,
    **_PLAIN,
)
hub_app = typer.Typer(help="Run and administer a local, Hub-compatible server.", **_PLAIN)
token_app = typer.Typer(help="Access tokens of a local Hub.", **_PLAIN)
queries_app = typer.Typer(help="Build the query set of a run.", **_PLAIN)
app.add_typer(hub_app, name="hub")
hub_app.add_typer(token_app, name="token")
app.add_typer(queries_app, name="queries")


def _version(value: bool) -> None:
    """`--version`: eager and cheap (no stage module is imported)."""
    if not value:
        return
    from importlib.metadata import PackageNotFoundError, version

    try:
        number = version("hubtools")
    except PackageNotFoundError:  # run from a checkout that was never installed
        from hubtools import __version__ as number
    print(f"hubtools {number}")
    raise typer.Exit(0)


@app.callback()
def _options(
    _: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Verified, versioned reasoning-data distillation on the Hugging Face Hub."""


RunOption = typer.Option(..., "--run", help="Run directory (created if missing).")
WaitOption = typer.Option(
    False, "--wait", help="If another process is writing the same shard, wait for it to finish."
)


@hub_app.command("serve")
def hub_serve(
    root: Path = typer.Option(
        ..., "--root", help="Directory holding the repos, users and tokens (created if missing)."
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8765, "--port", help="Port to listen on (0: any free port)."),
    max_body_mb: int = typer.Option(
        512, "--max-body-mb", min=1, help="Largest request body accepted."
    ),
    no_fsync: bool = typer.Option(False, "--no-fsync", help="Skip fsync (faster, not power-safe)."),
    log_level: str = typer.Option(
        "warning", "--log-level", help="debug, info, warning, error, critical."
    ),
) -> None:
    """Serve a local Hub that huggingface_hub, datasets and `gradio deploy` use unchanged."""
    from hubtools.hub import serve

    serve(
        root, host, port, max_body_bytes=max_body_mb * 1024**2, fsync=not no_fsync,
        log_level=log_level,
    )  # fmt: skip


@token_app.command("create")
def hub_token_create(
    root: Path = typer.Option(
        ..., "--root", help="The local Hub's directory (made by `hubtools hub serve`)."
    ),
    user: str = typer.Option(..., "--user", help="User the token belongs to (created if new)."),
    org: list[str] = typer.Option([], "--org", help="Organization of the user (repeatable)."),
    write: bool = typer.Option(False, "--write", help="A write token (default: read-only)."),
    init: bool = typer.Option(False, "--init", help="Create the Hub's directory if missing."),
) -> None:
    """Print a new access token on stdout; only its hash is stored."""
    from hubtools.hub import create_token

    print(create_token(root, user, org, write, init=init))


@hub_app.command("env")
def hub_env(
    endpoint: str = typer.Option("http://127.0.0.1:8765", "--endpoint", help="Local Hub URL."),
) -> None:
    """Print the environment the official clients need for a local Hub (eval it)."""
    from hubtools.hub import env_lines

    print("\n".join(env_lines(endpoint)))


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


@app.command("generate")
def generate(
    run: Path = typer.Argument(..., help="Run directory holding the queries."),
    config: Path = typer.Option(..., "--config", help="run.yaml naming the teachers."),
    shard: str | None = typer.Option(None, "--shard", help="Only shard i of N, as i/N."),
    executor: str = typer.Option("local", "--executor", help="local, or ray for all shards."),
    shards: int | None = typer.Option(
        None, "--shards", min=1, help="Shard count for --executor ray."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
    wait: bool = WaitOption,
) -> None:
    """Ask every teacher every query until its answer verifies; resumable after any crash.

    Environment: HUBTOOLS_EVENT_LOOP=asyncio runs on asyncio's loop instead of uvloop;
    HUBTOOLS_HTTP_TRANSPORT=httpx sends through httpx2's pools instead of aiohttp.
    """
    if executor not in ("local", "ray"):
        raise UsageError(f"--executor must be 'local' or 'ray', got {executor!r}")
    if shards is not None and executor != "ray":
        raise UsageError("--shards is for --executor ray; run one shard here with --shard i/N")
    if shard is not None:
        if executor == "ray":
            raise UsageError("--executor ray runs every shard: give --shards N, not --shard")
        parse_shard(shard)
    check_queries(run)
    from hubtools.teachers import generate as run_generate

    summaries = run_generate(
        run, config, shard=shard, executor=executor, shards=shards, progress=not quiet, wait=wait
    )
    if as_json:
        print(json.dumps([s.to_dict() for s in summaries], indent=2))
    else:
        print("\n".join(str(s) for s in summaries))
    if not all(s.ok for s in summaries):
        raise typer.Exit(EXIT_PARTIAL)


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


@app.command("analyze")
def analyze(
    run: Path | None = typer.Argument(None, help="Run directory (or give --releases)."),
    teachers: str | None = typer.Option(None, "--teachers", help="T1,T2,...: teachers to compare."),
    releases: str | None = typer.Option(
        None, "--releases", help="ORG/A@v1.0.0,ORG/B@v1.0.0: published releases instead of a run."
    ),
    out: Path = typer.Option(..., "--out", help="Folder for the figures, stats.json, report.md."),
    tokenizer: str | None = typer.Option(
        None, "--tokenizer", help="Hub id or folder counting tokens where none are stored."
    ),
    threshold: float | None = typer.Option(
        None, "--threshold", min=0, max=1, help="Pass score (default: the first teacher's)."
    ),
    endpoint: str | None = typer.Option(None, "--endpoint", help="Hub URL for --releases."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """The paper's figures 2-5 and their numbers, over the queries every teacher passed."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a folder for the figures")
    check_writable(out, "--out")
    if releases is not None and threshold is not None:
        raise UsageError("--threshold is for a run; a release holds passed answers only")
    if run is not None and endpoint is not None:
        raise UsageError("--endpoint is for --releases; a run is read from its folder")
    from hubtools.analysis import analyze as run_analyze

    names = [t for t in teachers.split(",")] if teachers is not None else None
    result = run_analyze(
        run, teachers=names, releases=releases, out=out, tokenizer=tokenizer,
        progress=not quiet, **({"endpoint": endpoint} if releases else {"threshold": threshold}),
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


@app.command("status")
def status(
    run: Path = typer.Argument(..., help="Run directory."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """What a run holds: queries by category; attempts, passes and failures per teacher."""
    from hubtools.status import status as run_status

    result = run_status(run)
    print(json.dumps(result.to_dict(), indent=2) if as_json else result.render())


@app.command("verify")
def verify(
    run: Path | None = typer.Argument(None, help="Run directory whose stored attempts to verify."),
    input: Path | None = typer.Option(
        None, "--input", help="JSONL of query records with an 'answer' each (see README)."
    ),
    output: Path | None = typer.Option(None, "--output", help="Where --input's scored lines go."),
    force: bool = typer.Option(
        False, "--force", help="Verify again, replacing each verdict; scores made elsewhere stay."
    ),
    shard: str = typer.Option("0/1", "--shard", help="i/N: the shard of a sharded run to verify."),
    teacher: str | None = typer.Option(None, "--teacher", help="Only this teacher's attempts."),
    workers: int | None = typer.Option(
        None, "--workers", min=1, help="Worker processes (default: one per core)."
    ),
    math_timeout: int = typer.Option(
        5, "--math-timeout", min=1, help="Seconds per Math-Verify step (--input only)."
    ),
    judge_endpoint: str | None = typer.Option(
        None, "--judge-endpoint", help="Judge URL for chat/general (--input only)."
    ),
    judge_model: str | None = typer.Option(None, "--judge-model", help="Judge model name."),
    judge_key_env: str | None = typer.Option(
        None, "--judge-key-env", help="Variable holding the judge endpoint's own key."
    ),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable summary."),
    wait: bool = WaitOption,
) -> None:
    """Score answers 0..1: a run's stored attempts, or --input answers made elsewhere."""
    index, count = parse_shard(shard)
    from hubtools.verify import JudgeConfig, VerifyConfig
    from hubtools.verify import verify as run_verify

    judge_flags = judge_endpoint or judge_model or judge_key_env
    config = None
    if input is not None:
        judge = None
        if judge_flags:
            if not (judge_endpoint and judge_model):
                raise UsageError("--judge-endpoint and --judge-model go together")
            judge = JudgeConfig(judge_endpoint, judge_model, api_key_env=judge_key_env)
        config = VerifyConfig(math_timeout_s=math_timeout, judge=judge, workers=workers)
    elif judge_flags or math_timeout != 5:
        raise UsageError(
            "a run verifies with the verify: settings frozen in its run.yaml; "
            "--judge-* and --math-timeout are for --input"
        )
    if output is not None:
        check_writable(output, "--output")
    result = run_verify(
        run, input=input, output=output, force=force, shard=(index, count), teacher=teacher,
        config=config, workers=workers, wait=wait,
    )  # fmt: skip
    print(json.dumps(result.to_dict(), indent=2) if as_json else result)


@app.command("score")
def score(
    run: Path = typer.Argument(..., help="Run directory whose responses to score."),
    backend: str | None = typer.Option(None, "--backend", help="local, tgi, vllm or sglang."),
    model: str | None = typer.Option(
        None, "--model", help="Hub id or folder (local), or the served model name."
    ),
    gguf_file: str | None = typer.Option(None, "--gguf-file", help="GGUF file in --model."),
    tokenizer: str | None = typer.Option(
        None, "--tokenizer", help="Renders and counts tokens (default: the model's)."
    ),
    endpoint: str | None = typer.Option(None, "--endpoint", help="Server URL (remote backends)."),
    api_key_env: str | None = typer.Option(None, "--api-key-env", help="Variable with its key."),
    all_attempts: bool = typer.Option(
        False, "--all", help="Score every answer, not only passed ones (frozen)."
    ),
    threshold: float | None = typer.Option(None, "--threshold", min=0, max=1, help="Pass score."),
    max_batch_tokens: int | None = typer.Option(
        None, "--max-batch-tokens", min=1, help="Padded tokens per forward pass (local)."
    ),
    max_concurrency: int | None = typer.Option(
        None, "--max-concurrency", min=1, help="Requests in flight (remote)."
    ),
    device: str | None = typer.Option(None, "--device", help="auto, cpu or cuda (local)."),
    dtype: str | None = typer.Option(None, "--dtype", help="auto, bfloat16, float16, float32."),
    force: bool = typer.Option(False, "--force", help="Score again, replacing each score."),
    shard: str = typer.Option("0/1", "--shard", help="i/N: the shard of a sharded run to score."),
    teacher: str | None = typer.Option(None, "--teacher", help="Only this teacher's attempts."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable summary."),
    wait: bool = WaitOption,
) -> None:
    """Perplexity and token counts of a run's responses under a scoring model (see README)."""
    index, count = parse_shard(shard)
    from hubtools.quality.stage import score as run_score

    result = run_score(
        run, shard=(index, count), teacher=teacher, force=force, wait=wait, progress=not quiet,
        backend=backend, model=model, gguf_file=gguf_file, tokenizer=tokenizer,
        endpoint=endpoint, api_key_env=api_key_env, passed_only=False if all_attempts else None,
        threshold=threshold, max_batch_tokens=max_batch_tokens,
        max_concurrency=max_concurrency, device=device, dtype=dtype,
    )  # fmt: skip
    print(json.dumps(result.to_dict(), indent=2) if as_json else result)


def main() -> None:
    """Run the CLI: every user mistake is one `error:` line and a documented exit code."""
    try:
        code = app(standalone_mode=False)
    except typer.TyperException as err:  # the parser's (click's) errors: bad options, arguments
        if type(err).__name__ == "NoArgsIsHelpError":  # a bare group: its help, as click does
            err.show()
        else:
            message = " ".join(err.format_message().split()).rstrip(".")
            ctx = getattr(err, "ctx", None)
            where = f"; see `{ctx.command_path} --help`" if ctx is not None else ""
            print(f"error: {message}{where}", file=sys.stderr)
        code = getattr(err, "exit_code", EXIT_USAGE)
    except typer.Abort:  # Ctrl-D at a prompt
        print("interrupted", file=sys.stderr)
        code = EXIT_INTERRUPTED
    except HubtoolsError as err:
        print(f"error: {err}", file=sys.stderr)
        code = err.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = EXIT_INTERRUPTED
    except OSError as err:  # the file system refused (disk full, a read-only mount): one line
        where = f"{err.filename}: " if err.filename else ""
        print(f"error: {where}{err.strerror or err}", file=sys.stderr)
        code = EXIT_FAILED
    sys.exit(code if isinstance(code, int) else 0)
