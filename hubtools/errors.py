"""The exceptions hubtools raises for things a user can fix.

Every stage raises a subclass of :class:`HubtoolsError` with a message that is
one line saying what went wrong and how to fix it; the CLI prints that line and
exits non-zero instead of showing a traceback.

Exit codes, the same for every verb (the README's table is this one):

====  ==================================================================
0     done
1     the operation failed (a server, the Hub, a busy shard, an empty release)
2     the command line, a config or an input file is wrong: fix it and re-run
3     partial: some teachers finished, others stopped (``generate``); an eval wrote
      results for what it stored (``eval``)
130   interrupted (Ctrl-C); every stage resumes where it stopped
====  ==================================================================
"""

from __future__ import annotations

EXIT_FAILED, EXIT_USAGE, EXIT_PARTIAL, EXIT_INTERRUPTED = 1, 2, 3, 130


class HubtoolsError(Exception):
    """Base class: a failure with a one-line, user-facing message."""

    exit_code = EXIT_FAILED


class UsageError(HubtoolsError):
    """Bad arguments or configuration given by the user."""

    exit_code = EXIT_USAGE


class InputFileError(UsageError):
    """A bad record in an input file; carries where it is so the user can fix it."""

    def __init__(self, path: str, line: int | None, message: str):
        self.path, self.line, self.reason = path, line, message
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {message}")


class RunStoreError(HubtoolsError):
    """A run directory is corrupt or used inconsistently."""


class NotARunError(RunStoreError):
    """The path given as a run is missing, a file, or a directory that is not a run."""

    exit_code = EXIT_USAGE


class RunBusyError(RunStoreError):
    """Another live process holds the shard (or run) this stage would write."""


class EmptyReleaseError(HubtoolsError):
    """A build would write a release with no rows (and the user did not ask for one)."""


class LocalHubError(HubtoolsError):
    """The local Hub could not be started or used."""


class PublishError(HubtoolsError):
    """A release could not be published; the repo is left at its previous version."""


class DataSourceError(HubtoolsError):
    """A Hub dataset (a query source or a benchmark) cannot be found, read or mapped."""
