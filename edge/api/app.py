"""The local API and the guard console (SPEC §4), served by the daemon itself on its event loop.

Every caller has a bearer token (or the console's session made from one) naming a person and a role; 401
without a valid one, 403 for the wrong role. A supervisor may do what a guard may; `central` only what
names it. Every action is journaled with the person and the reason (P19, P20). Bad input is a 4xx whose
JSON names the field; nothing is half-applied.

Routes are `async def` on purpose: they run on the loop that decides, so they never race it for the
database connection or the gate's state; anything slow (drawing a QR) goes to a thread.
"""
from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections import defaultdict, deque
from pathlib import Path as FilePath
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, StreamingResponse

from edge.api.auth import COOKIE, SESSION_S, Sessions, identify
from edge.api.bodies import (
    AmendBody, ModeBody, OpenBody, PermitBody, ReleaseBody, RenewBody, ReturnBody, SessionBody, WalkinBody,
)
from edge.api.tokens import Caller, check
from edge.core.model import Mode
from edge.core.modes import ModeRefused
from edge.passes.qr import png_bytes
from edge.store.journal import rfc3339
from edge.errors import Refused

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
OVERRIDES_PER_MINUTE = 6  # per person and door (P20: rate-limited)
STREAM_POLL_S = 1.0
STREAM_KEEPALIVE_S = 15.0
CONSOLE = FilePath(__file__).parent / "console"
CONSOLE_FILES = {"console.js": "text/javascript", "console.css": "text/css", "i18n.js": "text/javascript"}

RANK = {"guard": 1, "supervisor": 2}
VisitId = Annotated[str, Path(pattern=r"^[0-9a-f]{16,32}$")]
PermitId = Annotated[str, Path(pattern=r"^pm-[0-9a-f]{10}$")]
SEQ_MAX = 2**63 - 1  # SQLite's integers: a larger after_seq would overflow the query, not page


def refused(e: Refused) -> HTTPException:
    if e.field is None:
        return HTTPException(e.status, e.message)
    return HTTPException(e.status, [{"loc": ["body", *e.field.split(".")], "msg": e.message,
                                     "type": e.reason or "refused"}])


def create_app(d) -> FastAPI:
    """`d` is the running daemon: its gate, outputs, link, desks and inputs."""
    app = FastAPI(title="Gatekeeper local API", version="1",
                  description="SPEC §4: guards, supervisors and the central system. Bearer tokens from "
                              "`gatekeeper tokens add`; the console signs in through POST /session.")
    recent: dict[tuple[str, str], deque] = defaultdict(deque)
    sessions = Sessions(d.store)
    secure_cookie = bool(d.cfg.api and d.cfg.api.tls_cert_file)

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

    def caller(request: Request) -> Caller:
        return identify(d.store, sessions, request)

    def role(minimum: str):
        def dep(who: Caller = Depends(caller)) -> Caller:
            if RANK.get(who.role, 0) < RANK[minimum]:
                raise HTTPException(403, f"this needs the {minimum} role")
            return who
        return dep

    guard, supervisor = role("guard"), role("supervisor")

    @app.exception_handler(sqlite3.Error)
    async def database_refused(request: Request, exc: sqlite3.Error):
        # a full disk or a locked file: the transaction rolled back, so nothing of the request was applied
        log.error("%s %s: the database refused the change: %s", request.method, request.url.path, exc)
        return JSONResponse({"detail": f"the gate's database refused the change ({exc}); nothing was applied, "
                                       "try again"}, status_code=503)

    # -- sign-in ----------------------------------------------------------------------------------
    @app.post("/session", tags=["console"])
    async def open_session(body: SessionBody, response: Response):
        """Trade a token for the console's HttpOnly, SameSite=Strict session cookie."""
        who = check(d.store, body.token.strip())
        if who is None:
            raise HTTPException(401, [{"loc": ["body", "token"], "msg": "not a valid token", "type": "invalid"}])
        response.set_cookie(COOKIE, sessions.open(who), max_age=SESSION_S, httponly=True, samesite="strict",
                            secure=secure_cookie, path="/")
        return {"person": who.person, "role": who.role}

    @app.get("/session", tags=["console"])
    async def whoami(who: Caller = Depends(caller)):
        return {"person": who.person, "role": who.role, "site": d.cfg.site.id, "gate": d.cfg.site.gate,
                "doors": [door.name for door in d.cfg.doors], "walkin": d.desk is not None}

    @app.delete("/session", tags=["console"])
    async def close_session(request: Request, response: Response):
        sessions.close(request.cookies.get(COOKIE))
        response.delete_cookie(COOKIE, path="/")
        return {"signed_out": True}

    # -- reading ----------------------------------------------------------------------------------
    @app.get("/health", tags=["status"])
    async def health():
        """Liveness (it answers) and readiness: `degraded` while a device is down or the database holds
        writes back (SPEC §6: decisions go on, their events wait in memory)."""
        held = len(d.gate.holdback.held)
        down = sorted(n for n, h in d.board.health.items() if h.value == "down")
        return {"status": "degraded" if held or down else "ok", "mode": d.gate.mode.value,
                "database": f"holding {held} writes" if held else "writable", "devices_down": down}

    @app.get("/metrics", tags=["status"], response_class=PlainTextResponse)
    async def metrics():
        return PlainTextResponse(d.gate.metrics.render(_gauges(d)), media_type="text/plain; version=0.0.4")

    @app.get("/status", tags=["status"])
    async def status(who: Caller = Depends(guard)):
        return {"mode": d.gate.mode.value, "mode_scope": d.gate.modes.state.scope,
                "devices": {n: h.value for n, h in d.board.health.items()},
                "allowlist_version": int(d.store.meta("allowlist_version", "0")),
                "outbox_depth": d.link.outbox.depth if d.link else None,
                "fail_modes": {door.name: door.fail_mode for door in d.cfg.doors},
                "fire_input": bool(d.gate.modes.fire_input), "held_exits": len(d.gate.held_exits),
                "last_seq": d.gate.journal.last_seq()}

    @app.get("/events", tags=["events"])
    async def events(who: Caller = Depends(guard), after_seq: Annotated[int, Query(ge=0, le=SEQ_MAX)] = 0,
                     limit: Annotated[int, Query(ge=1, le=1000)] = 100):
        source = f"acs/{d.cfg.site.id}/{d.cfg.site.gate}"
        return [e.envelope(source, d.store.epoch) for e in d.gate.journal.entries(after_seq, limit)]

    @app.get("/events/stream", tags=["events"], response_class=StreamingResponse)
    async def stream(request: Request, who: Caller = Depends(guard),
                     after_seq: Annotated[int | None, Query(ge=0, le=SEQ_MAX)] = None):
        """Server-sent events, one journal entry each (`id` = seq): from `after_seq`, from the
        `Last-Event-ID` a reconnecting browser sends, or from now."""
        last = request.headers.get("last-event-id", "")
        if last.isdigit() and len(last) < 19:
            start = int(last)
        else:
            start = after_seq if after_seq is not None else d.gate.journal.last_seq()
        source = f"acs/{d.cfg.site.id}/{d.cfg.site.gate}"

        async def feed():
            seq, quiet = start, 0.0
            grew = asyncio.Event()
            d.store.journal_listeners.append(grew.set)
            try:
                yield "retry: 2000\n\n"
                while not d.stop.is_set() and not await request.is_disconnected():
                    grew.clear()
                    batch = list(d.gate.journal.entries(seq, 200))
                    for e in batch:
                        yield f"id: {e.seq}\ndata: {e.envelope_json(source, d.store.epoch)}\n\n"
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
            finally:
                d.store.journal_listeners.remove(grew.set)
        return StreamingResponse(feed(), media_type="text/event-stream", headers={"X-Accel-Buffering": "no"})

    @app.get("/occupancy", tags=["status"])
    async def occupancy(who: Caller = Depends(guard)):
        """The muster list (P16): who is on site now, where, since when."""
        people = d.gate.muster()
        return {"mode": d.gate.mode.value, "count": sum(p["party"] for p in people), "people": people}

    @app.get("/exits/held", tags=["visits"])
    async def held_exits(who: Caller = Depends(guard)):
        """Visitors waiting at an exit for their host's sign-off (P9)."""
        return [{"visit": v, "holder": cred.holder, "host": cred.host, "party": cred.party, "door": door.name,
                 "reader": reader, "credential_ref": cred.ref,
                 "since": rfc3339(d.gate.held_at.get(v, 0))}
                for v, (reader, cred, door) in d.gate.held_exits.items()]

    # -- P20, P15, P16 ----------------------------------------------------------------------------
    @app.post("/doors/{door}/open", tags=["doors"])
    async def open_door(door: Annotated[str, Path(max_length=64)], body: OpenBody, who: Caller = Depends(guard)):
        """P20: open a door once, with the reason; at most six a minute per person and door."""
        if door not in d.outputs.doors:
            raise HTTPException(404, f"no door named {door!r}")
        window = recent[(who.person, door)]
        now = time.monotonic()
        while window and now - window[0] > 60:
            window.popleft()
        if len(window) >= OVERRIDES_PER_MINUTE:
            raise HTTPException(429, f"at most {OVERRIDES_PER_MINUTE} overrides a minute at one door")
        window.append(now)
        d.gate.record("override.opened", {"door": door, "person": who.person, "role": who.role,
                                          "reason": body.reason})
        opened = await d.open_door(door, cause="override")
        return {"door": door, "opened": opened}

    @app.post("/mode", tags=["doors"])
    async def set_mode(body: ModeBody, who: Caller = Depends(guard)):
        """P15: a guard starts a lockdown; only a supervisor ends one. P16: fire mode on and off by a
        supervisor, never off while the fire input is active; fire is per gate (scope site is 422)."""
        target = Mode(body.mode)
        if target is Mode.FIRE and body.scope == "site":
            raise HTTPException(422, [{"loc": ["body", "scope"], "msg": "fire mode is per gate, never site-wide",
                                       "type": "value_error"}])
        try:
            entry = d.gate.modes.request(target, who.person, who.role, body.reason, body.scope)
        except ModeRefused as e:
            raise HTTPException(e.status, e.detail) from None
        if d.link and body.scope == "site" and target is not Mode.FIRE:
            # SPEC §2: the site hears it with the version this gate just gave the change
            d.link.publish_site_mode(target.value, who.person, body.reason, d.gate.modes.state.version)
        return {"mode": d.gate.mode.value, "changed": entry is not None}

    # -- visits: P13, P4, P9 ----------------------------------------------------------------------
    def desk():
        if d.desk is None:
            raise HTTPException(503, "walk-in registration is not set up on this gate ([walkin] in its config)")
        return d.desk

    @app.post("/visits", tags=["visits"], status_code=201)
    async def register(body: WalkinBody, who: Caller = Depends(guard)):
        """P13: a walk-in, after the host confirmed; the pass is signed by this gate's key."""
        v = body.visitor
        try:
            visit = desk().register(name=v.name, company=v.company, id_number=v.id_number, purpose=body.purpose,
                                    host=body.host, host_confirmation=body.host_confirmation, areas=body.areas,
                                    party=body.party, guard=who.person, now=d.gate.clock())
        except Refused as e:
            raise refused(e) from None
        return {**visit, "pass_png": f"/visits/{visit['visit']}/pass.png"}

    @app.get("/visits", tags=["visits"])
    async def visits(who: Caller = Depends(guard), limit: Annotated[int, Query(ge=1, le=500)] = 50):
        ids = [r[0] for r in d.store.conn.execute("SELECT id FROM visits ORDER BY created DESC LIMIT ?", (limit,))]
        return [desk().visit(i) for i in ids]

    @app.get("/visits/{visit}", tags=["visits"])
    async def get_visit(visit: VisitId, who: Caller = Depends(guard)):
        found = desk().visit(visit)
        if found is None:
            raise HTTPException(404, f"no visit {visit!r} registered at this gate")
        return found

    @app.get("/visits/{visit}/pass.png", tags=["visits"], response_class=Response,
             responses={200: {"content": {"image/png": {}}}})
    async def pass_png(visit: VisitId, who: Caller = Depends(guard)):
        """The visit's current pass as a printable QR code."""
        found = desk().visit(visit)
        if found is None:
            raise HTTPException(404, f"no visit {visit!r} registered at this gate")
        png = await asyncio.to_thread(png_bytes, found["pass"], box_size=8)
        return Response(png, media_type="image/png")

    @app.post("/visits/{visit}/areas", tags=["visits"])
    async def amend(visit: VisitId, body: AmendBody, who: Caller = Depends(supervisor)):
        """P4: only a supervisor changes a visit's areas: a new pass, the old one revoked, journaled."""
        try:
            found = desk().amend(visit, body.areas, body.reason, who.person, d.gate.clock())
        except Refused as e:
            raise refused(e) from None
        return {**found, "pass_png": f"/visits/{visit}/pass.png"}

    @app.post("/visits/{visit}/signoff", tags=["visits"])
    async def signoff(visit: Annotated[str, Path(min_length=1, max_length=64)], who: Caller = Depends(caller)):
        """P9: the host signed the visit off (a supervisor or the central system says so). Opens nothing."""
        if who.role not in ("supervisor", "central"):
            raise HTTPException(403, "a sign-off comes from a supervisor or the central system")
        entry = d.gate.sign_off(visit, None, who.person)
        return {"visit": visit, "signed_off": True, "new": entry is not None}

    @app.post("/visits/{visit}/release", tags=["visits"])
    async def release(visit: Annotated[str, Path(min_length=1, max_length=64)], body: ReleaseBody,
                      who: Caller = Depends(guard)):
        """P9: the guard phoned the host; the held exit opens once."""
        door = d.gate.release(visit, who.person, body.reason)
        if door is None:
            raise HTTPException(404, f"no held exit for visit {visit!r}")
        opened = await d.open_door(door.name, door.direction.value, cause="release")
        return {"visit": visit, "door": door.name, "opened": opened}

    # -- permits: P14 -----------------------------------------------------------------------------
    def permit_call(fn, *args, **kw):
        try:
            found = fn(*args, **kw)
        except Refused as e:
            raise refused(e) from None
        return found

    @app.get("/permits", tags=["permits"])
    async def permits(who: Caller = Depends(guard), returned: bool = False):
        return d.permits.listing(include_returned=returned)

    @app.post("/permits", tags=["permits"], status_code=201)
    async def create_permit(body: PermitBody, who: Caller = Depends(supervisor)):
        """P14: a contractor's card with areas, validity and deposit."""
        return permit_call(d.permits.create, credential=body.credential, holder=body.holder, name=body.name,
                           company=body.company, areas=body.areas,
                           valid_from=body.valid_from.timestamp() if body.valid_from else None,
                           valid_until=body.valid_until.timestamp(), deposit=body.deposit, by=who.person,
                           now=d.gate.clock())

    @app.post("/permits/{permit}/renew", tags=["permits"])
    async def renew_permit(permit: PermitId, body: RenewBody, who: Caller = Depends(supervisor)):
        return permit_call(d.permits.renew, permit, body.valid_until.timestamp(), body.reason, who.person,
                           d.gate.clock())

    @app.post("/permits/{permit}/return", tags=["permits"])
    async def return_permit(permit: PermitId, body: ReturnBody, who: Caller = Depends(supervisor)):
        return permit_call(d.permits.take_back, permit, body.refunded, who.person, d.gate.clock())

    # -- the console ------------------------------------------------------------------------------
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


def _gauges(d) -> list:
    health = d.board.health
    return [
        ("gatekeeper_device_up", "gauge", "1 when the device answers, 0 when it is down (unsupervised devices are left out).",
         [({"device": n}, 1.0 if h.value == "up" else 0.0) for n, h in sorted(health.items()) if h.value != "unsupervised"]),
        ("gatekeeper_outbox_depth", "gauge", "Journal events not yet acknowledged by the broker.",
         [({}, float(d.link.outbox.depth))] if d.link else []),
        ("gatekeeper_mode", "gauge", "The gate's mode: 1 for the current one.",
         [({"mode": m.value}, 1.0 if d.gate.mode is m else 0.0) for m in Mode]),
        ("gatekeeper_journal_seq", "gauge", "The last committed event's seq.", [({}, float(d.gate.journal.last_seq()))]),
        ("gatekeeper_held_exits", "gauge", "Exits held for a host's sign-off (P9).", [({}, float(len(d.gate.held_exits)))]),
        ("gatekeeper_on_site", "gauge", "People on site (the muster count).",
         [({}, float(d.store.conn.execute("SELECT coalesce(sum(party), 0) FROM presence").fetchone()[0]))]),
    ]
