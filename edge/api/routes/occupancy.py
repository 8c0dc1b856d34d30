"""P35: a supervisor corrects a limited area's count (the counts themselves are in GET /occupancy)."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from edge.api import replies as r
from edge.api.auth import Access
from edge.api.bodies import OccupancyBody
from edge.api.child import RemoteServices
from edge.api.replies import AUTH, BODY, errors
from edge.api.tokens import Caller

AreaName = Annotated[str, Path(min_length=1, max_length=200)]


def make_router(svc: RemoteServices, auth: Access) -> APIRouter:
    router = APIRouter()

    @router.post("/areas/{area:path}/occupancy", tags=["status"], response_model=r.OccupancyCorrected,
                 responses=errors(*AUTH, 404, *BODY, 503))
    async def correct(area: AreaName, body: OccupancyBody, who: Caller = Depends(auth.supervisor)):
        """P35: how many people the area (and the areas below it) holds now, by a supervisor's count: journaled
        as `occupancy.corrected` with the supervisor and the reason, and applied by the site's other gates too.
        The area is its path (`site/lab`, the slash as is or as %2F). 404 `no_such_area` for an area not in the
        tree, `no_occupancy_limit` for one without a max_occupancy (nothing is counted there to correct)."""
        return await svc.correct_occupancy(area, body.count, who.person, who.role, body.reason)

    return router
