"""P36: visitors and contractors still on site when their pass or permit ends (a walk-in: when visiting hours end).

The gate that journaled a holder's last entry watches it: the entry's grant writes one row (in the grant's own
transaction), a peer gate's later entry takes the watch away, and a tick of the daemon reads only the rows that
are due, through a partial index. The scan path only ever writes that one row, for these two categories.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from edge.core.model import Credential
from edge.store.journal import Entry, rfc3339

WATCHED = frozenset({"visitor", "contractor"})
DUE_BATCH = 200  # rows one tick handles; the next tick takes the rest


def deadline(cred: Credential, entered: float, walkin: bool, visiting_hours: tuple | None, tz) -> float | None:
    """When the holder who entered at `entered` overstays: the end of the pass or permit; for a walk-in, the end of
    that day's visiting hours if it comes first. None: nothing ends (no watch)."""
    ends = cred.valid_until
    if walkin and visiting_hours is not None:
        _days, _start, end_min = visiting_hours
        local = datetime.fromtimestamp(entered, tz)
        day_end = (local.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(minutes=end_min)).timestamp()
        if day_end > entered:  # entered after hours (a supervisor's doing): the pass's end stands
            ends = day_end if ends is None else min(ends, day_end)
    return ends


class Overstays:
    """The watch: written in the caller's transaction (`watch`, `dropped`) or by the tick (`due`)."""

    def __init__(self, store, journal, settings_of):
        self.store, self.journal = store, journal
        self.settings_of = settings_of  # the gate's current Settings (a SIGHUP may change them)

    def watch(self, cred: Credential, door_name: str, area: str, now: float) -> None:
        """A grant into `area` at this gate: this gate now holds the holder's last entry. In the grant's transaction."""
        if cred.category not in WATCHED:
            return
        c = self.store.conn
        walkin = cred.kind == "pass" and c.execute("SELECT 1 FROM visits WHERE id=?", (cred.visit_key,)).fetchone()
        s = self.settings_of()
        ends = deadline(cred, now, bool(walkin), s.schedules.get("visiting_hours"), s.tz)
        if ends is None:
            return
        # raised once: a new entry with the same end keeps the mark (P36 "once"), a renewed permit clears it
        c.execute(
            "INSERT INTO overstays(credential, holder, category, host, visit, area, door, entered, deadline)"
            " VALUES(?,?,?,?,?,?,?,?,?) ON CONFLICT(credential) DO UPDATE SET holder=excluded.holder,"
            " host=excluded.host, visit=excluded.visit, area=excluded.area, door=excluded.door,"
            " entered=excluded.entered, deadline=excluded.deadline,"
            " raised=CASE WHEN deadline=excluded.deadline THEN raised END",
            (cred.ref, cred.holder, cred.category, cred.host, cred.visit if cred.kind == "pass" else None, area,
             door_name, now, ends))

    def dropped(self, ref: str, at: float) -> None:
        """A peer gate journaled a later entry of this credential: it watches now. In the caller's transaction."""
        self.store.conn.execute("DELETE FROM overstays WHERE credential=? AND entered<=?", (ref, at))

    def due(self, now: float) -> list[Entry]:
        """The tick: each watched holder still on site past their deadline raises `visit.overstay` once; the rows
        of those who left are dropped. In a transaction of its own."""
        c = self.store.conn
        rows = c.execute("SELECT credential, holder, category, host, visit, area, door, entered, deadline"
                         " FROM overstays WHERE raised IS NULL AND deadline<=? ORDER BY deadline LIMIT ?",
                         (now, DUE_BATCH)).fetchall()
        if not rows:
            return []
        entries = []
        with self.store.tx():
            for ref, holder, category, host, visit, area, door, entered, ends in rows:
                if ref not in self.store.presence:  # left (here or at a peer gate) before the end
                    c.execute("DELETE FROM overstays WHERE credential=?", (ref,))
                    continue
                e = self.journal.append("visit.overstay", {
                    "holder": holder, "category": category, "host": host, "visit": visit, "area": area,
                    "door": door, "credential_ref": ref, "entered": rfc3339(entered), "until": rfc3339(ends),
                    "priority": "normal"}, now)
                c.execute("UPDATE overstays SET raised=?, seq=? WHERE credential=?", (now, e.seq, ref))
                entries.append(e)
        return entries

    def listed(self) -> list[dict]:
        """GET /overstays: the holders raised and still on site, oldest deadline first."""
        rows = self.store.conn.execute(
            "SELECT credential, holder, category, host, visit, area, door, entered, deadline, raised, seq"
            " FROM overstays WHERE raised IS NOT NULL ORDER BY deadline").fetchall()
        return [{"holder": h, "category": cat, "host": host, "visit": v, "area": a, "door": d, "credential_ref": ref,
                 "entered": rfc3339(en), "until": rfc3339(dl), "raised": rfc3339(r), "event_seq": seq}
                for ref, h, cat, host, v, a, d, en, dl, r, seq in rows if ref in self.store.presence]
