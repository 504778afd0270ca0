"""Users, organizations and access tokens of the local Hub.

Tokens look like the Hub's (`hf_...`) and only their SHA-256 is stored, so a
copied `auth.sqlite` gives nobody access. Access rules mirror the Hub's:
private repos are invisible (404) to tokens without access and ask anonymous
callers to log in (401); writing needs a write token of the namespace's owner
or of a member of the organization.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from hubtools.hub.errors import HubHTTPError, repo_not_found
from hubtools.hub.storage import check_name

_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (name TEXT PRIMARY KEY, kind TEXT NOT NULL, created REAL);
CREATE TABLE IF NOT EXISTS members (org TEXT NOT NULL, user TEXT NOT NULL, PRIMARY KEY (org, user));
CREATE TABLE IF NOT EXISTS tokens (
    hash TEXT PRIMARY KEY, user TEXT NOT NULL, role TEXT NOT NULL, name TEXT, created REAL
);
"""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling; `None` stands for anonymous."""

    name: str
    role: str  # "read" | "write"
    token_name: str
    orgs: tuple[str, ...] = field(default_factory=tuple)

    def owns(self, namespace: str) -> bool:
        return namespace == self.name or namespace in self.orgs


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Accounts:
    def __init__(self, root: Path):
        self.path = Path(root) / "auth.sqlite"
        self._local = threading.local()
        with self._db() as db:
            db.executescript(_SCHEMA)

    def _db(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            self._local.conn = conn
        return conn

    def _ensure(self, db: sqlite3.Connection, name: str, kind: str) -> None:
        check_name(name, f"{'organization' if kind == 'org' else 'user'} name")
        row = db.execute("SELECT kind FROM accounts WHERE name=?", (name,)).fetchone()
        if row is None:
            db.execute("INSERT INTO accounts VALUES (?,?,?)", (name, kind, time.time()))
        elif row[0] != kind:
            raise ValueError(
                f"'{name}' already exists as {'an org' if row[0] == 'org' else 'a user'}"
            )

    def create_token(
        self, user: str, orgs: list[str] = (), write: bool = False, name: str | None = None
    ) -> str:
        """Create the user (and orgs, with the user as member) if needed; return a new token."""
        token = "hf_" + secrets.token_urlsafe(30).replace("-", "a").replace("_", "b")
        db = self._db()
        with db:
            db.execute("BEGIN IMMEDIATE")
            self._ensure(db, user, "user")
            for org in orgs:
                self._ensure(db, org, "org")
                db.execute("INSERT OR IGNORE INTO members VALUES (?,?)", (org, user))
            role = "write" if write else "read"
            db.execute(
                "INSERT INTO tokens VALUES (?,?,?,?,?)",
                (_hash(token), user, role, name or f"{user}-{role}", time.time()),
            )
        return token

    def authenticate(self, authorization: str | None) -> Principal | None:
        """The caller of a request; an unknown token is a 401, as on the Hub."""
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        db = self._db()
        row = db.execute(
            "SELECT user, role, name FROM tokens WHERE hash=?", (_hash(token.strip()),)
        ).fetchone()
        if row is None:
            raise HubHTTPError(401, "Invalid credentials in Authorization header", "Unauthorized")
        orgs = tuple(r[0] for r in db.execute("SELECT org FROM members WHERE user=?", (row[0],)))
        return Principal(name=row[0], role=row[1], token_name=row[2], orgs=orgs)

    def namespace_exists(self, name: str) -> bool:
        return (
            self._db().execute("SELECT 1 FROM accounts WHERE name=?", (name,)).fetchone()
            is not None
        )


def check_read(principal: Principal | None, namespace: str, private: bool, repo_id: str) -> None:
    if not private:
        return
    if principal is None:
        raise repo_not_found(repo_id, status=401)
    if not principal.owns(namespace):
        raise repo_not_found(repo_id, status=404)


def check_write(principal: Principal | None, namespace: str, private: bool, repo_id: str) -> None:
    check_read(principal, namespace, private, repo_id)
    if principal is None:
        raise HubHTTPError(401, "You must be authenticated to write to this repo", "Unauthorized")
    if not principal.owns(namespace):
        raise HubHTTPError(403, f"You don't have the rights to write to {repo_id}", "Forbidden")
    if principal.role != "write":
        raise HubHTTPError(
            403, f"This token is read-only: use a write token to write to {repo_id}", "Forbidden"
        )
