"""The local API's error codes: every error body is `{"detail": ..., "code": ...}` (SPEC §4).

`detail` is English for a person reading a log or a curl; `code` is stable, so the console (and an
integrator) can say it in the guard's own language: the console gets the texts below and their Chinese
(edge/api/console/errors-zh.json) as /console/i18n-errors.js, and a test holds the two to the same set. A
code, once given out, keeps its meaning; a new refusal gets a new code.
"""
from __future__ import annotations

import logging
from typing import Any

from fastapi import HTTPException
from fastapi.responses import JSONResponse

log = logging.getLogger(__name__)

CODES: dict[str, str] = {
    # by status, where nothing more specific is known
    "bad_request": "The request is malformed.",
    "unauthorized": "A valid bearer token or console session is needed.",
    "forbidden": "Your role may not do this.",
    "not_found": "There is no such thing here.",
    "method_not_allowed": "This address does not take that method.",
    "conflict": "This cannot be done now.",
    "length_required": "Send a Content-Length (no chunked bodies).",
    "body_too_large": "The request body is too large.",
    "invalid": "A field is missing or not valid.",
    "rate_limited": "Too many requests: wait a minute.",
    "internal_error": "The gate failed to answer this request; it is logged.",
    "unavailable": "The gate cannot do this now; try again.",
    # signing in
    "invalid_token": "That token is not valid.",
    "requested_with_missing": "A change from the console needs the X-Requested-With header.",
    # doors and modes (P15, P16, P20)
    "no_such_door": "There is no door of that name at this gate.",
    "fire_is_per_gate": "Fire mode is per gate, never site-wide.",
    "mode_not_yours": "Only a supervisor ends a lockdown, changes fire mode or runs a drill.",
    "fire_input_active": "The fire input is still active.",
    "drill_during_fire": "A drill cannot start during a fire.",
    # the gate's state
    "database_refused": "The gate's database refused the change; nothing was applied, try again.",
    "gate_stopping": "The gate is stopping; try again when it is back.",
    # walk-ins and visits (P4, P9, P13)
    "walkin_not_set_up": "Walk-in registration is not set up on this gate.",
    "no_such_visit": "There is no such visit at this gate.",
    "no_held_exit": "No exit is held for this visit.",
    "no_card_held": "No exit is held for this card.",  # P27
    "blocklisted": "This ID document is blocklisted: do not admit, call the supervisor.",
    "party_too_large": "Too many people on one walk-in pass.",
    "unknown_area": "That is not an area of this site.",
    "area_beyond_host": "That area is beyond what the host may receive visitors in: only a supervisor widens a visit.",
    "host_not_staff": "The host is not a staff member on this gate's allow-list.",
    "host_needs_guard_room": "The host works in production and no guard room is set up to receive visitors.",
    "host_has_no_areas": "The host has no areas and no lobby is set up.",
    "outside_visiting_hours": "Outside visiting hours: no walk-in registration.",
    "visit_ended": "The visit has ended.",
    "already_registered_today": "This visitor is already registered today.",
    # contractors' permits (P14)
    "no_such_permit": "There is no such permit.",
    "bad_card": "Not a contractor's card: badge: and 8 to 20 upper-case hex digits.",
    "card_has_permit": "This card already has a permit: renew it or take it back first.",
    "permit_returned": "The card was returned: make a new permit.",
    "not_in_future": "The end must be in the future and after the start.",
    "renewal_not_later": "A renewal must end later than the permit does now.",
    "refund_over_deposit": "The refund is more than the deposit.",
    # alarms and the muster
    "no_such_alarm": "There is no such alarm.",
    "already_acknowledged": "This alarm is already acknowledged.",
    "not_mustering": "There is no muster now (no fire or drill).",
    "not_on_site": "This person is not on site.",
    # vehicles (P26)
    "no_held_vehicle": "No vehicle with this plate is held at a barrier.",
    "bad_plate": "Not a licence plate: letters and digits, up to 16 characters.",
    # guard tours (P21)
    "no_such_tour": "There is no tour of that name at this gate.",
    # occupancy limits (P35)
    "no_such_area": "There is no area of that name.",
    "no_occupancy_limit": "This area has no occupancy limit: nothing is counted there.",
}

BY_STATUS = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
             409: "conflict", 411: "length_required", 413: "body_too_large", 422: "invalid", 429: "rate_limited",
             500: "internal_error", 503: "unavailable"}


def code_for(status: int) -> str:
    """The code of an error that names none: its status's, else the nearest kind."""
    return BY_STATUS.get(status) or ("internal_error" if status >= 500 else "bad_request")


def problem(status: int, detail: Any, code: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    """The error reply; a code not in CODES (a slip the tests are there to catch) falls back to its status's."""
    if code not in CODES:
        if code is not None:
            log.error("error code %r is not in edge/api/problems.py CODES", code)
        code = code_for(status)
    return JSONResponse({"detail": detail, "code": code}, status_code=status, headers=headers)


class ApiError(HTTPException):
    """An HTTPException with its stable code: `raise ApiError(404, "no_such_door", f"no door named ...")`."""

    def __init__(self, status: int, code: str, detail: Any, headers: dict[str, str] | None = None):
        assert code in CODES, code
        super().__init__(status, detail, headers)
        self.code = code
