"""Guard tours (P21): tonight's rounds for guards; a route changed by a supervisor, journaled."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, Field

from edge.api.auth import Access
from edge.api.bodies import Reason, Strict
from edge.api.child import RemoteServices
from edge.api.replies import AUTH, BODY, errors
from edge.api.tokens import Caller

NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
TourName = Annotated[str, Path(pattern=NAME)]


class TourBody(Strict):
    checkpoints: list[Annotated[str, Field(pattern=NAME)]] = Field(
        min_length=1, max_length=50, description="checkpoint readers of this gate, in the order a round walks them")
    start: str = Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$", description="the night's first round, HH:MM site time")
    limit_min: float = Field(gt=0, le=720, description="minutes a round may take from its first tap")
    reason: Reason


class TourTap(BaseModel):
    checkpoint: str
    at: str
    holder: str | None
    order: str = Field(description="in_order | out_of_order | repeat")


class TourRound(BaseModel):
    round: int
    due: str
    window_until: str = Field(description="the round not started by then is missed (tour_missed)")
    state: str = Field(description="planned | open | running | completed | missed | incomplete | untracked (over before the gate tracked the tour)")
    late: bool = Field(description="over its time limit (tour_late)")
    holder: str | None = Field(description="the guard who started it")
    checkpoints: list[str]
    started: str | None
    ended: str | None
    skipped: list[str] = Field(description="checkpoints passed over and not tapped since")
    timeline: list[TourTap]


class Tour(BaseModel):
    tour: str
    night: str = Field(description="the local date the night begins on")
    checkpoints: list[str]
    start: str
    end: str
    window_min: float
    limit_min: float
    rounds: list[TourRound]
    event_seq: int | None = Field(None, description="PUT: the seq of the journaled `tour.changed`")


def make_router(svc: RemoteServices, auth: Access) -> APIRouter:
    router = APIRouter(tags=["tours"])

    @router.get("/tours", response_model=list[Tour], responses=errors(*AUTH, 503))
    async def tours(who: Caller = Depends(auth.guard)):
        """P21: each route with tonight's rounds (the night under way, else the next), each round's state and
        its timeline of taps."""
        return await svc.tours.tonight()

    @router.put("/tours/{name}", response_model=Tour, responses=errors(*AUTH, 404, *BODY, 503))
    async def change(name: TourName, body: TourBody, who: Caller = Depends(auth.supervisor)):
        """P21: a new route (checkpoints, first round's time, time limit), journaled as `tour.changed` with
        the supervisor and the reason; tonight's rounds not yet started follow it. 404 `no_such_tour`; 422
        when a checkpoint is not a checkpoint reader of this gate."""
        return await svc.tours.change(name, body.checkpoints, body.start, body.limit_min, body.reason,
                                      who.person, who.role)

    return router
