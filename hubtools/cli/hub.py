"""`hubtools hub ...`: serve a local Hub, make its tokens, print its environment."""

from __future__ import annotations

from pathlib import Path

import typer

from hubtools.cli._app import hub_app, token_app


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
