"""Contractors' permits (P14): listed by a guard; made, renewed and taken back by a supervisor."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from edge.api import replies as r
from edge.api.auth import Access
from edge.api.replies import AUTH, BODY, errors
from edge.api.bodies import PermitBody, RenewBody, ReturnBody
from edge.api.child import RemoteServices
from edge.api.tokens import Caller

PermitId = Annotated[str, Path(pattern=r"^pm-[0-9a-f]{10}$")]


def make_router(svc: RemoteServices, auth: Access) -> APIRouter:
    router = APIRouter(tags=["permits"])

    @router.get("/permits", response_model=list[r.Permit], responses=errors(*AUTH, 422, 503))
    async def permits(who: Caller = Depends(auth.guard), returned: bool = False):
        return await svc.permits.listing(include_returned=returned)

    @router.post("/permits", status_code=201, response_model=r.Permit, responses=errors(*AUTH, 409, *BODY, 503))
    async def create_permit(body: PermitBody, who: Caller = Depends(auth.supervisor)):
        """P14: a contractor's card with areas, validity and deposit."""
        return await svc.permits.create(credential=body.credential, holder=body.holder, name=body.name,
                                  company=body.company, areas=body.areas,
                                  valid_from=body.valid_from.timestamp() if body.valid_from else None,
                                  valid_until=body.valid_until.timestamp(), deposit=body.deposit, by=who.person,
                                  now=svc.now(), role=who.role)

    @router.post("/permits/{permit}/renew", response_model=r.Permit,
                 responses=errors(*AUTH, 404, 409, *BODY, 503))
    async def renew_permit(permit: PermitId, body: RenewBody, who: Caller = Depends(auth.supervisor)):
        return await svc.permits.renew(permit, body.valid_until.timestamp(), body.reason, who.person, svc.now(),
                                       role=who.role)

    @router.post("/permits/{permit}/return", response_model=r.Permit,
                 responses=errors(*AUTH, 404, 409, *BODY, 503))
    async def return_permit(permit: PermitId, body: ReturnBody, who: Caller = Depends(auth.supervisor)):
        return await svc.permits.take_back(permit, body.refunded, who.person, svc.now(), role=who.role)

    return router

