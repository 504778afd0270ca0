"""The `hubtools` command line: parses arguments and calls the stage functions.

Every verb is a function of the same name in the library; a `HubtoolsError`
becomes one line on stderr and a non-zero exit code, never a traceback. One module per
group of verbs registers them on the apps of ``_app``.
"""

from hubtools.cli import hub, queries, stages, release, space  # noqa: F401, I001  (pipeline order)
from hubtools.cli._app import app, main

__all__ = ["app", "main"]
