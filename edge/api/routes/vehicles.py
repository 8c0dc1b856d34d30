"""Vehicles at a barrier (P26): the cars held for the guard, admitting one once, registering a plate to a visit."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from drivers.line_protocol import normalize_plate
from edge.api import replies as r
from edge.api.auth import Access
from edge.api.bodies import AdmitBody, VehicleBody
from edge.api.child import RemoteServices
from edge.api.problems import ApiError
from edge.api.replies import AUTH, BODY, errors
from edge.api.routes.visits import VisitId
from edge.api.tokens import Caller


def plate_of(text: str, loc: list[str]) -> str:
    """The plate as a camera's line is normalized (upper case, no spaces), or 422 naming the field."""
    plate = normalize_plate(text)
    if plate is None:
        raise ApiError(422, "bad_plate", [{"loc": loc, "type": "bad_plate",
                                           "msg": "not a licence plate: letters and digits, up to 16 characters"}])
    return plate


def make_router(svc: RemoteServices, auth: Access) -> APIRouter:
    router = APIRouter(tags=["vehicles"])

    @router.get("/vehicles/held", response_model=list[r.HeldVehicle], responses=errors(*AUTH, 503))
    async def held(who: Caller = Depends(auth.guard)):
        """P26: the cars waiting at a barrier for the guard, oldest first."""
        return await svc.held_vehicles(who.role)

    @router.post("/vehicles/{plate}/admit", response_model=r.VehicleAdmitted,
                 responses=errors(*AUTH, 404, *BODY, 503))
    async def admit(plate: Annotated[str, Path(min_length=1, max_length=40)], body: AdmitBody,
                    who: Caller = Depends(auth.guard)):
        """P26: the guard lets a held car through, with the reason: its barrier opens once, journaled."""
        p = plate_of(plate, ["path", "plate"])
        admitted = await svc.admit_vehicle(p, who.person, body.reason, who.role)
        if admitted is None:
            raise ApiError(404, "no_held_vehicle", f"no vehicle {p!r} is held at a barrier")
        return admitted

    @router.post("/visits/{visit}/vehicle", response_model=r.VehicleRegistered,
                 responses=errors(*AUTH, 404, 409, *BODY, 503))
    async def register(visit: VisitId, body: VehicleBody, who: Caller = Depends(auth.guard)):
        """P26: the visit's pass covers this plate until the pass ends. Opens nothing: the next read goes through."""
        return await svc.register_vehicle(visit, plate_of(body.plate, ["body", "plate"]), who.person, who.role)

    return router
