"""P26 vehicles at a barrier: plates held for the guard, and the rule that holds them.

A plate is decided like any credential (allow-listed, or registered to a visit whose pass covers it); what
this adds is what happens when it would be refused: an unknown plate at an `in` reader, and any plate not
let through at an `out` reader, waits for the guard instead (`vehicle.held`), so a car is never trapped.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from edge.core.model import SINGLE_VISIT, Credential, Decision, Direction, DoorView, Rejected

PLATE = "plate"
PREFIX = "plate:"


@dataclass(frozen=True, slots=True)
class HeldVehicle:
    """A plate waiting at a barrier for the guard."""

    ref: str  # plate:<TEXT>
    reader: str
    door: DoorView
    reason: str
    at: float

    @property
    def plate(self) -> str:
        return self.ref[len(PREFIX):]


def is_plate(cred: Credential | Rejected) -> bool:
    return cred.kind == PLATE


def plate_decision(cred: Credential | Rejected, door: DoorView, d: Decision) -> Decision:
    """P26 on top of the decision for a plate at a barrier: held where it would be refused, and a registered
    visit's car leaving through the perimeter ends the visit as its pass would (P8)."""
    if d.granted:
        if (isinstance(cred, Credential) and cred.visit is not None and door.perimeter
                and door.direction is Direction.OUT and cred.category in SINGLE_VISIT):
            return replace(d, consumes=True)
        return d
    if door.direction is Direction.OUT:  # never refused on the way out, whatever the reason: held
        return replace(d, held=True)
    if isinstance(cred, Rejected) and cred.reason == "unknown_credential":  # a plate nobody knows, coming in
        return replace(d, held=True)
    return d  # an allow-listed plate refused for a reason of its own (P4–P6, P15) stays refused, as a badge
