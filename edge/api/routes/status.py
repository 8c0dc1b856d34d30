"""Reading the gate: liveness and readiness, metrics, its status, who is on site, the held exits."""
from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import PlainTextResponse

from edge.api.auth import Access
from edge.api.child import RemoteServices
from edge.api.tokens import Caller


def make_router(svc: RemoteServices, auth: Access) -> APIRouter:
    router = APIRouter()

    @router.get("/health", tags=["status"])
    async def health():
        """Liveness (it answers) and readiness: `degraded` while a device is down or the database holds
        writes back (SPEC §6: decisions go on, their events wait in memory)."""
        return await svc.health()

    @router.get("/metrics", tags=["status"], response_class=PlainTextResponse)
    async def metrics():
        return PlainTextResponse(await svc.metrics(), media_type="text/plain; version=0.0.4")

    @router.get("/status", tags=["status"])
    async def status(who: Caller = Depends(auth.guard)):
        return await svc.status()

    @router.get("/occupancy", tags=["status"])
    async def occupancy(who: Caller = Depends(auth.guard)):
        """The muster list (P16): who is on site now, where, since when."""
        return await svc.occupancy()

    @router.get("/exits/held", tags=["visits"])
    async def held_exits(who: Caller = Depends(auth.guard)):
        """Visitors waiting at an exit for their host's sign-off (P9)."""
        return await svc.held_exits()

    return router
