"""The local API and the guard console (SPEC §4), served by the daemon itself.

Every caller has a bearer token (or the console's session made from one) naming a person and a role; 401
without a valid one, 403 for the wrong role. A supervisor may do what a guard may; `central` only what
names it. Every action is journaled with the person and the reason (P19, P20). Bad input is a 4xx whose
JSON names the field; nothing is half-applied.

It runs in the API process (edge/api/child.py), so its CPU is not spent in front of a badge; routes and
dependencies are `async def` (a plain `def` would run on FastAPI's worker threads) and reach the gate only by
awaiting `RemoteServices`, whose calls run on the gate's loop. Anything slow here (drawing a QR) goes to a
thread.
"""
from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse

from edge.api.auth import Sessions, access
from edge.api.child import RemoteServices
from edge.api.routes import alarms, doors, events, people, permits, session, status, visits
from edge.errors import Refused

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
CONSOLE = Path(__file__).parent / "console"
CONSOLE_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
# the console's own scripts and styles, by name: nothing else of the folder (the page itself is served at /)
CONSOLE_FILES = {p.name: CONSOLE_TYPES[p.suffix] for p in CONSOLE.iterdir() if p.suffix in CONSOLE_TYPES}


def create_app(svc: RemoteServices, *, secure_cookie: bool = False) -> FastAPI:
    """The API over the gate's services; `secure_cookie` when it is served over TLS."""
    app = FastAPI(title="Gatekeeper local API", version="1",
                  description="SPEC §4: guards, supervisors and the central system. Bearer tokens from "
                              "`gatekeeper tokens add`; the console signs in through POST /session.")
    sessions = Sessions(svc.tokens)
    auth = access(svc.tokens, sessions)

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        size = request.headers.get("content-length")
        if size is not None and (not size.isdigit() or int(size) > MAX_BODY):
            return JSONResponse({"detail": f"request body over {MAX_BODY} bytes"}, status_code=413)
        if size is None and request.headers.get("transfer-encoding"):
            return JSONResponse({"detail": "send a Content-Length (no chunked bodies)"}, status_code=411)
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.exception_handler(sqlite3.Error)
    async def database_refused(request: Request, exc: sqlite3.Error):
        # a full disk or a locked file: the transaction rolled back, so nothing of the request was applied
        log.error("%s %s: the database refused the change: %s", request.method, request.url.path, exc)
        return JSONResponse({"detail": f"the gate's database refused the change ({exc}); nothing was applied, "
                                       "try again"}, status_code=503)

    @app.exception_handler(Refused)
    async def desk_refused(request: Request, exc: Refused):
        # a desk's refusal, shaped as FastAPI's own validation errors when a field is at fault
        detail = exc.message if exc.field is None else [
            {"loc": ["body", *exc.field.split(".")], "msg": exc.message, "type": exc.reason or "refused"}]
        return JSONResponse({"detail": detail}, status_code=exc.status)

    app.include_router(session.make_router(svc, auth, sessions, secure_cookie))
    app.include_router(status.make_router(svc, auth))
    app.include_router(people.make_router(svc, auth))
    app.include_router(events.make_router(svc, auth))
    app.include_router(doors.make_router(svc, auth))
    app.include_router(visits.make_router(svc, auth))
    app.include_router(permits.make_router(svc, auth))
    app.include_router(alarms.make_router(svc, auth))

    @app.get("/", include_in_schema=False)
    async def console():
        return FileResponse(CONSOLE / "index.html", media_type="text/html; charset=utf-8",
                            headers={"Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                                     "frame-ancestors 'none'"})

    @app.get("/console/{name}", include_in_schema=False)
    async def console_file(name: str):
        if name not in CONSOLE_FILES:
            raise HTTPException(404, "no such file")
        return FileResponse(CONSOLE / name, media_type=CONSOLE_FILES[name])

    return app
