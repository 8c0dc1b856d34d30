"""The journal over the API: a page of events, and the live feed (server-sent events)."""
from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from edge.api import replies as r
from edge.api.auth import Access
from edge.api.replies import AUTH, errors
from edge.api.child import RemoteServices
from edge.api.tokens import Caller

STREAM_POLL_S = 1.0
STREAM_KEEPALIVE_S = 15.0
SEQ_MAX = 2**63 - 1  # SQLite's integers: a larger after_seq would overflow the query, not page


def make_router(svc: RemoteServices, auth: Access) -> APIRouter:
    router = APIRouter(tags=["events"])

    @router.get("/events", response_model=list[r.Event], responses=errors(*AUTH, 422, 503))
    async def events(who: Caller = Depends(auth.guard), after_seq: Annotated[int, Query(ge=0, le=SEQ_MAX)] = 0,
                     limit: Annotated[int, Query(ge=1, le=1000)] = 100):
        # P34: a supervisor's page includes `alarm.duress`; a guard's never does
        return [e.envelope(svc.source, svc.epoch) for e in await svc.events(after_seq, limit, who.role, duress=True)]

    @router.get("/events/stream", response_class=StreamingResponse, responses={
        200: {"content": {"text/event-stream": {"schema": {"type": "string"}}},
              "description": "Server-sent events: `id` = seq, `data` = the event's envelope (as GET /events), "
                             "`: keepalive` comments when quiet"}, **errors(*AUTH, 422, 503)})
    async def stream(request: Request, who: Caller = Depends(auth.guard),
                     after_seq: Annotated[int | None, Query(ge=0, le=SEQ_MAX)] = None):
        """Server-sent events, one journal entry each (`id` = seq): from `after_seq`, from the
        `Last-Event-ID` a reconnecting browser sends, or from now. Never an `alarm.duress` (P34), whoever asks."""
        last = request.headers.get("last-event-id", "")
        if last.isdigit() and len(last) < 19:
            start = int(last)
        else:
            start = after_seq if after_seq is not None else await svc.last_seq()
        return StreamingResponse(feed(svc, request, start, who.role), media_type="text/event-stream",
                                 headers={"X-Accel-Buffering": "no"})

    return router


async def feed(svc: RemoteServices, request: Request, seq: int, role: str | None = None):
    quiet = 0.0
    async with svc.appends() as grew:
        yield "retry: 2000\n\n"
        while not svc.stopping and not await request.is_disconnected():
            grew.clear()
            batch = await svc.events(seq, 200, role)  # P29: a guard's view
            for e in batch:
                yield f"id: {e.seq}\ndata: {e.envelope_json(svc.source, svc.epoch)}\n\n"
                seq = e.seq
            if batch:
                quiet = 0.0
                continue
            try:  # woken by an append here; another process's (a CLI's) is seen at the timeout
                await asyncio.wait_for(grew.wait(), STREAM_POLL_S)
            except asyncio.TimeoutError:
                quiet += STREAM_POLL_S
            if quiet >= STREAM_KEEPALIVE_S:
                quiet = 0.0
                yield ": keepalive\n\n"
