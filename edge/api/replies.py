"""What the local API answers: one model per reply, and the error replies a route may give (SPEC §4).

They are the OpenAPI description an integrator reads at /docs, and FastAPI checks each reply against its
model. They follow what the gate hands the API (edge/api/facade.py's dataclasses, the desks' dicts,
edge/store/journal.py's envelope) field for field. The replies that are still growing (the status, the
muster list, the held exits) accept fields not named here, so a field added on the gate's side reaches the
caller before its model names it.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from edge.api.problems import CODES

Time = str  # RFC 3339, UTC (edge/store/journal.py rfc3339)


class Reply(BaseModel):
    pass


class Growing(BaseModel):
    model_config = ConfigDict(extra="allow")


# -- errors ------------------------------------------------------------------------------------------------
class FieldProblem(BaseModel):
    """One field at fault, as FastAPI's own validation errors name it."""
    model_config = ConfigDict(extra="allow")  # FastAPI adds `input`, `ctx`, `url`

    loc: list[str | int] = Field(description="where: body, query or path, then the field's path")
    msg: str
    type: str = Field(description="the kind of fault (for a desk's refusal: its code)")


class Problem(BaseModel):
    """Every error's body: `detail` for a person, `code` for a program (edge/api/problems.py)."""

    detail: str | list[FieldProblem]
    code: Literal[tuple(CODES)] = Field(description="stable; the console translates it (console/errors-zh.json)")


_WHY = {400: "Malformed request", 401: "No valid bearer token or console session", 403: "Not this caller's role",
        404: "Not found", 409: "Not now: the gate's state refuses it", 411: "Content-Length missing",
        413: "Request body too large", 422: "A field is missing or not valid", 429: "Too many requests",
        503: "The gate cannot do it now (its database refused, or the gate is stopping)"}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The error replies a route declares, one line each: `responses=errors(401, 403, 404)`."""
    return {s: {"model": Problem, "description": _WHY.get(s, "Error")} for s in sorted(set(statuses))}


AUTH = (401, 403)  # every route behind a credential; 403 also for a cookie change without X-Requested-With
BODY = (400, 411, 413, 422)  # every route that reads a body: unreadable, the size limit, validation


# -- the gate ----------------------------------------------------------------------------------------------
class Clock(Reply):
    valid: bool = Field(description="P3: plausible, and within a day of the central system's time when known")
    sync: Literal["synced", "unsynced", "unknown"]
    source: str | None
    offset_s: float | None = Field(description="NTP's remaining correction")
    est_error_s: float | None = Field(description="the kernel's estimated error")
    central_offset_s: float | None = Field(description="ahead (+) or behind (-) the central system's time")


class Health(Reply):
    status: Literal["ok", "degraded"]
    mode: str
    database: str = Field(description="`writable`, or `holding N writes` while it refuses them")
    devices_down: list[str]
    clock: Clock


class SnapshotProgress(Growing):
    version: int
    chunks_received: int
    chunks: int
    records: int
    started: Time


class Status(Growing):
    mode: str
    mode_scope: Literal["gate", "site"]
    devices: dict[str, str] = Field(description="each device's health: up, down or unsupervised")
    allowlist_version: int
    outbox_depth: int | None = Field(description="events not yet acknowledged by the broker; null without one")
    fail_modes: dict[str, str]
    fire_input: bool
    held_exits: int
    last_seq: int
    allowlist_snapshot: SnapshotProgress | None = Field(None, description="a snapshot being staged, or null")
    timezone: str = Field(description="the site's IANA time zone: the console shows times in it")


class Marked(Reply):
    by: str
    at: Time


class OnSite(Growing):
    holder: str
    category: str
    area: str
    since: Time
    party: int
    name: str | None = Field(description="the record's display name; null when none names them")
    company: str | None = Field(description="a walk-in's or a contractor's company")
    private: bool = Field(False, description="P29: a private guest; to a guard, `holder` is an alias and no name or "
                                             "company is shown")
    safe: Marked | None = Field(description="null, or who marked them safe at the assembly point and when (P16)")


class AreaOccupancy(Growing):
    area: str
    count: int = Field(description="P35: people in the area and below it, parties counted in full, as corrected")
    reserved: int = Field(description="places held by grants whose people have not walked in yet")
    max_occupancy: int


class Occupancy(Growing):
    mode: str
    count: int = Field(description="people on site, parties counted in full")
    people: list[OnSite]
    unaccounted: int = Field(description="on site and not marked safe, parties counted in full")
    areas: list[AreaOccupancy] = Field(default_factory=list, description="P35: the areas with a max_occupancy")


class OccupancyCorrected(Reply):
    area: str
    count: int
    previous: int = Field(description="the count it replaced")
    reserved: int
    max_occupancy: int
    event_seq: int = Field(description="seq of the `occupancy.corrected` event")


class HeldExit(Growing):
    visit: str
    holder: str | None
    host: str | None
    party: int
    door: str
    reader: str
    credential_ref: str
    since: Time
    name: str | None = Field(description="the visitor's name; null when no record names them")
    company: str | None
    private: bool = Field(False, description="P29: a private guest; to a guard without holder, host or name")
    reason: Literal["host_signoff_missing", "card_return_required"] = Field(
        "host_signoff_missing", description="P9: waiting for the host's sign-off; P27: for the visitor card")
    collector: bool = Field(False, description="P27: the door's collector takes the card; no guard needs to")


class Event(Reply):
    """SPEC §2's CloudEvents envelope of one journal entry; an event about a door also carries `subject`, the
    door's name."""
    specversion: Literal["1.0"]
    id: str
    source: str
    type: str
    time: Time
    datacontenttype: Literal["application/json"]
    epoch: str = Field(description="the journal's epoch: seq restarts only with a new one")
    seq: int
    data: dict[str, Any]


# -- acting ------------------------------------------------------------------------------------------------
class Opened(Reply):
    door: str
    opened: bool = Field(description="whether the door's output answered")


class ModeChange(Reply):
    mode: str = Field(description="the gate's mode after the request")
    changed: bool


class HeldVehicle(Reply):
    """P26: a car waiting at a barrier for the guard."""
    plate: str
    door: str
    direction: str
    reader: str
    reason: str = Field(description="why it is held: unknown_credential, or the refusal at an `out` reader")
    since: str


class VehicleAdmitted(Reply):
    plate: str
    door: str
    opened: bool


class VehicleRegistered(Reply):
    visit: str
    plate: str
    until: str = Field(description="the pass's end: the plate is covered until then, or until the visit ends")
    new: bool


class Released(Reply):
    visit: str
    door: str
    opened: bool


class CardReturned(Reply):
    credential_ref: str
    door: str
    opened: bool


class SignedOff(Reply):
    visit: str
    signed_off: Literal[True]
    new: bool = Field(description="false when it was signed off already")


# -- the console's session ---------------------------------------------------------------------------------
class SignedIn(Reply):
    person: str
    role: Literal["guard", "supervisor", "central"]


class Session(SignedIn):
    site: str
    gate: str
    doors: list[str]
    walkin: bool = Field(description="walk-in registration is set up here")


class SignedOut(Reply):
    signed_out: Literal[True]


# -- visits and permits ------------------------------------------------------------------------------------
class Visit(Reply):
    visit: str
    holder: str
    name: str
    company: str
    purpose: str
    host: str
    host_confirmation: Literal["phone", "in_person"]
    id_last4: str = Field(description="the ID document number's last 4; the number itself is not kept")
    areas: list[str]
    party: int
    guard: str
    valid_from: Time
    valid_until: Time
    registered: Time
    entered: Time | None
    exited: Time | None
    pass_: str = Field(alias="pass", description="the signed pass text (the QR's content)")
    credential_ref: str
    signed_off: bool
    checked_out: bool

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class VisitWithPass(Visit):
    pass_png: str = Field(description="where the pass's printable QR is")


class Permit(Reply):
    permit: str
    credential: str
    holder: str
    name: str
    company: str
    areas: list[str]
    valid_from: Time
    valid_until: Time
    deposit: float
    currency: str
    created: Time
    created_by: str
    returned: Time | None
    refunded: float | None
    returned_by: str | None


# -- people, alarms, the muster ----------------------------------------------------------------------------
class Person(Reply):
    holder: str
    name: str | None = Field(description="null: no record names them (an allow-list record without `name`)")
    company: str | None = Field(description="walk-ins and permits only: the allow-list has no company")
    category: str
    private: bool = Field(False, description="P29: a private guest; to a guard without name or company")


class Overstay(Growing):
    """P36: a visitor or contractor still on site past the end of their pass or permit. To a guard, a private
    guest's (P29) comes with `private` and without holder, host, visit or credential."""
    holder: str | None
    category: str
    host: str | None = None
    visit: str | None = None
    area: str = Field(description="the area last entered")
    door: str = Field(description="the door of that entry")
    credential_ref: str | None = None
    until: Time = Field(description="when the pass or permit (or a walk-in's visiting hours) ended")
    raised: Time
    event_seq: int | None = Field(description="the seq of the `visit.overstay` event")
    private: bool = False


class Alarm(Reply):
    seq: int = Field(description="the alarm event's seq in the journal")
    type: Literal["alarm.raised", "door.forced", "door.held_open", "device.fault"]
    time: Time
    data: dict[str, Any] = Field(description="the event's data, as journaled")
    priority: Literal["high", "normal"]


class Acknowledged(Reply):
    seq: int = Field(description="the alarm's seq")
    acknowledged_by: str
    acknowledged_at: Time
    event_seq: int = Field(description="the seq of the `alarm.acknowledged` event")


class MarkedSafe(Reply):
    holder: str
    area: str
    safe: Marked
    event_seq: int = Field(description="the seq of the `muster.marked_safe` event (the first one, when again)")
    new: bool = Field(description="false when the person had been marked already: nothing was journaled")
