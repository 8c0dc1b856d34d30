"""Alarms a guard must see and acknowledge (P6, P17, P18, P19): the open ones, and who acknowledged which.

The `alarms` table is filled by a trigger on the journal (edge/store/migrations.py), so an alarm is listed
whoever journaled it, this daemon or another process. `alarm.duress` is not one of them: P34 keeps it out of
every guard's view.
"""
from __future__ import annotations

import json

from edge.errors import Refused
from edge.store.journal import Journal, rfc3339

ALARM_TYPES = ("alarm.raised", "door.forced", "door.held_open", "device.fault")  # the trigger's list too
HIGH_BY_DEFAULT = frozenset({"door.forced"})  # someone may be inside: the one that cannot wait
MAX_LISTED = 100
# Open alarms are never pruned while fewer than this many are open; beyond it, the oldest whose event the
# journal's retention already dropped go, so a device flapping for months cannot grow the table without end.
MAX_OPEN_KEPT = 1000


def priority(etype: str, data: dict) -> str:
    p = data.get("priority")
    if p in ("high", "normal"):
        return p
    if isinstance(p, bool):  # older events said priority as a flag
        return "high" if p else "normal"
    return "high" if etype in HIGH_BY_DEFAULT else "normal"


class Alarms:
    def __init__(self, store, journal: Journal):
        self.store, self.journal = store, journal

    def open(self, limit: int = MAX_LISTED) -> list[dict]:
        """The unacknowledged alarms, newest first."""
        rows = self.store.conn.execute(
            "SELECT seq, type, time, data FROM alarms WHERE acked_at IS NULL ORDER BY seq DESC LIMIT ?",
            (limit,)).fetchall()
        out = []
        for seq, etype, t, text in rows:
            data = json.loads(text)
            out.append({"seq": seq, "type": etype, "time": t, "data": data, "priority": priority(etype, data)})
        return out

    def acknowledge(self, seq: int, person: str, role: str, note: str | None, now: float) -> dict:
        """Journal `alarm.acknowledged` with the person and mark the alarm so, in one transaction."""
        row = self.store.conn.execute("SELECT type, data, acked_at, acked_by FROM alarms WHERE seq=?",
                                      (seq,)).fetchone()
        if row is None:
            raise Refused(404, None, f"no alarm with seq {seq}", reason="no_such_alarm")
        etype, text, acked_at, acked_by = row
        if acked_at is not None:
            raise Refused(409, None, f"alarm {seq} was acknowledged by {acked_by} at {rfc3339(acked_at)}",
                          reason="already_acknowledged")
        data = json.loads(text)
        ack = {"alarm_seq": seq, "alarm_type": etype}
        for k in ("alarm", "door"):
            if data.get(k) is not None:
                ack[k] = data[k]
        ack.update(actor=person, actor_role=role, note=note)
        with self.store.tx() as c:
            entry = self.journal.append("alarm.acknowledged", ack, now)
            c.execute("UPDATE alarms SET acked_at=?, acked_by=? WHERE seq=? AND acked_at IS NULL", (now, person, seq))
        return {"seq": seq, "acknowledged_by": person, "acknowledged_at": entry.time, "event_seq": entry.seq}


def prune(conn) -> int:
    """P19 retention, run with the journal's: an acknowledged alarm goes once its event left the journal."""
    return conn.execute(
        "DELETE FROM alarms WHERE seq < (SELECT coalesce(min(seq), 0) FROM journal) AND (acked_at IS NOT NULL"
        " OR seq < (SELECT seq FROM alarms WHERE acked_at IS NULL ORDER BY seq DESC LIMIT 1 OFFSET ?))",
        (MAX_OPEN_KEPT - 1,)).rowcount
