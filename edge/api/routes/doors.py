"""Acting on doors: a guard's one-off opening (P20) and the gate's mode (P15, P16)."""
from __future__ import annotations

import time
from collections import defaultdict, deque
from typing import Annotated

from fastapi import APIRouter, Depends, Path

from edge.api import replies as r
from edge.api.auth import Access
from edge.api.bodies import ModeBody, OpenBody
from edge.api.child import RemoteServices
from edge.api.problems import ApiError
from edge.api.replies import AUTH, BODY, errors
from edge.api.tokens import Caller
from edge.core.model import Mode

OVERRIDES_PER_MINUTE = 6  # per person and door (P20: rate-limited)


def make_router(svc: RemoteServices, auth: Access) -> APIRouter:
    router = APIRouter(tags=["doors"])
    recent: dict[tuple[str, str], deque] = defaultdict(deque)

    @router.post("/doors/{door}/open", response_model=r.Opened, responses=errors(*AUTH, 404, *BODY, 429, 503))
    async def open_door(door: Annotated[str, Path(max_length=64)], body: OpenBody,
                        who: Caller = Depends(auth.guard)):
        """P20: open a door once, with the reason; at most six a minute per person and door."""
        if not svc.has_door(door):
            raise ApiError(404, "no_such_door", f"no door named {door!r}")
        window = recent[(who.person, door)]
        now = time.monotonic()
        while window and now - window[0] > 60:
            window.popleft()
        if len(window) >= OVERRIDES_PER_MINUTE:
            raise ApiError(429, "rate_limited", f"at most {OVERRIDES_PER_MINUTE} overrides a minute at one door")
        window.append(now)
        return {"door": door, "opened": await svc.override(door, who.person, who.role, body.reason)}

    @router.post("/mode", response_model=r.ModeChange, responses=errors(*AUTH, 409, *BODY, 503))
    async def set_mode(body: ModeBody, who: Caller = Depends(auth.guard)):
        """P15: a guard starts a lockdown; only a supervisor ends one. P16: fire mode on and off by a
        supervisor, never off while the fire input is active; fire is per gate (scope site is 422). P28: a
        drill (gate or site) by a supervisor: the muster runs, no door is freed; `normal` ends it."""
        target = Mode(body.mode)
        if target is Mode.FIRE and body.scope == "site":
            raise ApiError(422, "fire_is_per_gate", [{"loc": ["body", "scope"], "type": "value_error",
                                                      "msg": "fire mode is per gate, never site-wide"}])
        # a refusal by the mode rules (edge.core.modes.ModeRefused) carries its own status and code
        return await svc.request_mode(target.value, who.person, who.role, body.reason, body.scope)

    return router
