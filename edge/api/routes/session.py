"""Signing in to the console: a token traded for a session cookie, who is signed in, signing out."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from edge.api import replies as r
from edge.api.auth import COOKIE, SESSION_S, Access, Sessions
from edge.api.bodies import SessionBody
from edge.api.child import RemoteServices
from edge.api.problems import ApiError
from edge.api.replies import AUTH, BODY, errors
from edge.api.tokens import Caller


def make_router(svc: RemoteServices, auth: Access, sessions: Sessions, secure_cookie: bool) -> APIRouter:
    router = APIRouter(tags=["console"])

    @router.post("/session", response_model=r.SignedIn, responses=errors(401, *BODY, 503))
    async def open_session(body: SessionBody, response: Response):
        """Trade a token for the console's HttpOnly, SameSite=Strict session cookie."""
        who = await svc.tokens.check(body.token.strip())
        if who is None:
            raise ApiError(401, "invalid_token", [{"loc": ["body", "token"], "msg": "not a valid token",
                                                   "type": "invalid"}])
        response.set_cookie(COOKIE, sessions.open(who), max_age=SESSION_S, httponly=True, samesite="strict",
                            secure=secure_cookie, path="/")
        return {"person": who.person, "role": who.role}

    @router.get("/session", response_model=r.Session, responses=errors(*AUTH, 503))
    async def whoami(who: Caller = Depends(auth.caller)):
        s = svc.site
        return {"person": who.person, "role": who.role, "site": s.site, "gate": s.gate, "doors": s.doors,
                "walkin": s.walkin}

    @router.delete("/session", response_model=r.SignedOut)
    async def close_session(request: Request, response: Response):
        sessions.close(request.cookies.get(COOKIE))
        response.delete_cookie(COOKIE, path="/")
        return {"signed_out": True}

    return router
