"""P35: occupancy limits. How many people each limited area holds, kept in memory as presence moves.

An area's count is the people whose presence (P7: the deepest area they are in) is in it or below it,
parties counted whole (P11), plus a supervisor's correction (an offset from what presence says, stored so it
outlives a restart), never below zero. A grant into a limited area reserves its places at once, until its
presence moves (at a door: the grant's own commit; at a lane: the first passage) or it is undone (a lane's
grant nobody walked through): two grants at this gate in one instant cannot both take the last place.

Only areas with a limit are counted, by the presence moves themselves (this gate's, its peers' through the
link), so a scan reads a dictionary, never COUNT(*). When another process changed presence, or a rollback
left the mirrors unsure, the store reloads presence and this reloads with it (`reloaded`).
"""
from __future__ import annotations

import logging
import sqlite3

from edge.core.areas import is_within

log = logging.getLogger(__name__)


class Occupancy:
    """Counts of the limited areas; the store calls `moved` and `reloaded` (Mirrors.presence_watch)."""

    def __init__(self, limits: dict[str, int], store) -> None:
        self.limits = dict(limits)
        self.store = store
        self.raw: dict[str, int] = {a: 0 for a in self.limits}  # from presence alone
        self.adjust: dict[str, int] = {}  # a supervisor's correction, as an offset from `raw`
        self.inside: dict[str, tuple[tuple[str, ...], int]] = {}  # ref -> (limited areas it counts in, party)
        self.reserved: dict[str, tuple[tuple[str, ...], int]] = {}  # ref -> (limited areas, party) of a grant
        self.reserved_n: dict[str, int] = {a: 0 for a in self.limits}
        self._over: dict[str | None, tuple[str, ...]] = {None: ()}
        if self.limits:
            self.reloaded()
            store.presence_watch = self

    def limited(self, area: str | None) -> tuple[str, ...]:
        """The limited areas an area is in (itself included): the limits a person there counts toward."""
        got = self._over.get(area)
        if got is None:
            got = self._over[area] = tuple(a for a in self.limits if is_within(area, a))
        return got

    def count(self, area: str) -> int:
        """The people in a limited area now (corrected, never below zero), not counting reservations."""
        return max(0, self.raw[area] + self.adjust.get(area, 0))

    def taken(self, area: str) -> int:
        """The places taken: the people in it and the grants on their way in."""
        return self.count(area) + self.reserved_n[area]

    # -- the decision's fact -------------------------------------------------------------------------
    def _new_in(self, dest: str | None, presence: str | None) -> tuple[str, ...]:
        """The limited areas an entry to `dest` adds its party to: those it is in and the person is not yet."""
        return tuple(a for a in self.limited(dest) if presence is None or not is_within(presence, a))

    def full(self, dest: str, party: int, presence: str | None) -> bool:
        """P35: whether entering `dest` with `party` people would take more places than a limit allows."""
        party = party or 1
        return any(self.taken(a) + party > self.limits[a] for a in self._new_in(dest, presence))

    def reserve(self, ref: str, dest: str | None, party: int, presence: str | None) -> None:
        """A grant into a limited area: its places are taken at once, until its presence moves or it is undone."""
        areas = self._new_in(dest, presence)
        if not areas:
            return
        self.release(ref)
        self.reserved[ref] = (areas, party or 1)
        for a in areas:
            self.reserved_n[a] += party or 1

    def release(self, ref: str) -> None:
        got = self.reserved.pop(ref, None)
        if got is not None:
            for a in got[0]:
                self.reserved_n[a] -= got[1]

    # -- presence moves (Mirrors.move_presence, Mirrors.refresh) ---------------------------------------
    def moved(self, ref: str, area: str | None, party: int) -> None:
        self.release(ref)  # where the grant led, or undone by a later move: it is counted as presence now
        old = self.inside.pop(ref, None)
        if old is not None:
            for a in old[0]:
                self.raw[a] -= old[1]
        areas = self.limited(area)
        if areas:
            self.inside[ref] = (areas, party or 1)
            for a in areas:
                self.raw[a] += party or 1
        if old is not None:
            self._floor(old[0])

    def reloaded(self) -> None:
        """Everything again from the database: presence, and the corrections."""
        c = self.store.conn
        self.raw = {a: 0 for a in self.limits}
        self.inside = {}
        for ref, area, party in c.execute("SELECT credential, area, party FROM presence"):
            areas = self.limited(area)
            if areas:
                self.inside[ref] = (areas, party or 1)
                for a in areas:
                    self.raw[a] += party or 1
        self.adjust = {a: n for a, n in c.execute("SELECT area, adjust FROM occupancy_offsets") if a in self.limits}
        self._floor(tuple(self.adjust), write=False)  # no write while the store reloads (after a rollback too)

    def _floor(self, areas: tuple[str, ...], write: bool = True) -> None:
        """A correction lowered a count the people it missed then left: the count stays at zero, and the
        correction shrinks with it, so that it never hides people who come in later."""
        low = [a for a in areas if self.adjust.get(a, 0) < 0 and self.raw[a] + self.adjust[a] < 0]
        for a in low:
            self.adjust[a] = -self.raw[a]
        if low and write:
            try:
                with self.store.tx() as c:
                    c.executemany("UPDATE occupancy_offsets SET adjust=? WHERE area=?",
                                  [(self.adjust[a], a) for a in low])
            except sqlite3.Error as e:  # in force in memory; a reload brings the stored one back, floored again
                log.warning("occupancy: the database refused the corrected count's floor: %s", e)

    # -- a supervisor's correction ---------------------------------------------------------------------
    def correct(self, area: str, count: int, at: float, actor: str | None, reason: str | None) -> int:
        """Set a limited area's count (in the caller's transaction); returns the count it replaces."""
        previous, adjust = self.count(area), count - self.raw[area]
        with self.store.tx() as c:
            c.execute("INSERT OR REPLACE INTO occupancy_offsets(area, adjust, at, actor, reason) VALUES(?,?,?,?,?)",
                      (area, adjust, at, actor, reason))
        self.adjust[area] = adjust
        return previous

    def areas(self) -> list[dict]:
        """The muster's and the metrics' view: each limited area's count, reserved places and limit."""
        return [{"area": a, "count": self.count(a), "reserved": self.reserved_n[a], "max_occupancy": n}
                for a, n in sorted(self.limits.items())]
