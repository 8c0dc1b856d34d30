"""The local API (SPEC §4), served by the daemon itself on its event loop.

Every caller has a bearer token naming a person and a role; 401 without a valid one, 403 for the wrong
role. A supervisor may do what a guard may; `central` only what names it. Every action is journaled with
the person and the reason (P19, P20). Bad input is a 4xx whose JSON names the field; nothing is
half-applied.
"""
from __future__ import annotations

import time
from collections import defaultdict, deque
from typing import Annotated, Literal

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from edge.api.tokens import Caller, check
from edge.model import Mode

MAX_BODY = 64 * 1024
OVERRIDES_PER_MINUTE = 6  # per person and door (P20: rate-limited)

RANK = {"guard": 1, "supervisor": 2}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OpenBody(Strict):
    reason: Annotated[str, Field(min_length=3, max_length=200)]


class ReleaseBody(Strict):
    reason: Annotated[str, Field(min_length=3, max_length=200)]
    host_confirmed: Literal[True] = Field(description="the guard phoned the host, who confirmed")


class ModeBody(Strict):
    mode: Literal["normal", "lockdown", "fire"]
    scope: Literal["gate", "site"] = "gate"
    reason: Annotated[str, Field(min_length=3, max_length=200)]


def create_app(d) -> FastAPI:
    """`d` is the running daemon: its gate, outputs, link and inputs."""
    app = FastAPI(title="Gatekeeper local API", version="1", description="SPEC §4: guards, supervisors, central.")
    recent: dict[tuple[str, str], deque] = defaultdict(deque)

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        size = request.headers.get("content-length")
        if size is not None and (not size.isdigit() or int(size) > MAX_BODY):
            return JSONResponse({"detail": f"request body over {MAX_BODY} bytes"}, status_code=413)
        return await call_next(request)

    def caller(request: Request) -> Caller:
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        who = check(d.store, token.strip()) if scheme.lower() == "bearer" else None
        if who is None:
            raise HTTPException(401, "a valid bearer token is needed", headers={"WWW-Authenticate": "Bearer"})
        return who

    def role(minimum: str):
        def dep(who: Caller = Depends(caller)) -> Caller:
            if RANK.get(who.role, 0) < RANK[minimum]:
                raise HTTPException(403, f"this needs the {minimum} role")
            return who
        return dep

    guard = role("guard")  # supervisor-only actions are checked in the route: they depend on the body

    @app.get("/health")
    def health():
        return {"status": "ok", "mode": d.gate.mode.value}

    @app.get("/status")
    def status(who: Caller = Depends(guard)):
        return {"mode": d.gate.mode.value, "devices": {n: h.value for n, h in d.board.health.items()},
                "allowlist_version": int(d.store.meta("allowlist_version", "0")),
                "outbox_depth": d.link.outbox.depth if d.link else None,
                "fail_modes": {door.name: door.fail_mode for door in d.cfg.doors}}

    @app.get("/events")
    def events(who: Caller = Depends(guard), after_seq: Annotated[int, Query(ge=0)] = 0,
               limit: Annotated[int, Query(ge=1, le=1000)] = 100):
        source = f"acs/{d.cfg.site.id}/{d.cfg.site.gate}"
        return [e.envelope(source, d.store.epoch) for e in d.gate.journal.entries(after_seq, limit)]

    @app.get("/occupancy")
    def occupancy(who: Caller = Depends(guard)):
        from edge.store.journal import rfc3339
        rows = d.store.conn.execute("SELECT holder, category, area, since, party FROM presence ORDER BY area").fetchall()
        people = [{"holder": h, "category": c, "area": a, "since": rfc3339(s), "party": p} for h, c, a, s, p in rows]
        return {"count": sum(p["party"] for p in people), "people": people}

    @app.post("/doors/{door}/open")
    async def open_door(door: str, body: OpenBody, who: Caller = Depends(guard)):
        if door not in d.outputs.doors:
            raise HTTPException(404, f"no door named {door!r}")
        window = recent[(who.person, door)]
        now = time.monotonic()
        while window and now - window[0] > 60:
            window.popleft()
        if len(window) >= OVERRIDES_PER_MINUTE:
            raise HTTPException(429, f"at most {OVERRIDES_PER_MINUTE} overrides a minute at one door")
        window.append(now)
        d.gate.record("override.opened", {"door": door, "person": who.person, "role": who.role,
                                          "reason": body.reason})
        opened = await d.outputs.pulse(door)
        if d.link:
            d.link.kick.set()
        return {"door": door, "opened": opened}

    @app.post("/visits/{visit}/signoff")
    def signoff(visit: Annotated[str, Path(max_length=64)], who: Caller = Depends(caller)):
        if who.role not in ("supervisor", "central"):
            raise HTTPException(403, "a sign-off comes from a supervisor or the central system")
        entry = d.gate.sign_off(visit, None, who.person)
        if d.link:
            d.link.kick.set()
        return {"visit": visit, "signed_off": True, "new": entry is not None}

    @app.post("/visits/{visit}/release")
    async def release(visit: Annotated[str, Path(max_length=64)], body: ReleaseBody, who: Caller = Depends(guard)):
        door = d.gate.release(visit, who.person, body.reason)
        if door is None:
            raise HTTPException(404, f"no held exit for visit {visit!r}")
        opened = await d.outputs.pulse(door.name, door.direction.value)
        if d.link:
            d.link.kick.set()
        return {"visit": visit, "door": door.name, "opened": opened}

    @app.post("/mode")
    def set_mode(body: ModeBody, who: Caller = Depends(guard)):
        target = Mode(body.mode)
        if target is Mode.FIRE and body.scope == "site":
            raise HTTPException(422, [{"loc": ["body", "scope"], "msg": "fire mode is per gate, never site-wide"}])
        if target is not Mode.LOCKDOWN and who.role != "supervisor":
            raise HTTPException(403, "only a supervisor ends a lockdown or changes fire mode")
        if d.gate.mode is Mode.FIRE and target is not Mode.FIRE and getattr(d, "fire_input", False):
            raise HTTPException(409, "the fire input is still active")
        entry = d.gate.set_mode(target, who.person, body.reason, scope=body.scope)
        if d.link:
            if body.scope == "site" and target is not Mode.FIRE:
                d.link.publish_site_mode(target.value, who.person, body.reason)
            d.link.kick.set()
        return {"mode": d.gate.mode.value, "changed": entry is not None}

    return app
