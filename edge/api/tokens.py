"""API tokens: shown once when made, kept only as SHA-256 hashes, each for one person and one role."""
from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass

from edge.store import Store

ROLES = ("guard", "supervisor", "central")
PREFIX = "gk_"


@dataclass(frozen=True, slots=True)
class Caller:
    token_id: str
    person: str
    role: str


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def add(store: Store, person: str, role: str) -> tuple[str, str]:
    """(token id, the token itself: printed once, never stored)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if not person or len(person) > 64:
        raise ValueError("person: 1-64 characters")
    token = PREFIX + secrets.token_urlsafe(32)
    tid = uuid.uuid4().hex[:12]
    with store.tx() as c:
        c.execute("INSERT INTO tokens(id, person, role, hash, created) VALUES(?,?,?,?,?)",
                  (tid, person, role, _hash(token), time.time()))
    return tid, token


def revoke(store: Store, tid: str) -> bool:
    with store.tx() as c:
        return c.execute("UPDATE tokens SET revoked=? WHERE id=? AND revoked IS NULL", (time.time(), tid)).rowcount == 1


def listing(store: Store) -> list[tuple]:
    return store.conn.execute("SELECT id, person, role, created, revoked FROM tokens ORDER BY created").fetchall()


def check(store: Store, token: str) -> Caller | None:
    if not token.startswith(PREFIX) or len(token) > 200:
        return None
    row = store.conn.execute("SELECT id, person, role FROM tokens WHERE hash=? AND revoked IS NULL",
                             (_hash(token),)).fetchone()
    return Caller(*row) if row else None


class Tokens:
    """The tokens as the API reads them: whom one names, and whether it still stands."""

    def __init__(self, store: Store):
        self.store = store

    def check(self, token: str) -> Caller | None:
        return check(self.store, token)

    def live(self, token_id: str) -> bool:
        """False once revoked (or gone): its console sessions end at once."""
        row = self.store.conn.execute("SELECT revoked FROM tokens WHERE id=?", (token_id,)).fetchone()
        return row is not None and row[0] is None
