"""The typer apps every verb module registers on, the shared options, and ``main``."""

from __future__ import annotations

import sys

import typer

from hubtools.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    HubtoolsError,
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
space_app = typer.Typer(
    help="The Gradio Space that shows parallel datasets side by side.", **_PLAIN
)
app.add_typer(space_app, name="space")


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
