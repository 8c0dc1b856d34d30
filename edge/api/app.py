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

import json
import logging
import sqlite3
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from edge.api.auth import Sessions, access
from edge.api.child import RemoteServices
from edge.api.problems import CODES, ApiError, problem
from edge.api.routes import alarms, cards, doors, events, people, permits, session, status, tours, vehicles, visits
from edge.api.routes import occupancy  # P35
from edge.core.modes import ModeRefused
from edge.errors import Refused

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
CONSOLE = Path(__file__).parent / "console"
CONSOLE_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
# the console's own scripts and styles, by name: nothing else of the folder (the page itself is served at /)
CONSOLE_FILES = {p.name: CONSOLE_TYPES[p.suffix] for p in CONSOLE.iterdir() if p.suffix in CONSOLE_TYPES}
DOCS = Path(__file__).parent / "docs"
# Swagger UI's own files (swagger-ui-dist, vendored with its licence): a gate cannot reach a CDN
DOCS_FILES = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css", "docs.js": "text/javascript",
              "LICENSE": "text/plain; charset=utf-8", "NOTICE": "text/plain; charset=utf-8"}
CSP = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"


def error_words() -> str:
    """The API's error codes in the console's languages, as a script: English from CODES, Chinese from
    console/errors-zh.json; the console shows a reply's `code` in the guard's language."""
    zh = json.loads((CONSOLE / "errors-zh.json").read_text(encoding="utf-8"))
    return "window.GK_ERRORS = " + json.dumps({"en": CODES, "zh": zh}, ensure_ascii=False) + ";\n"


def create_app(svc: RemoteServices, *, secure_cookie: bool = False) -> FastAPI:
    """The API over the gate's services; `secure_cookie` when it is served over TLS."""
    app = FastAPI(title="Gatekeeper local API", version="1",
                  description="SPEC §4: guards, supervisors and the central system. Bearer tokens from "
                              "`gatekeeper tokens add`; the console signs in through POST /session. Every "
                              "error is `{\"detail\", \"code\"}`: `code` is stable (edge/api/problems.py).",
                  docs_url=None, redoc_url=None)  # both would load their scripts from a CDN: /docs is served below
    sessions = Sessions(svc.tokens)
    auth = access(svc.tokens, sessions)

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        size = request.headers.get("content-length")
        if size is not None and (not size.isdigit() or int(size) > MAX_BODY):
            return problem(413, f"request body over {MAX_BODY} bytes", "body_too_large")
        if size is None and request.headers.get("transfer-encoding"):
            return problem(411, "send a Content-Length (no chunked bodies)", "length_required")
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.exception_handler(sqlite3.Error)
    async def database_refused(request: Request, exc: sqlite3.Error):
        # a full disk or a locked file: the transaction rolled back, so nothing of the request was applied
        log.error("%s %s: the database refused the change: %s", request.method, request.url.path, exc)
        return problem(503, f"the gate's database refused the change ({exc}); nothing was applied, try again",
                       "database_refused")

    @app.exception_handler(Refused)
    async def desk_refused(request: Request, exc: Refused):
        # a desk's refusal, shaped as FastAPI's own validation errors when a field is at fault
        detail = exc.message if exc.field is None else [
            {"loc": ["body", *exc.field.split(".")], "msg": exc.message, "type": exc.reason or "refused"}]
        return problem(exc.status, detail, exc.reason)

    @app.exception_handler(ModeRefused)
    async def mode_refused(request: Request, exc: ModeRefused):
        return problem(exc.status, exc.detail, exc.code)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        # FastAPI's and Starlette's own (an unknown path, a wrong method) as well as the routes'
        return problem(exc.status_code, exc.detail, getattr(exc, "code", None), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        return problem(422, jsonable_encoder(exc.errors()), "invalid")

    @app.exception_handler(ConnectionError)
    async def gate_gone(request: Request, exc: ConnectionError):
        # the gate said stop (or is gone) while the request waited on it: it may be back in a moment
        return problem(503, f"the gate is not answering ({exc}); try again", "gate_stopping")

    @app.exception_handler(Exception)
    async def failed(request: Request, exc: Exception):
        # still logged with its traceback by the server; the caller gets a body it can read
        return problem(500, "the gate failed to answer this request; it is logged", "internal_error")

    app.include_router(session.make_router(svc, auth, sessions, secure_cookie))
    app.include_router(status.make_router(svc, auth))
    app.include_router(people.make_router(svc, auth))
    app.include_router(events.make_router(svc, auth))
    app.include_router(doors.make_router(svc, auth))
    app.include_router(visits.make_router(svc, auth))
    app.include_router(permits.make_router(svc, auth))
    app.include_router(alarms.make_router(svc, auth))
    app.include_router(tours.make_router(svc, auth))  # P21
    app.include_router(cards.make_router(svc, auth))  # P27
    app.include_router(vehicles.make_router(svc, auth))  # P26
    app.include_router(occupancy.make_router(svc, auth))  # P35

    @app.get("/", include_in_schema=False)
    async def console():
        return FileResponse(CONSOLE / "index.html", media_type="text/html; charset=utf-8",
                            headers={"Content-Security-Policy": CSP})

    errors_js = error_words()

    @app.get("/console/i18n-errors.js", include_in_schema=False)
    async def console_error_words():
        return Response(errors_js, media_type="text/javascript; charset=utf-8")

    @app.get("/console/{name}", include_in_schema=False)
    async def console_file(name: str):
        if name not in CONSOLE_FILES:
            raise ApiError(404, "not_found", "no such file")
        return FileResponse(CONSOLE / name, media_type=CONSOLE_FILES[name])

    @app.get("/docs", include_in_schema=False)
    async def docs():
        """Swagger UI over /openapi.json, every file from this daemon (its start script too: no inline
        script, so the CSP keeps `script-src 'self'`)."""
        return FileResponse(DOCS / "docs.html", media_type="text/html; charset=utf-8",
                            headers={"Content-Security-Policy": CSP})

    @app.get("/docs/{name}", include_in_schema=False)
    async def docs_file(name: str):
        if name not in DOCS_FILES:
            raise ApiError(404, "not_found", "no such file")
        return FileResponse(DOCS / name, media_type=DOCS_FILES[name])

    return app
