"""Acting on doors: a guard's one-off opening (P20) and the gate's mode (P15, P16)."""
from __future__ import annotations

import time
from collections import defaultdict, deque
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path

from edge.api.auth import Access
from edge.api.bodies import ModeBody, OpenBody
from edge.api.child import RemoteServices
from edge.api.tokens import Caller
from edge.core.model import Mode
from edge.core.modes import ModeRefused

OVERRIDES_PER_MINUTE = 6  # per person and door (P20: rate-limited)


def make_router(svc: RemoteServices, auth: Access) -> APIRouter:
    router = APIRouter(tags=["doors"])
    recent: dict[tuple[str, str], deque] = defaultdict(deque)

    @router.post("/doors/{door}/open")
    async def open_door(door: Annotated[str, Path(max_length=64)], body: OpenBody,
                        who: Caller = Depends(auth.guard)):
        """P20: open a door once, with the reason; at most six a minute per person and door."""
        if not svc.has_door(door):
            raise HTTPException(404, f"no door named {door!r}")
        window = recent[(who.person, door)]
        now = time.monotonic()
        while window and now - window[0] > 60:
            window.popleft()
        if len(window) >= OVERRIDES_PER_MINUTE:
            raise HTTPException(429, f"at most {OVERRIDES_PER_MINUTE} overrides a minute at one door")
        window.append(now)
        return {"door": door, "opened": await svc.override(door, who.person, who.role, body.reason)}

    @router.post("/mode")
    async def set_mode(body: ModeBody, who: Caller = Depends(auth.guard)):
        """P15: a guard starts a lockdown; only a supervisor ends one. P16: fire mode on and off by a
        supervisor, never off while the fire input is active; fire is per gate (scope site is 422)."""
        target = Mode(body.mode)
        if target is Mode.FIRE and body.scope == "site":
            raise HTTPException(422, [{"loc": ["body", "scope"], "msg": "fire mode is per gate, never site-wide",
                                       "type": "value_error"}])
        try:
            return await svc.request_mode(target.value, who.person, who.role, body.reason, body.scope)
        except ModeRefused as e:
            raise HTTPException(e.status, e.detail) from None

    return router
