"""Door supervision (P16–P18) as a pure state machine: inputs and time in, events and lock actions out.

The I/O module polls the contact and request-to-exit inputs and feeds each door's snapshot here; the
daemon journals the events and drives the lock. Pure so that every edge (forced, held open, relock on
close, fire) is tested without hardware, and the same rules run against the simulator end to end.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

from edge.config import DoorSection

log = logging.getLogger(__name__)

RELOCK, UNLOCK_REX, FREE = "relock", "unlock_rex", "free"


@dataclass
class DoorState:
    cfg: DoorSection
    open: bool | None = None  # unknown until the first read
    opened_at: float = 0.0
    held_reported: bool = False
    rex: bool = False
    authorized_until: float = 0.0  # a grant, an override or a request to exit lets the door open until then
    freed: bool = False  # fire mode holds a fail-safe door unlocked
    extended_pulse_s: float | None = None  # P30: unlock time and held-open limit for extended access
    extended_held_s: float | None = None
    extended_until: float = 0.0  # an extended grant's opening starts before this
    limit_s: float | None = None  # this opening's held-open limit (P17; P30 when extended)

    def authorize(self, now: float, seconds: float | None = None, extended: bool = False) -> float:
        """The door may open until the end of this grant's pulse; its length in seconds."""
        pulse = seconds or (self.extended_pulse_s if extended and self.extended_pulse_s else self.cfg.pulse_s)
        self.authorized_until = max(self.authorized_until, now + pulse)
        if extended:
            self.extended_until = max(self.extended_until, now + pulse)
            if self.open:  # already open (the last one through held it): this opening gets the longer limit
                self.limit_s = max(self.held_limit(), self.extended_held_s or 0.0)
        return pulse

    def held_limit(self) -> float:
        return self.limit_s if self.limit_s is not None else self.cfg.held_open_s


def extended_times(door: DoorSection, factor: float) -> tuple[float, float]:
    """P30: a door's unlock time and held-open limit for extended access (its own settings, else x factor)."""
    return (door.extended_pulse_s or door.pulse_s * factor, door.extended_held_open_s or door.held_open_s * factor)


@dataclass
class Step:
    events: list[tuple[str, dict]] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)


def supervise(d: DoorState, contact: bool | None, rex: bool | None, now: float, fire: bool,
              interlocked: bool = False) -> Step:
    """One poll of one door. `interlocked`: another door of its mantrap is open or unlocked (P32)."""
    out = Step()
    name = d.cfg.name
    if fire and d.cfg.fail_mode == "fail_safe" and not d.freed:
        d.freed = True  # P16: a fail-safe door is freed for the evacuation and stays so
        out.actions.append(FREE)
    elif not fire and d.freed:
        # P16 cleared: the door locks again, at once if it is shut (or has no contact to tell), else as
        # soon as it closes (below): a door is never locked on someone walking through it
        d.freed = False
        if not d.open:
            out.actions.append(RELOCK)
        else:
            d.opened_at, d.held_reported = now, False  # held open counts from the end of the emergency
    if rex and not d.rex and interlocked and not d.freed:
        # P32: as a commercial interlock does, the button unlocks nothing while the mantrap's other door is open
        # or unlocked; pressed again once that door is shut, it does. Opening it anyway is a forced door.
        log.info("door %s: request to exit ignored, another door of interlock group %s is open or unlocked",
                 name, d.cfg.interlock)
    elif rex and not d.rex:
        d.authorize(now)  # P17: leaving by the request-to-exit button is not a forced door
        if not d.freed:
            out.actions.append(UNLOCK_REX)
    if rex is not None:
        d.rex = rex
    if contact is None:
        return out
    if d.open is None:  # first read: learn the state, raise nothing
        d.open = contact
        d.opened_at = now
        return out
    if contact and not d.open:
        d.open, d.opened_at, d.held_reported = True, now, False
        # P30: an opening an extended grant let in may stay open for the extended limit
        d.limit_s = d.extended_held_s if d.extended_held_s and now <= d.extended_until else None
        if now <= d.authorized_until or d.freed or fire:
            out.events.append(("door.opened", {"door": name}))
        else:
            out.events.append(("door.forced", {"door": name}))
    elif not contact and d.open:
        d.open = False
        out.events.append(("door.closed", {"door": name, "open_s": round(now - d.opened_at, 1)}))
        if not d.freed:
            d.authorized_until = d.extended_until = 0.0
            out.actions.append(RELOCK)  # locked as soon as the door shuts, not at the end of the pulse
    elif contact and d.open and not d.held_reported and now - d.opened_at > d.held_limit() and not fire:
        d.held_reported = True
        out.events.append(("door.held_open", {"door": name, "limit_s": d.held_limit()}))
    return out
