"""HTTP errors the local Hub answers, shaped like the Hub's own.

The official clients turn `X-Error-Code` into typed exceptions
(`RepositoryNotFoundError`, `RevisionNotFoundError`, ...), and on an http://
endpoint they only do so when the code is explicit, so every error carries one
where the Hub would send one.
"""

from __future__ import annotations


class HubHTTPError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code
        self.headers = dict(headers or {})


def bad_request(message: str) -> HubHTTPError:
    return HubHTTPError(400, message, "BadRequest")


def too_large(message: str) -> HubHTTPError:
    return HubHTTPError(413, message, "PayloadTooLarge")


def conflict(message: str) -> HubHTTPError:
    return HubHTTPError(409, message, "Conflict")


def repo_not_found(repo_id: str, status: int = 404) -> HubHTTPError:
    return HubHTTPError(
        status,
        f"Repository Not Found for url: {repo_id}. Make sure the repo id and your token are right.",
        "RepoNotFound",
    )


def revision_not_found(revision: str) -> HubHTTPError:
    return HubHTTPError(404, f"Invalid rev id: {revision}", "RevisionNotFound")


def entry_not_found(path: str, commit: str | None = None) -> HubHTTPError:
    headers = {"X-Repo-Commit": commit} if commit else {}
    return HubHTTPError(404, f"Entry not found: {path}", "EntryNotFound", headers)
