"""The exceptions hubtools raises for things a user can fix.

Every stage raises a subclass of :class:`HubtoolsError` with a message that is
one line saying what went wrong and how to fix it; the CLI prints that line and
exits non-zero instead of showing a traceback.
"""

from __future__ import annotations


class HubtoolsError(Exception):
    """Base class: a failure with a one-line, user-facing message."""

    exit_code = 1


class UsageError(HubtoolsError):
    """Bad arguments or configuration given by the user."""

    exit_code = 2


class InputFileError(UsageError):
    """A bad record in an input file; carries where it is so the user can fix it."""

    def __init__(self, path: str, line: int | None, message: str):
        self.path, self.line, self.reason = path, line, message
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {message}")


class RunStoreError(HubtoolsError):
    """A run directory is missing, corrupt or used inconsistently."""


class LocalHubError(HubtoolsError):
    """The local Hub could not be started or used."""


class PublishError(HubtoolsError):
    """A release could not be published; the repo is left at its previous version."""


class DataSourceError(HubtoolsError):
    """A Hub dataset (a query source or a benchmark) cannot be found, read or mapped."""
