"""Who is calling: a bearer token, or the console's session cookie (SPEC §4).

The console trades its token for an HttpOnly, SameSite=Strict cookie once, so the token is not kept in
the page. A cookie is sent by the browser on its own, so a state-changing request on a cookie must also
carry `X-Requested-With`, a header no cross-site form can add.
"""
from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Callable

from fastapi import Depends, Request
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer

from edge.api.problems import ApiError
from edge.api.tokens import Caller
from edge.api.child import Remote

COOKIE = "gk_session"
SESSION_S = 12 * 3600  # one shift
MAX_SESSIONS = 256
SAFE = {"GET", "HEAD", "OPTIONS"}
RANK = {"guard": 1, "supervisor": 2}  # a supervisor may do what a guard may; `central` neither

# What the OpenAPI description names as the two ways in (either one will do). auto_error=False: `identify`
# decides, so a wrong credential is 401 and a cookie change without X-Requested-With 403, as before.
BEARER = HTTPBearer(scheme_name="bearer", auto_error=False,
                    description="A token from `gatekeeper tokens add`: `Authorization: Bearer gk_...`.")
SESSION = APIKeyCookie(name=COOKIE, scheme_name="console_session", auto_error=False,
                       description="The console's session, set by POST /session. A request that changes "
                                   "something on it must carry an `X-Requested-With` header (any value).")


class Sessions:
    def __init__(self, tokens: Remote):  # the gate's edge.api.tokens.Tokens, awaited
        self.tokens = tokens
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

    async def get(self, sid: str) -> Caller | None:
        found = self.live.get(sid)
        if found is None or found[1] <= time.monotonic():
            self.live.pop(sid, None)
            return None
        who = found[0]
        if not await self.tokens.live(who.token_id):  # a revoked token ends its sessions at once
            self.live.pop(sid, None)
            return None
        return who


async def bearer(tokens: Remote, request: Request) -> Caller | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return await tokens.check(token.strip()) if scheme.lower() == "bearer" else None


async def identify(tokens: Remote, sessions: Sessions, request: Request) -> Caller:
    """401 without a valid credential; 403 for a cookie-borne change without X-Requested-With."""
    if request.headers.get("authorization"):
        who = await bearer(tokens, request)
    else:
        sid = request.cookies.get(COOKIE)
        who = await sessions.get(sid) if sid else None
        if who is not None and request.method not in SAFE and not request.headers.get("x-requested-with"):
            raise ApiError(403, "requested_with_missing",
                           "a change through the console session needs the X-Requested-With header")
    if who is None:
        raise ApiError(401, "unauthorized", "a valid bearer token or console session is needed",
                       headers={"WWW-Authenticate": "Bearer"})
    return who


@dataclass(frozen=True)
class Access:
    """The dependencies a route names its callers with: anyone with a credential, a guard, a supervisor."""

    caller: Callable[..., Caller]
    guard: Callable[..., Caller]
    supervisor: Callable[..., Caller]


def access(tokens: Remote, sessions: Sessions) -> Access:
    # async on purpose: FastAPI runs a plain def dependency on a worker thread of its own
    async def caller(request: Request, _bearer: HTTPAuthorizationCredentials | None = Depends(BEARER),
                     _session: str | None = Depends(SESSION)) -> Caller:
        return await identify(tokens, sessions, request)

    def role(minimum: str):
        async def dep(who: Caller = Depends(caller)) -> Caller:
            if RANK.get(who.role, 0) < RANK[minimum]:
                raise ApiError(403, "forbidden", f"this needs the {minimum} role")
            return who
        return dep

    return Access(caller, role("guard"), role("supervisor"))
