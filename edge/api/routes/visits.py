"""Visits: walk-ins registered (P13), their passes, areas amended (P4), signed off and released (P9)."""
from __future__ import annotations

import asyncio
import re
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response

from edge.api import replies as r
from edge.api.auth import Access
from edge.api.bodies import AmendBody, ReleaseBody, WalkinBody
from edge.api.child import RemoteServices
from edge.api.problems import ApiError
from edge.api.replies import AUTH, BODY, errors
from edge.api.tokens import Caller
from edge.link.messages import BADGE
from edge.passes.qr import png_bytes

VisitId = Annotated[str, Path(pattern=r"^[0-9a-f]{16,32}$")]
VisitKey = Annotated[str, Path(min_length=1, max_length=64)]  # any pass's visit, walk-in or not


def make_router(svc: RemoteServices, auth: Access) -> APIRouter:
    router = APIRouter(tags=["visits"])

    def desk():
        if svc.desk is None:
            raise ApiError(503, "walkin_not_set_up",
                           "walk-in registration is not set up on this gate ([walkin] in its config)")
        return svc.desk

    async def registered(visit: str) -> dict:
        found = await desk().visit(visit)
        if found is None:
            raise ApiError(404, "no_such_visit", f"no visit {visit!r} registered at this gate")
        return found

    @router.post("/visits", status_code=201, response_model=r.VisitWithPass,
                 responses=errors(*AUTH, 409, *BODY, 503))
    async def register(body: WalkinBody, who: Caller = Depends(auth.guard)):
        """P13: a walk-in, after the host confirmed; the pass is signed by this gate's key. The same ID document
        registered here earlier the same day (site time) is 409 `already_registered_today`, unless `repeat`."""
        v = body.visitor
        visit = await desk().register(name=v.name, company=v.company, id_number=v.id_number, purpose=body.purpose,
                                host=body.host, host_confirmation=body.host_confirmation, areas=body.areas,
                                party=body.party, guard=who.person, now=svc.now(), repeat=body.repeat,
                                role=who.role)
        return {**visit, "pass_png": f"/visits/{visit['visit']}/pass.png"}

    @router.get("/visits", response_model=list[r.Visit], responses=errors(*AUTH, 422, 503))
    async def visits(who: Caller = Depends(auth.guard), limit: Annotated[int, Query(ge=1, le=500)] = 50):
        found = [await desk().visit(i) for i in await svc.recent_visit_ids(limit)]
        return [v for v in found if v is not None]  # a visit gone between the two reads is not listed

    @router.get("/visits/{visit}", response_model=r.Visit, responses=errors(*AUTH, 404, 422, 503))
    async def get_visit(visit: VisitId, who: Caller = Depends(auth.guard)):
        return await registered(visit)

    @router.get("/visits/{visit}/pass.png", response_class=Response, responses={
        200: {"content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
              "description": "the pass's QR code, to print"}, **errors(*AUTH, 404, 422, 503)})
    async def pass_png(visit: VisitId, who: Caller = Depends(auth.guard)):
        """The visit's current pass as a printable QR code."""
        png = await asyncio.to_thread(png_bytes, (await registered(visit))["pass"], box_size=8)
        return Response(png, media_type="image/png")

    @router.post("/visits/{visit}/areas", response_model=r.VisitWithPass,
                 responses=errors(*AUTH, 404, 409, *BODY, 503))
    async def amend(visit: VisitId, body: AmendBody, who: Caller = Depends(auth.supervisor)):
        """P4: only a supervisor changes a visit's areas: a new pass, the old one revoked, journaled."""
        found = await desk().amend(visit, body.areas, body.reason, who.person, svc.now(), role=who.role)
        return {**found, "pass_png": f"/visits/{visit}/pass.png"}

    @router.post("/visits/{visit}/signoff", response_model=r.SignedOff, responses=errors(*AUTH, 422, 503))
    async def signoff(visit: VisitKey, who: Caller = Depends(auth.caller)):
        """P9: the host signed the visit off (a supervisor or the central system says so). Opens nothing."""
        if who.role not in ("supervisor", "central"):
            raise ApiError(403, "forbidden", "a sign-off comes from a supervisor or the central system")
        if visit.startswith("badge:") and not re.fullmatch(BADGE, visit):  # P25: keyed as a reader reads it
            raise ApiError(422, "invalid", [{"loc": ["path", "visit"], "type": "value_error",
                                             "msg": "a badge holder's sign-off names the ref badge:<UPPER HEX>"}])
        return {"visit": visit, "signed_off": True, "new": await svc.sign_off(visit, who.person, who.role)}

    @router.post("/visits/{visit}/release", response_model=r.Released, responses=errors(*AUTH, 404, *BODY, 503))
    async def release(visit: VisitKey, body: ReleaseBody, who: Caller = Depends(auth.guard)):
        """P9: the guard phoned the host; the held exit opens once."""
        released = await svc.release(visit, who.person, body.reason, who.role)
        if released is None:
            raise ApiError(404, "no_held_exit", f"no held exit for visit {visit!r}")
        return released

    return router
