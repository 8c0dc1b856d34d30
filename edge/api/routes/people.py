"""Who holders are: the console's live feed names the people its events carry as holder ids."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import StringConstraints

from edge.api import replies as r
from edge.api.auth import Access
from edge.api.replies import AUTH, errors
from edge.api.child import RemoteServices
from edge.api.tokens import Caller
from edge.store.people import MAX_HOLDERS

HolderId = Annotated[str, StringConstraints(min_length=1, max_length=64)]


def make_router(svc: RemoteServices, auth: Access) -> APIRouter:
    router = APIRouter(tags=["status"])

    # 400 too: 200 holders of 64 characters, percent-encoded, make a request line the HTTP server itself
    # refuses, in plain text, before this API sees it (a malformed request is the API's own Problem)
    # `private` only where it is true (P29): the other fields have no default, so they always come
    @router.get("/people", response_model=dict[str, r.Person], response_model_exclude_defaults=True, responses={**errors(*AUTH, 422, 503), 400: {
        **errors(400)[400], "content": {"text/plain": {"schema": {"type": "string"}}}}})
    async def people(holder: Annotated[list[HolderId], Query(min_length=1, max_length=MAX_HOLDERS)],
                     who: Caller = Depends(auth.guard)):
        """`?holder=h-1&holder=h-2`: each holder's `name`, `company` and `category`, from the walk-ins
        registered at this gate, then its contractor permits, then the allow-list. Holders nobody knows are
        left out; 1 to 200 holders a request. A private guest (P29) is marked `private`, and to a guard has
        no name or company."""
        return await svc.people(holder, who.role)

    return router
