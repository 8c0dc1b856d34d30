"""Opening the database, migrations, transactions and the small tables mirrored in memory."""
from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

from edge.errors import GatekeeperError
from edge.store.migrations import MIGRATIONS
from edge.store.permits import active_permits

log = logging.getLogger(__name__)


def dict_rows(cur: sqlite3.Cursor) -> list[dict]:
    """A query's rows as column-name dicts (the API's views of the gate's own records)."""
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur]


class StoreError(GatekeeperError):
    """The database cannot be opened or is not ours."""


class Store:
    """The gate's one database. One writer (the daemon's loop); CLI tools may write too (SQLite locks)."""

    def __init__(self, path: str | os.PathLike, *, durable: bool = True):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            created = not self.path.exists()
            self.conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10.0)
            self.conn.execute("PRAGMA journal_mode=WAL")
            # FULL: a committed decision survives a power cut (SPEC §6); NORMAL only survives a crash.
            self.conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            self.conn.execute("PRAGMA busy_timeout=10000")
            self.conn.execute("PRAGMA temp_store=MEMORY")
            self._migrate()
        except sqlite3.DatabaseError as e:
            raise StoreError(f"{self.path}: cannot open the database: {e}") from None
        self.lock = threading.RLock()
        self._in_tx = False
        if created:
            log.info("created database %s", self.path)
        self.epoch = self._ensure_meta("epoch", lambda: uuid.uuid4().hex)
        self._ensure_meta("created_at", lambda: repr(time.time()))
        self._version_seen = -1
        self.refresh()

    def _migrate(self) -> None:
        have = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if have > len(MIGRATIONS):
            raise StoreError(f"{self.path}: schema version {have} is newer than this gatekeeper ({len(MIGRATIONS)})")
        for n in range(have, len(MIGRATIONS)):
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                for stmt in MIGRATIONS[n].split(";"):
                    if stmt.strip():
                        self.conn.execute(stmt)
                self.conn.execute(f"PRAGMA user_version={n + 1}")
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise

    def _ensure_meta(self, key: str, make) -> str:
        row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        if row:
            return row[0]
        value = make()
        self.conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES(?, ?)", (key, value))
        return self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()[0]

    def meta(self, key: str, default: str | None = None) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute("INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value", (key, value))

    @contextmanager
    def tx(self):
        """One write transaction; nested use joins the outer one."""
        with self.lock:
            if self._in_tx:
                yield self.conn
                return
            self.conn.execute("BEGIN IMMEDIATE")
            self._in_tx = True
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                self._in_tx = False
                self.refresh(force=True)  # the mirrors may hold rolled-back changes
                raise
            self.conn.execute("COMMIT")
            self._in_tx = False
            self._version_seen = self._data_version()

    # In-memory mirrors of the small tables the decision reads on every scan. Another process
    # (`gatekeeper allowlist import`) may change them: PRAGMA data_version tells us, cheaply.
    def _data_version(self) -> int:
        return self.conn.execute("PRAGMA data_version").fetchone()[0]

    def refresh(self, force: bool = False) -> bool:
        """Reload the mirrors if another connection committed since we last looked."""
        v = self._data_version()
        if v == self._version_seen and not force:
            return False
        c = self.conn
        # revocations from the central system, and the gate's own (P4 amendments, returned permits)
        self.revoked = {r[0] for r in c.execute("SELECT ref FROM revocations UNION SELECT ref FROM local_revocations")}
        self.blocked_holders = {r[0] for r in c.execute("SELECT value FROM blocklist WHERE kind='holder'")}
        # Passes carry only the first 16 hex characters of id_hash (SPEC §3 `idh`): compare on those.
        self.blocked_idh = {r[0][:16] for r in c.execute("SELECT value FROM blocklist WHERE kind='id_hash'")}
        self.consumed = {r[0] for r in c.execute("SELECT visit FROM consumed")}
        self.signoffs = {r[0] for r in c.execute("SELECT visit FROM signoffs")}
        self.presence = {r[0]: r[1] for r in c.execute("SELECT credential, area FROM presence")}
        self.permits = active_permits(c)  # P14: permits made here outlive any snapshot
        self._version_seen = v
        return True

    def close(self) -> None:
        try:
            self.conn.close()
        except sqlite3.Error:
            pass

    def genesis_hash(self) -> str:
        return hashlib.sha256(self.epoch.encode()).hexdigest()
