"""P33, the two-person rule, as the decision reads it: who the second person is, and who escorts the pair where
the area needs an escort too (P10). Pure: the gate says who is waiting and would be admitted together with the
credential now presented (Facts.partners); it remembers the first of a pair (Gate.waiting) and admits them with
the second's opening, as an escorted visitor waiting for staff (P10)."""
from __future__ import annotations

from typing import Iterator

from edge.core.areas import permits
from edge.core.model import Credential, DoorView, Facts, Partner, Settings

FIRST = "two_person_first"  # the flag on the grant of the one who came first and was admitted with the second


def pair_escort(cred: Credential, door: DoorView, now: float, facts: Facts, s: Settings) -> str | None:
    """P10 at a two-person door: the escort is the pair's staff member permitted there, never an earlier scan
    (a pair without one is refused `escort_required`)."""
    for p in _in_window(cred, now, facts, s):
        if p.staff and permits(p.areas, door.area):
            return p.ref
    return None


def find_partner(cred: Credential, now: float, facts: Facts, s: Settings, escort_by: str | None) -> str | None:
    """P33: the second person: a different holder (not the same person with two cards) who came within the
    window; the escort, where the pair needs one."""
    if escort_by is not None:
        return escort_by
    return next((p.ref for p in _in_window(cred, now, facts, s)), None)


def as_partner(cred: Credential, now: float) -> Partner:
    """The credential now presented, as the one a waiting first person would be admitted with."""
    return Partner(cred.ref, cred.holder, cred.category == "staff", cred.areas, now)


def _in_window(cred: Credential, now: float, facts: Facts, s: Settings) -> Iterator[Partner]:
    return (p for p in facts.partners if p.holder != cred.holder and 0 <= now - p.at <= s.two_person_window_s)
