"""The decision: a pure function of credential, door, time, facts and settings (P2–P12, P15, P16, P23, P27, P31, P33).

No I/O here: the gate gathers the facts, this decides, the gate acts and journals.
Every refusal carries exactly one reason code of POLICY.md; the order of the checks below decides
which one when several apply (identity before validity before place before time before movement).
"""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone

from edge.core.areas import is_within, permits
from edge.core.calendar import HOLIDAY
from edge.core.model import (
    STALE_REFUSED, Credential, known_kind, Decision, Direction, DoorView, Facts, Mode, Rejected, Settings,
)
from edge.core.two_person import find_partner, pair_escort
from edge.core.window import clock_plausible, window_reason

_UTC = timezone.utc


def decide(cred: Credential | Rejected, door: DoorView, now: float, facts: Facts, settings: Settings) -> Decision:
    """Grant or refuse one presentation at one reader."""
    if isinstance(cred, Rejected):  # P2: nothing unverified ever opens a door
        return Decision(False, cred.reason)
    if not known_kind(cred.category, cred.tier):  # P1: in and out, before any rule keyed on category
        return Decision(False, "malformed")
    if door.direction is Direction.OUT:
        return _exit(cred, door, facts, settings)
    d = _entry(cred, door, now, facts, settings)
    if facts.watchlisted and d.reason != "blocklisted":  # P37: decided as usual; the guards are alerted
        d = replace(d, watchlist=True)
    return d


def _entry(cred: Credential, door: DoorView, now: float, facts: Facts, s: Settings) -> Decision:
    if facts.blocklisted:  # P6 (an entry with action `deny`; `alert` is P37, below)
        return Decision(False, "blocklisted")
    if facts.revoked:  # P6
        return Decision(False, "revoked")
    if facts.consumed and cred.single_visit:  # P8, P27
        return Decision(False, "pass_consumed")
    if cred.time_bounded:  # P3
        if not clock_plausible(now) or facts.clock_far_off:
            return Decision(False, "clock_invalid")
        why = window_reason(cred.valid_from, cred.valid_until, now, s.skew_s)
        if why:
            return Decision(False, why)
    if facts.stale_allowlist and cred.category in STALE_REFUSED:  # P23
        return Decision(False, "stale_allowlist")
    if facts.mode is Mode.LOCKDOWN and not (cred.category == "staff" and "supervisor" in cred.roles):  # P15
        return Decision(False, "lockdown")
    if not permits(cred.areas, door.area):  # P4
        return Decision(False, "area_not_permitted")
    if not in_schedule(cred, now, s):  # P5
        return Decision(False, "outside_schedule")
    flags: tuple[str, ...] = ()
    if door.antipassback == "timed":  # P31: no presence here; the same credential not again within the time
        # either side of the last entry: a clock stepped back locks nobody out for longer than the time
        if facts.last_entry is not None and abs(now - facts.last_entry) < door.antipassback_s:
            return Decision(False, "antipassback")
    elif facts.presence is not None and is_within(facts.presence, door.area):  # P7
        mode = door.antipassback
        if mode == "auto":
            mode = "soft" if cred.category == "staff" else "hard"
        if mode == "hard":
            return Decision(False, "antipassback")
        if mode == "soft":
            flags = ("antipassback_soft",)
    escort_by = None
    if cred.category != "staff" and (door.escort_required or cred.escort):  # P10
        # P33: at a two-person door the pair's own staff member escorts it
        escort_by = pair_escort(cred, door, now, facts, s) if door.two_person else find_escort(door.area, now, facts, s)
        if escort_by is None:
            return Decision(False, "escort_required")
    if needs_pin(cred, door):  # P34: the card, then its PIN at this reader
        why = pin_reason(facts.pin)
        if why:
            return Decision(False, why)
    # P34: a duress PIN raises its alarm whether or not the door then opens: a refusal for the mantrap, the
    # second person or the room left says nothing of the person under duress
    duress = facts.pin == "duress"
    if interlocked(facts):  # P32: after every rule on the person; a drill and a lockdown keep the interlock
        return Decision(False, "interlock", duress=duress)
    partner = None
    if door.two_person:  # P33
        partner = find_partner(cred, now, facts, s, escort_by)
        if partner is None:
            return Decision(False, "second_person_required", duress=duress)
    if facts.area_full:  # P35: last, so a person who may not enter at all is refused for that first
        return Decision(False, "area_full", duress=duress)
    arrival = door.perimeter and cred.category == "vip"  # P12
    return Decision(True, "ok", flags, escort_by=escort_by, arrival=arrival, partner=partner, duress=duress)


def needs_pin(cred: Credential, door: DoorView) -> bool:
    """P34 (entries only): a PIN door, or a keypad reader for a holder whose record asks for the PIN."""
    return door.pin_required or (door.keypad and cred.pin_required)


def pin_reason(pin: str | None) -> str | None:
    """P34: the refusal a PIN fact makes; None when the PIN (or the duress PIN) was right."""
    if pin in ("ok", "duress"):
        return None
    if pin == "incorrect":
        return "pin_incorrect"
    if pin == "locked":
        return "pin_locked"
    return "pin_required"  # none given (yet), or none can be: a pass, a holder without a PIN


def _exit(cred: Credential, door: DoorView, facts: Facts, s: Settings) -> Decision:
    # SPEC §5: leaving is refused only for an unusable credential or a consumed pass, or held (P9).
    single = cred.single_visit
    if facts.consumed and single:  # P8, P27
        return Decision(False, "pass_consumed")
    if facts.mode is Mode.FIRE:  # P16 overrides P9 and P27; nothing is consumed in an evacuation
        return Decision(True, "fire_mode")
    if door.perimeter and s.exit_signoff_required and needs_signoff(cred, s) and not facts.signed_off:  # P9, P25
        return Decision(False, "host_signoff_missing", held=True)
    if door.perimeter and cred.kind == "badge" and cred.temporary:  # P27: the card stays on site
        # held until the lane's collector captures it, or a guard takes it (edge/core/cards.py)
        return Decision(False, "card_return_required", held=True)
    # P32: after the holds, so a held exit stays held (a guard releases it later, when the mantrap may be clear)
    if interlocked(facts):
        return Decision(False, "interlock")
    known = facts.presence is not None and is_within(facts.presence, door.area)
    flags = () if known or not door.tracks_presence else ("presence_unknown",)  # P31: none recorded there
    return Decision(True, "ok", flags, consumes=door.perimeter and single)  # P7, P8


def interlocked(facts: Facts) -> bool:
    """P32: another door of the group is open or unlocked; fire mode lifts the interlock (P16), a drill does not."""
    return facts.interlocked and facts.mode is not Mode.FIRE


def in_schedule(cred: Credential, now: float, s: Settings) -> bool:
    """P5: staff 24/7 unless given a schedule; everyone else visiting hours unless given another."""
    name = cred.schedule
    if name is None:
        if cred.category == "staff":
            return True
        name = "visiting_hours"
    if name == "always":
        return True
    window = s.schedules.get(name)
    if window is None:
        return False  # an unknown schedule admits nobody
    days = s.calendar_days.get(name)
    if days:  # P24: the schedule names a calendar with days in it
        return calendar_open(window, s.holiday_hours.get(name), days, now, s.tz)
    return window_open(window, now, s.tz)


def needs_signoff(cred: Credential, s: Settings) -> bool:
    """P25: the holder's category, or a VIP's `vip:<tier>`, is among those whose perimeter exit needs the
    host's sign-off (default `visitor` only, as P9)."""
    kinds = s.exit_signoff
    return cred.category in kinds or (cred.tier is not None and f"{cred.category}:{cred.tier}" in kinds)


def window_open(window: tuple, now: float, tz) -> bool:
    """Whether `now` falls in a schedule window: (weekdays, start minute, end minute) in local time."""
    days, start, end = window
    local = datetime.fromtimestamp(now, tz or _UTC)
    minute = local.hour * 60 + local.minute
    return local.weekday() in days and start <= minute < end


def calendar_open(window: tuple, holiday: tuple | None, days: dict, now: float, tz) -> bool:
    """P24: `window_open` on a calendar: a holiday has the schedule's holiday hours ((start, end) minutes, None
    = closed), a swapped working day counts as the weekday it replaces, any other date is its own weekday. One
    dict lookup more than `window_open`: the map was made when the calendar changed."""
    local = datetime.fromtimestamp(now, tz or _UTC)
    minute = local.hour * 60 + local.minute
    day = days.get(local.toordinal(), local.weekday())
    if day == HOLIDAY:
        return holiday is not None and holiday[0] <= minute < holiday[1]
    weekdays, start, end = window
    return day in weekdays and start <= minute < end


def hours_today(name: str, now: float, s: Settings) -> tuple[int, int] | None:
    """A schedule's (start, end) minutes on the local day of `now`, its calendar heeded (P24: a holiday has
    the holiday hours, a swapped working day its weekday's); None when the schedule is closed that day."""
    window = s.schedules.get(name)
    if window is None:
        return None
    weekdays, start, end = window
    local = datetime.fromtimestamp(now, s.tz or _UTC)
    day = s.calendar_days.get(name, {}).get(local.toordinal(), local.weekday())
    if day == HOLIDAY:
        return s.holiday_hours.get(name)
    return (start, end) if day in weekdays else None


def find_escort(area: str, now: float, facts: Facts, s: Settings) -> str | None:
    """P10: a staff scan at this door within the window, permitted here, with escort capacity left."""
    for e in facts.escorts:
        if 0 <= now - e.at <= s.escort_window_s and e.used < s.escort_max and permits(e.areas, area):
            return e.ref
    return None
