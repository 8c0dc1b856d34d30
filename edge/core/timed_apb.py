"""P31, timed anti-passback: the last entry of each credential through each timed door, in memory for the
decision and in the `timed_entries` table, written in the grant's own transaction, so a restart does not let
anyone in again early. Only entries still inside their door's time are kept, in memory and on disk."""
from __future__ import annotations

import sqlite3


ANTIPASSBACK_S = 300.0  # P31: a timed door's time when its antipassback_s is unset


class LastEntries:
    def __init__(self, windows: dict[str, float]):
        self.windows = windows  # timed door -> its antipassback_s
        # per door, by credential, oldest first (an entry is moved to the end), so pruning stops at the first live one
        self.at: dict[str, dict[str, float]] = {door: {} for door in windows}

    def load(self, conn: sqlite3.Connection, now: float) -> None:
        """The entries of the timed doors still inside their time, from before a stop."""
        if not self.windows:
            return
        for door, ref, at in conn.execute("SELECT door, credential, at FROM timed_entries ORDER BY at"):
            if door in self.windows and abs(now - at) < self.windows[door]:
                self.at[door][ref] = at

    def last(self, door: str, ref: str) -> float | None:
        entries = self.at.get(door)
        return entries.get(ref) if entries else None

    def entered(self, door: str, ref: str, now: float) -> None:
        """In memory, at once (it holds while the database refuses writes, SPEC §6)."""
        entries = self.at[door]
        entries.pop(ref, None)
        entries[ref] = now
        window = self.windows[door]
        while entries:
            oldest = next(iter(entries))
            if abs(now - entries[oldest]) < window:
                break
            del entries[oldest]

    def undone(self, door: str, ref: str) -> None:
        """A grant nobody walked through (a lane's `access.undone`) was no entry."""
        self.at[door].pop(ref, None)

    def write(self, conn: sqlite3.Connection, door: str, ref: str, now: float) -> None:
        """In the grant's transaction; the door's entries past their time go with it."""
        conn.execute("INSERT OR REPLACE INTO timed_entries(door, credential, at) VALUES(?,?,?)", (door, ref, now))
        conn.execute("DELETE FROM timed_entries WHERE door=? AND at <= ?", (door, now - self.windows[door]))

    @staticmethod
    def erase(conn: sqlite3.Connection, door: str, ref: str) -> None:
        conn.execute("DELETE FROM timed_entries WHERE door=? AND credential=?", (door, ref))
