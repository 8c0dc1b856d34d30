"""P32: interlock groups (mantraps) as the hardware layer sees them.

A door of a group may open only while every other door of the group reads closed at its latest poll and has
no unlock commanded or pending. "Pending" starts the moment the gate decides a grant (`claim`, called on the
event loop in the same synchronous step as the decision), so two grants at two doors of a group in one
instant cannot both pass: the second sees the first's claim before any coil is written.
"""
from __future__ import annotations

import time
from typing import Callable

from edge.config import DoorSection


class Interlock:
    def __init__(self, doors: list[DoorSection]):
        groups: dict[str, list[str]] = {}
        for d in doors:
            if d.interlock is not None:
                groups.setdefault(d.interlock, []).append(d.name)
        self.others: dict[str, tuple[str, ...]] = {
            n: tuple(m for m in members if m != n) for members in groups.values() for n in members}
        # door -> whether it is open (or not yet read), unlocked, or about to be; filled in by the outputs
        self.busy: dict[str, Callable[[float], bool]] = {}
        self.claims: dict[str, Callable[[float], None]] = {}

    def blocking(self, door: str, now: float | None = None) -> tuple[str, ...]:
        """The other doors of `door`'s group that keep it shut now; () for a door in no group."""
        others = self.others.get(door)
        if not others:
            return ()
        now = time.monotonic() if now is None else now
        return tuple(o for o in others if self.busy[o](now))

    def claim(self, door: str, now: float | None = None) -> None:
        """A grant (or an override) at `door` was decided: it counts as unlocked from now on."""
        if door in self.others:
            self.claims[door](time.monotonic() if now is None else now)
