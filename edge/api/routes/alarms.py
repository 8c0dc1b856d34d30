"""Alarms a guard acknowledges (P17, P18, P19) and the muster a guard checks people off at (P16)."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from edge.api import replies as r
from edge.api.auth import Access
from edge.api.replies import AUTH, BODY, errors
from edge.api.bodies import AckBody, SafeBody
from edge.api.child import RemoteServices
from edge.api.tokens import Caller

SEQ_MAX = 2**63 - 1  # SQLite's integers
Holder = Annotated[str, Path(min_length=1, max_length=64)]


def make_router(svc: RemoteServices, auth: Access) -> APIRouter:
    router = APIRouter()

    @router.get("/alarms", tags=["alarms"], response_model=list[r.Alarm], responses=errors(*AUTH, 503))
    async def alarms(who: Caller = Depends(auth.guard)):
        """The alarms nobody has acknowledged yet, newest first, at most 100: whoever journaled them (this
        gate, or a tool such as an import). `priority` is the event's, else high for a forced door."""
        return await svc.alarms(who.role)

    @router.post("/alarms/{seq}/ack", tags=["alarms"], response_model=r.Acknowledged,
                 responses=errors(*AUTH, 404, 409, *BODY, 503))
    async def acknowledge(seq: Annotated[int, Path(ge=1, le=SEQ_MAX)], body: AckBody | None = None,
                          who: Caller = Depends(auth.guard)):
        """Acknowledge an alarm: journaled as `alarm.acknowledged` with the person and the note; it leaves
        every console's list. 404 `no_such_alarm`; 409 `already_acknowledged` names who and when."""
        note = body.note if body else None
        return await svc.acknowledge_alarm(seq, who.person, who.role, note)

    @router.post("/muster/{holder}/safe", tags=["status"], response_model=r.MarkedSafe,
                 responses=errors(*AUTH, 404, 409, *BODY, 503))
    async def mark_safe(holder: Holder, body: SafeBody | None = None,
                        who: Caller = Depends(auth.guard)):
        """P16: the person is at the assembly point; `unaccounted` in GET /occupancy falls. Only while
        mustering (409 `not_mustering`), only for someone on site (404 `not_on_site`); again is a no-op."""
        reason = body.reason if body else None
        return await svc.mark_safe(holder, who.person, who.role, reason)

    return router
