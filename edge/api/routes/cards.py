"""Visitor cards taken back at the perimeter exit (P27)."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from edge.api import replies as r
from edge.api.auth import Access
from edge.api.bodies import CardBody
from edge.api.child import RemoteServices
from edge.api.problems import ApiError
from edge.api.replies import AUTH, BODY, errors
from edge.api.tokens import Caller
from edge.link.messages import BADGE

CardRef = Annotated[str, Path(pattern=BADGE, description="the card as a reader reads it: badge:<UPPER HEX>")]


def make_router(svc: RemoteServices, auth: Access) -> APIRouter:
    router = APIRouter(tags=["cards"])

    @router.post("/cards/{credential}/returned", response_model=r.CardReturned,
                 responses=errors(*AUTH, 404, *BODY, 503))
    async def returned(credential: CardRef, body: CardBody, who: Caller = Depends(auth.guard)):
        """P27: the guard took the visitor card at the exit that holds it: journaled, the card consumed until it
        is issued again, that door opened once."""
        done = await svc.card_returned(credential, who.person, body.reason, who.role)
        if done is None:
            raise ApiError(404, "no_card_held", f"no exit is held for the card {credential!r}")
        return done

    return router
