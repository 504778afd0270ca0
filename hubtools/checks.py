"""Checks the CLI makes before any work: cheap, one-line errors, no stage imported.

A user mistake must be refused before a run is created, a file is written or a server
is started; these are the checks several verbs share.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hubtools.errors import UsageError


def parse_shard(text: str) -> tuple[int, int]:
    """``i/N`` with ``0 <= i < N``, or a one-line UsageError (checked before any work)."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise UsageError(f"--shard must look like i/N (e.g. 0/8), got {text!r}") from None
    if not 0 <= index < count:
        raise UsageError(f"--shard {text}: need 0 <= i < N (shards are numbered 0 to N-1)")
    return index, count


def check_writable(path: Path, option: str) -> None:
    """A path this command creates or writes into: its nearest existing folder takes files.

    Probed by making (and removing) a temporary folder there, since permission bits do
    not tell (root, read-only or virtual file systems). A file in the way is left to the
    stage, which says what it expected there.
    """
    import tempfile

    folder = path
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        if folder != path:
            raise UsageError(f"{option} {path}: {folder} is a file, not a folder")
        return
    try:
        tempfile.TemporaryDirectory(dir=folder, prefix=".hubtools-probe-").cleanup()
    except OSError as err:
        raise UsageError(f"{option} {path}: cannot write in {folder} ({err.strerror})") from None


def check_queries(run: Path) -> None:
    """A stage that reads a run's queries: the run exists and holds some."""
    from hubtools.run import Run

    if not Run.open(run).categories():  # NotARunError says what the path is instead
        raise UsageError(
            f"{run} holds no queries; add some with `hubtools queries add FILE --run {run}` "
            "or `hubtools queries clean`"
        )


def is_int(value: Any) -> bool:
    """An integer from a config or JSON file (``True`` is not one)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A number from a config or JSON file (``True`` is not one)."""
    return isinstance(value, int | float) and not isinstance(value, bool)
