"""The verbs that work on a run's answers: generate, verify, score, analyze, status."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from hubtools.checks import check_queries, check_writable, parse_shard
from hubtools.cli._app import WaitOption, app
from hubtools.errors import EXIT_PARTIAL, UsageError


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


@app.command("status")
def status(
    run: Path = typer.Argument(..., help="Run directory."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """What a run holds: queries by category; attempts, passes and failures per teacher."""
    from hubtools.status import status as run_status

    result = run_status(run)
    print(json.dumps(result.to_dict(), indent=2) if as_json else result.render())
