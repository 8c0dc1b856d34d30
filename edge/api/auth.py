"""Who is calling: a bearer token, or the console's session cookie (SPEC §4).

The console trades its token for an HttpOnly, SameSite=Strict cookie once, so the token is not kept in
the page. A cookie is sent by the browser on its own, so a state-changing request on a cookie must also
carry `X-Requested-With`, a header no cross-site form can add.
"""
from __future__ import annotations

import secrets
import time

from fastapi import HTTPException, Request

from edge.api.tokens import Caller, check

COOKIE = "gk_session"
SESSION_S = 12 * 3600  # one shift
MAX_SESSIONS = 256
SAFE = {"GET", "HEAD", "OPTIONS"}


class Sessions:
    def __init__(self, store):
        self.store = store
        self.live: dict[str, tuple[Caller, float]] = {}

    def open(self, who: Caller) -> str:
        now = time.monotonic()
        self.live = {k: v for k, v in self.live.items() if v[1] > now}
        if len(self.live) >= MAX_SESSIONS:  # the oldest goes: a flood of sign-ins cannot grow memory
            del self.live[min(self.live, key=lambda k: self.live[k][1])]
        sid = secrets.token_urlsafe(32)
        self.live[sid] = (who, now + SESSION_S)
        return sid

    def close(self, sid: str | None) -> None:
        if sid:
            self.live.pop(sid, None)

    def get(self, sid: str) -> Caller | None:
        found = self.live.get(sid)
        if found is None or found[1] <= time.monotonic():
            self.live.pop(sid, None)
            return None
        who = found[0]
        # a revoked token ends its sessions at once
        row = self.store.conn.execute("SELECT revoked FROM tokens WHERE id=?", (who.token_id,)).fetchone()
        if row is None or row[0] is not None:
            self.live.pop(sid, None)
            return None
        return who


def bearer(store, request: Request) -> Caller | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return check(store, token.strip()) if scheme.lower() == "bearer" else None


def identify(store, sessions: Sessions, request: Request) -> Caller:
    """401 without a valid credential; 403 for a cookie-borne change without X-Requested-With."""
    if request.headers.get("authorization"):
        who = bearer(store, request)
    else:
        sid = request.cookies.get(COOKIE)
        who = sessions.get(sid) if sid else None
        if who is not None and request.method not in SAFE and not request.headers.get("x-requested-with"):
            raise HTTPException(403, "a change through the console session needs the X-Requested-With header")
    if who is None:
        raise HTTPException(401, "a valid bearer token or console session is needed",
                            headers={"WWW-Authenticate": "Bearer"})
    return who
