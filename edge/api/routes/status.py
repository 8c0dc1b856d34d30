"""Reading the gate: liveness and readiness, metrics, its status, who is on site, the held exits."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from fastapi.responses import PlainTextResponse

from edge.api import replies as r
from edge.api.auth import Access
from edge.api.child import RemoteServices
from edge.api.replies import AUTH, errors
from edge.api.tokens import Caller

METRICS_TYPE = "text/plain; version=0.0.4"


def make_router(svc: RemoteServices, auth: Access) -> APIRouter:
    router = APIRouter()

    @router.get("/health", tags=["status"], response_model=r.Health, responses=errors(503))
    async def health():
        """Liveness (it answers) and readiness: `degraded` while a device is down or the database holds
        writes back (SPEC §6: decisions go on, their events wait in memory)."""
        return await svc.health()

    # response_class Response, not PlainTextResponse: FastAPI would describe the error replies as text too
    @router.get("/metrics", tags=["status"], response_class=Response, responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text format "
              "(version 0.0.4)"}, **errors(503)})
    async def metrics():
        return PlainTextResponse(await svc.metrics(), media_type=METRICS_TYPE)

    @router.get("/status", tags=["status"], response_model=r.Status, responses=errors(*AUTH, 503))
    async def status(who: Caller = Depends(auth.guard)):
        return await svc.status()

    @router.get("/occupancy", tags=["status"], response_model=r.Occupancy, responses=errors(*AUTH, 503))
    async def occupancy(who: Caller = Depends(auth.guard)):
        """The muster list (P16): who is on site now, where, since when. A guard sees a private guest (P29) as
        `private`, without name or company, under an alias that POST /muster/{holder}/safe accepts."""
        return await svc.occupancy(who.role)

    @router.get("/exits/held", tags=["visits"], response_model=list[r.HeldExit], responses=errors(*AUTH, 503))
    async def held_exits(who: Caller = Depends(auth.guard)):
        """Visitors waiting at an exit for their host's sign-off (P9)."""
        return await svc.held_exits(who.role)

    @router.get("/overstays", tags=["visits"], response_model=list[r.Overstay], responses=errors(*AUTH, 503))
    async def overstays(who: Caller = Depends(auth.guard)):
        """P36: visitors and contractors this gate let in who are still on site past the end of their pass or
        permit (a walk-in: past the end of visiting hours), each raised once as `visit.overstay`."""
        return await svc.overstays(who.role)

    return router
