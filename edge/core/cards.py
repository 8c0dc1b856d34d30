"""P27: visitor cards taken back at the perimeter exit, by the lane's card collector or by a guard.

A temporary badge's perimeter exit is held (`card_return_required`, `exit.held`); it ends here, and only
here: the card is journaled as returned (`card.returned`), consumed for the whole site as a pass is (P8,
`visit.checked_out`, which the other gates follow) until an allow-list record issues it again, and the
caller opens that door once.
"""
from __future__ import annotations

import logging

from edge.core.model import DoorView
from edge.core.outcome import Pending

log = logging.getLogger(__name__)

CARD_HELD = "card_return_required"


def returned(gate, ref: str, person: str, role: str | None, reason: str, now: float | None = None) -> DoorView | None:
    """A guard took the card `ref` at the exit that holds it. The door to open once, or None when no exit
    holds that card."""
    return _take(gate, ref, {"taken_by": "guard", "actor": person, "actor_role": role, "reason": reason}, now)


def captured(gate, door_name: str, now: float | None = None) -> tuple[str, DoorView] | None:
    """The collector of `door_name` captured a card: it was the oldest card held at that door. (ref, door to
    open once), or None when no card waits there (a card pushed in without a scan stays in the bin)."""
    waiting = [v for v in gate.card_held if v in gate.held_exits and gate.held_exits[v][2].name == door_name
               and gate.held_exits[v][2].collector]
    if not waiting:
        log.warning("door %s: the collector took a card nobody presented; nothing opens", door_name)
        return None
    ref = min(waiting, key=lambda v: gate.held_at.get(v, 0.0))
    door = _take(gate, ref, {"taken_by": "collector"}, now)
    return (ref, door) if door is not None else None


def _take(gate, visit: str, who: dict, now: float | None) -> DoorView | None:
    if visit not in gate.card_held or visit not in gate.held_exits:
        return None
    reader, cred, door = gate.held_exits.pop(visit)
    gate.held_at.pop(visit, None)
    gate.card_held.discard(visit)
    now = gate.clock() if now is None else now
    if door.passages:  # a lane: the passage it is opened for counts, and moves presence (P7, P11)
        gate.pending.setdefault((door.name, door.direction), []).append(
            Pending(cred, door, cred.party or 1, now + gate.passage_timeout[door.name]))
    actor = {k: who[k] for k in ("actor", "actor_role") if k in who}

    def write():
        with gate.store.tx() as c:
            c.execute("DELETE FROM held_exits WHERE visit=?", (visit,))
            gate.journal.append("card.returned", {
                "credential_ref": cred.ref, "holder": cred.holder, "door": door.name, "reader": reader, **who}, now)
            if not door.passages:
                gate._move(cred, door, now)
            gate.store.consume(visit, now)
            gate.journal.append("visit.checked_out", {
                "visit": visit, "credential_ref": cred.ref, "holder": cred.holder, "door": door.name,
                "party": cred.party, **actor}, now)
    gate.holdback.run(write)
    if gate.holdback.held:  # SPEC §6: in force while the database refuses the writes
        gate.store.hold("consumed", visit)
    return door
