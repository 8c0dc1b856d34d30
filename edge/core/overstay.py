"""P36: visitors and contractors still on site when their pass or permit ends (a walk-in: when visiting hours end).

The gate that journaled a holder's last entry watches it. The scan only notes the entry in memory (one dict
entry, for these two categories); the daemon's tick writes the notes into the watch table in one transaction of
its own, then reads only the rows that are due, through a partial index. A crash between an entry and the next
tick loses no watch: at start the journal's entries since the last written note are read again (a badge's end
from the allow-list or a permit, a walk-in's from its visit; a pass issued elsewhere carries its end only in
its text, and is watched from its next entry). A peer gate's later entry takes the watch away.
"""
from __future__ import annotations

from datetime import datetime, timedelta

import json
import logging

from edge.core.model import Credential
from edge.store.journal import Entry, rfc3339

log = logging.getLogger(__name__)

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
    """The watch: `entered` on the scan path (memory only), `flush` and `due` from the tick, `dropped` in the
    caller's transaction (a peer gate's event)."""

    def __init__(self, store, journal, settings_of):
        self.store, self.journal = store, journal
        self.settings_of = settings_of  # the gate's current Settings (a SIGHUP may change them)
        self.pending: dict[str, tuple[Credential, str, str, float]] = {}  # ref -> (cred, door, area, entered)

    def entered(self, cred: Credential, door_name: str, area: str, now: float) -> None:
        """A grant into `area` at this gate: this gate now holds the holder's last entry. Memory only."""
        if cred.category in WATCHED:
            self.pending[cred.ref] = (cred, door_name, area, now)

    def flush(self) -> None:
        """The notes taken since the last tick, into the watch table, in one transaction."""
        with self.store.tx() as c:
            for cred, door_name, area, at in self.pending.values():
                self._write(cred, door_name, area, at)
            c.execute("INSERT INTO meta(key, value) VALUES('overstay_seq', ?)"
                      " ON CONFLICT(key) DO UPDATE SET value=excluded.value", (str(self.journal.last_seq()),))
        self.pending.clear()

    def _write(self, cred: Credential, door_name: str, area: str, at: float) -> None:
        c = self.store.conn
        walkin = cred.kind == "pass" and c.execute("SELECT 1 FROM visits WHERE id=?", (cred.visit_key,)).fetchone()
        s = self.settings_of()
        ends = deadline(cred, at, bool(walkin), s.schedules.get("visiting_hours"), s.tz)
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
             door_name, at, ends))

    def recover(self) -> None:
        """At start: the entries journaled after the last flush (a crash or a stop came first) are noted again."""
        c = self.store.conn
        seen = self.store.meta("overstay_seq")
        if seen is None:  # a journal from before the watch: nothing to catch up on
            with self.store.tx():
                self.store.set_meta("overstay_seq", str(self.journal.last_seq()))
            return
        from edge.store.allowlist import lookup_badge
        rows = c.execute("SELECT seq, time, type, data FROM journal WHERE seq > ? AND type IN"
                         " ('access.granted', 'access.passage') ORDER BY seq", (int(seen),)).fetchall()
        lost = 0
        for _seq, when, etype, text in rows:
            d = json.loads(text)
            if d.get("direction") != "in" or d.get("category") not in WATCHED or not d.get("to_area"):
                continue
            if etype == "access.passage" and d.get("count") != 1:
                continue
            ref = d.get("credential_ref") or ""
            cred = lookup_badge(self.store, ref) if ref.startswith("badge:") else self._walkin(ref)
            if cred is None:
                lost += 1
                continue
            self.pending[ref] = (cred, d.get("door") or "", d["to_area"], _time(when))
        if lost:
            log.warning("overstay watch: %d entries journaled before the stop could not be watched again (passes "
                        "issued elsewhere carry their end only in their text)", lost)
        self.flush()

    def _walkin(self, ref: str) -> Credential | None:
        """A walk-in's pass, from its visit at this gate (P13)."""
        r = self.store.conn.execute("SELECT id, holder, host, areas, valid_from, valid_until, party FROM visits"
                                    " WHERE pass_ref=?", (ref,)).fetchone()
        if r is None:
            return None
        return Credential("pass", ref, r[1], "visitor", tuple(r[3].split(",")), valid_from=r[4], valid_until=r[5],
                          host=r[2], party=r[6], visit=r[0])

    def dropped(self, ref: str, at: float) -> None:
        """A peer gate journaled a later entry of this credential: it watches now. In the caller's transaction."""
        note = self.pending.get(ref)
        if note is not None and note[3] <= at:
            del self.pending[ref]
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


def _time(text: str) -> float:
    from datetime import datetime
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
