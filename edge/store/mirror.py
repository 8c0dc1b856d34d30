"""The small tables a scan reads, mirrored in memory, and every change to them: the SQL and its mirror
written together, here and nowhere else, by the gate, the link, the desks and the API alike.

Another process (`gatekeeper allowlist import`, the sync worker, a tool) may change the tables too:
PRAGMA data_version says cheaply whether anyone else committed, and the `versions` counters, moved by
triggers whoever writes, say which mirrors to reload. A commit of this connection never moves
data_version, so a change made here must reach its mirror here: that is what the methods below do.
"""
from __future__ import annotations

import sqlite3

from edge.core.model import Credential
from edge.store.permits import active_permits

# which mirrors each `versions` counter covers (migrations 6 and 7 keep the counters)
LISTS, KEYS, STATE, CALENDAR = "lists", "keys", "state", "calendar"


class Mirrors:
    """Mixed into Store, which provides `conn`, `tx()` and `overlay`."""
    conn: sqlite3.Connection
    overlay: dict[str, set[str]]
    revoked: set[str]
    blocked_holders: set[str]
    blocked_idh: set[str]
    watched_holders: dict[str, str | None]  # P37: holder -> the entry's reason
    watched_idh: dict[str, str | None]
    consumed: set[str]
    signoffs: set[str]
    presence: dict[str, str]
    permits: dict[str, Credential]
    calendar: list[tuple[str, str, str | None]]  # P24: the synced days (date, kind, as)
    calendar_changed: bool  # the gate makes its day maps again when this is set
    presence_watch = None  # P35: told of every presence move and reload (edge/core/occupancy.py), when set

    def _data_version(self) -> int:
        return self.conn.execute("PRAGMA data_version").fetchone()[0]

    def refresh(self, force: bool = False) -> bool:
        """Reload the mirrors another connection changed since we last looked (all of them with `force`:
        at open, and after a rollback that may have left changes in them)."""
        v = self._data_version()
        if v == self._version_seen and not force:
            return False
        self._version_seen = v
        c = self.conn
        counters = dict(c.execute("SELECT name, n FROM versions"))
        if force or counters.get(LISTS) != self._seen.get(LISTS):
            # revocations from the central system, and the gate's own (P4 amendments, returned permits)
            self.revoked = {r[0] for r in c.execute("SELECT ref FROM revocations UNION SELECT ref FROM local_revocations")}
            self.blocked_holders = {r[0] for r in c.execute(
                "SELECT value FROM blocklist WHERE kind='holder' AND action='deny'")}
            # Passes carry only the first 16 hex characters of id_hash (SPEC §3 `idh`): compare on those.
            self.blocked_idh = {r[0][:16] for r in c.execute(
                "SELECT value FROM blocklist WHERE kind='id_hash' AND action='deny'")}
            # P37: the watch list grants as usual and alerts the guards
            self.watched_holders = dict(c.execute(
                "SELECT value, reason FROM blocklist WHERE kind='holder' AND action='alert'"))
            self.watched_idh = {v[:16]: r for v, r in c.execute(
                "SELECT value, reason FROM blocklist WHERE kind='id_hash' AND action='alert'")}
        if counters.get(KEYS) != self._seen.get(KEYS):
            self.keys_changed = KEYS in self._seen  # the first look is the gate's own start
        if force or counters.get(STATE) != self._seen.get(STATE):
            self.consumed = {r[0] for r in c.execute("SELECT visit FROM consumed")} | self.overlay["consumed"]
            self.signoffs = {r[0] for r in c.execute("SELECT visit FROM signoffs")} | self.overlay["signoffs"]
            self.presence = {r[0]: r[1] for r in c.execute("SELECT credential, area FROM presence")}
            if self.presence_watch is not None:
                self.presence_watch.reloaded()
            self.permits = active_permits(c)  # P14: permits made here outlive any snapshot
        if force or counters.get(CALENDAR) != self._seen.get(CALENDAR):
            self.calendar = [tuple(r) for r in c.execute("SELECT date, kind, as_day FROM calendar ORDER BY date")]
            self.calendar_changed = True
        self._seen = counters
        return True

    def watch_reason(self, holder: str, idh: str | None) -> str | None:
        """P37: the reason of the watch-list entry naming this holder or ID hash (prefix)."""
        if holder in self.watched_holders:
            return self.watched_holders[holder]
        return self.watched_idh.get(idh[:16]) if idh else None

    # -- changes: each in the caller's transaction (or its own), table and mirror together ----------
    def consume(self, visit: str, at: float) -> None:
        """P8: the visit's pass is used up, at every gate."""
        with self.tx() as c:
            c.execute("INSERT OR IGNORE INTO consumed(visit, at) VALUES(?, ?)", (visit, at))
        self.consumed.add(visit)

    def sign_off(self, visit: str, host: str | None, at: float) -> bool:
        """P9: the host signed the visit off; False if it already was."""
        with self.tx() as c:
            new = c.execute("INSERT OR IGNORE INTO signoffs(visit, host, at) VALUES(?,?,?)", (visit, host, at)).rowcount
        self.signoffs.add(visit)
        return bool(new)

    def revoke_locally(self, ref: str, at: float, by: str) -> None:
        """A credential this gate (or a peer) voided: a replaced pass (P4), a returned permit card (P14)."""
        with self.tx() as c:
            c.execute("INSERT OR REPLACE INTO local_revocations(ref, at, by) VALUES(?,?,?)", (ref, at, by))
        self.revoked.add(ref)

    def unrevoke_locally(self, ref: str) -> None:
        """A card handed out again with a new permit (P14); a revocation from the central system stays."""
        with self.tx() as c:
            c.execute("DELETE FROM local_revocations WHERE ref=?", (ref,))
            central = c.execute("SELECT 1 FROM revocations WHERE ref=?", (ref,)).fetchone()
        if not central:
            self.revoked.discard(ref)

    def move_presence(self, ref: str, holder: str | None, category: str | None, area: str | None, party: int,
                      at: float) -> None:
        """P7: where a credential is; `area` None means it left the site."""
        with self.tx() as c:
            if area is None:
                c.execute("DELETE FROM presence WHERE credential=?", (ref,))
                if ref.startswith("badge:"):  # P25: a badge holder's sign-off covers one stay, used up leaving
                    c.execute("DELETE FROM signoffs WHERE visit=?", (ref,))
            else:
                c.execute("INSERT OR REPLACE INTO presence(credential, holder, category, area, since, party)"
                          " VALUES(?,?,?,?,?,?)", (ref, holder or "", category or "", area, at, party or 1))
        if area is None:
            self.presence.pop(ref, None)
            self.signoffs.discard(ref)
            self.overlay["signoffs"].discard(ref)
        else:
            self.presence[ref] = area
        if self.presence_watch is not None:
            self.presence_watch.moved(ref, area, party)

    def permits_changed(self) -> None:
        """P14: a permit made, renewed or returned here: the active permits as the table now says."""
        self.permits = active_permits(self.conn)

    # -- consequences in force whose writes are held (SPEC §6) --------------------------------------
    def hold(self, table: str, key: str) -> None:
        """In the mirror at once, and kept across reloads until the held writes are committed."""
        self.overlay[table].add(key)
        getattr(self, table).add(key)

    def held_written(self) -> None:
        """Every held write is committed: the database itself now says what the overlay said."""
        if any(self.overlay.values()):
            for keys in self.overlay.values():
                keys.clear()
            self.refresh(force=True)
