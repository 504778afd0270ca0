"""`hubtools space ...`: deploy the inspection Space to the Hub, or serve it here."""

from __future__ import annotations

import json

import typer

from hubtools.cli._app import space_app

DatasetsOption = typer.Option(
    ..., "--datasets", help="Releases to show, ORG/NAME@REVISION,... (the parallel datasets)."
)
EndpointOption = typer.Option(
    None, "--endpoint", help="Hub URL (default: HF_ENDPOINT, else huggingface.co)."
)
TokenOption = typer.Option(
    None, "--token", help="Hub token (default: HF_TOKEN, else `hf auth login`'s); never saved."
)


@space_app.command("deploy")
def space_deploy(
    repo: str = typer.Option(..., "--repo", help="Space repo, ORG/NAME (created if missing)."),
    datasets: str = DatasetsOption,
    endpoint: str | None = EndpointOption,
    private: bool = typer.Option(False, "--private", help="Create the Space private."),
    token: str | None = TokenOption,
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Create or update a Gradio Space showing the datasets, in one commit."""
    from hubtools.space.deploy import deploy

    result = deploy(repo, datasets, endpoint=endpoint, private=private, token=token)
    print(json.dumps(result.to_dict(), indent=2) if as_json else result)


@space_app.command("run")
def space_run(
    datasets: str = DatasetsOption,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(7860, "--port", help="Port to listen on."),
    endpoint: str | None = EndpointOption,
    token: str | None = TokenOption,
) -> None:
    """Serve the Space app locally over the datasets (read lazily from the Hub)."""
    from hubtools.space.deploy import run

    run(datasets, host=host, port=port, endpoint=endpoint, token=token)
