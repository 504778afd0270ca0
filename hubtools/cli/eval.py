"""`hubtools eval`: score a model on the paper's benchmarks; `hubtools eval compare`."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from hubtools.checks import check_writable
from hubtools.cli._app import _PLAIN, WaitOption, app
from hubtools.errors import EXIT_PARTIAL, UsageError

# A group whose callback is the eval itself: `hubtools eval --endpoint ... --out DIR` runs it,
# `hubtools eval compare DIR...` runs the sub-verb (the callback then only passes through).
eval_app = typer.Typer(
    help="Evaluate a model on AIME, MATH500, LiveCodeBench, GPQA, IFEval (see README).",
    invoke_without_command=True,
    **_PLAIN,
)
app.add_typer(eval_app, name="eval")


@eval_app.callback()
def eval(
    ctx: typer.Context,
    endpoint: str | None = typer.Option(
        None, "--endpoint", help="The model's server (TGI, vLLM, SGLang, OpenAI-style)."
    ),
    model: str | None = typer.Option(None, "--model", help="The served model name."),
    benchmarks: str | None = typer.Option(
        None, "--benchmarks", help="aime_2024,aime_2025,math500,livecodebench,gpqa_diamond,ifeval."
    ),
    out: Path | None = typer.Option(None, "--out", help="Folder for results (and the eval run)."),
    samples: str | None = typer.Option(
        None, "--samples", help="Samples per problem: N for all, or aime_2024=64,math500=4."
    ),
    temperature: float | None = typer.Option(None, "--temperature", min=0, help="Default 0.6."),
    top_p: float | None = typer.Option(None, "--top-p", min=0, max=1, help="Default 0.95."),
    max_new_tokens: int | None = typer.Option(
        None, "--max-new-tokens", min=1, help="Default 49152."
    ),
    config: Path | None = typer.Option(None, "--config", help="YAML with these settings."),
    limit: int | None = typer.Option(
        None, "--limit", min=1, help="Only the first N problems of each benchmark."
    ),
    api_key_env: str | None = typer.Option(
        None, "--api-key-env", help="Variable holding the endpoint's key."
    ),
    max_concurrency: int | None = typer.Option(
        None, "--max-concurrency", min=1, help="Requests in flight (default 256)."
    ),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
    as_json: bool = typer.Option(False, "--json", help="Print results.json."),
    wait: bool = WaitOption,
    push_to_hub: str | None = typer.Option(
        None, "--push-to-hub", help="ORG/MODEL: add the results to its card's model-index."
    ),
) -> None:
    """Sample every problem k times, verify each sample, write results.json and results.md.

    The paper's settings are the defaults (README, Evaluating a student); an interrupted
    eval resumes with the same command, and more --samples sends only the new ones.
    """
    if ctx.invoked_subcommand is not None:
        return
    from hubtools.eval.settings import resolve_settings

    settings = resolve_settings(
        config=config, endpoint=endpoint, model=model, benchmarks=benchmarks, out=out,
        samples=samples, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
        limit=limit, api_key_env=api_key_env, max_concurrency=max_concurrency,
    )  # fmt: skip
    if settings.out.exists() and not settings.out.is_dir():
        raise UsageError(f"--out {settings.out} is a file; give a folder for the results")
    check_writable(settings.out, "--out")
    if push_to_hub is not None:
        from hubtools.eval.push import check_access

        check_access(push_to_hub)  # before hours of sampling: the repo exists, the token writes
    from hubtools.eval.stage import evaluate

    result = evaluate(settings, progress=not quiet, wait=wait)
    print(json.dumps(result.to_dict(), indent=2) if as_json else result)
    if not result.complete:  # the endpoint stopped or verdicts are missing: run it again
        raise typer.Exit(EXIT_PARTIAL)  # (and a partial eval is never pushed)
    if push_to_hub is not None:
        from hubtools.eval.push import push_results

        url = push_results(settings.out / "results.json", push_to_hub)
        typer.echo(f"results added to the model card of {push_to_hub}: {url}", err=True)


@eval_app.command("compare")
def compare(
    dirs: list[Path] = typer.Argument(..., help="Eval folders (each with results.json)."),
    out: Path | None = typer.Option(None, "--out", help="Write the markdown table here."),
    figure: Path | None = typer.Option(None, "--figure", help="Draw it here (.png/.svg/.pdf)."),
    as_json: bool = typer.Option(False, "--json", help="Print the compared numbers as JSON."),
) -> None:
    """Benchmarks as rows, one column per model: avg@k and mean length (the paper's Table 1)."""
    from hubtools.eval.compare import compare as run_compare

    result = run_compare(dirs, out=out, figure=figure)
    print(json.dumps(result.to_dict(), indent=2) if as_json else result.markdown, end="")
