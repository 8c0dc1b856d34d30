"""Opening the database, migrations, transactions and the small tables mirrored in memory."""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sqlite3
import threading
import time
import uuid
from typing import Callable
from pathlib import Path

from edge.errors import GatekeeperError
from edge.store.migrations import MIGRATIONS
from edge.store.mirror import Mirrors

log = logging.getLogger(__name__)


class _Tx:
    """Store.tx(): the store's lock held throughout, BEGIN IMMEDIATE unless a transaction is under way, COMMIT
    at the end of the outermost, ROLLBACK on any exception. A class, not a generator: a scan enters three
    of these before its door opens, and a generator-based manager costs several more calls each."""

    __slots__ = ("store", "deferred")

    def __init__(self, store: Store):
        self.store = store
        self.deferred: dict[str, str] | None = None  # set by the outermost: what it wrote for the deferrals

    def __enter__(self) -> sqlite3.Connection:
        s = self.store
        s.lock.acquire()
        if not s._in_tx:
            try:
                self.deferred = s._begin()
            except BaseException:
                s.lock.release()
                raise
        return s.conn

    def __exit__(self, etype, exc, tb) -> bool:
        s = self.store
        try:
            if self.deferred is None:
                return False  # joined an outer transaction: that one commits or rolls back
            if etype is not None:
                s._undo(self.deferred)
                return False
            try:
                s._commit()
            except BaseException:
                s._undo(self.deferred)
                raise
            s._committed()  # the journal's listeners, once the entries are durable
            return False
        finally:
            s.lock.release()


def wal_limit(folder: Path) -> int:
    """5% of the disk, between 1 MiB and 64 MiB."""
    try:
        total = shutil.disk_usage(folder).total
    except OSError:
        total = 0
    return min(max(total // 20, 1 << 20), 64 << 20)


def _statements(script: str):
    """The statements of a migration, one at a time (a trigger's body has semicolons of its own)."""
    buf = ""
    for part in script.split(";"):
        buf += part + ";"
        if sqlite3.complete_statement(buf):
            if buf.strip(" \n;"):
                yield buf
            buf = ""
    if buf.strip(" \n;"):
        yield buf


def dict_rows(cur: sqlite3.Cursor) -> list[dict]:
    """A query's rows as column-name dicts (the API's views of the gate's own records)."""
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur]


class StoreError(GatekeeperError):
    """The database cannot be opened or is not ours."""


class Store(Mirrors):
    """The gate's one database. One writer (the daemon's loop); CLI tools may write too (SQLite locks)."""

    def __init__(self, path: str | os.PathLike, *, durable: bool = True):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            created = not self.path.exists()
            self.conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10.0)
            self.conn.execute("PRAGMA journal_mode=WAL")
            # FULL: a committed decision survives a power cut (SPEC §6); NORMAL only survives a crash.
            self._sync = "FULL" if durable else "NORMAL"
            self.conn.execute(f"PRAGMA synchronous={self._sync}")
            self.conn.execute("PRAGMA busy_timeout=10000")
            self.conn.execute("PRAGMA temp_store=MEMORY")
            # After a checkpoint the WAL file is cut back to this size, so a backlog written after a full
            # disk cannot leave a WAL that fills the disk again (SPEC §6); sized to the disk, so that on a
            # large one a snapshot's staging does not shrink and regrow it at every checkpoint.
            self.conn.execute(f"PRAGMA journal_size_limit={wal_limit(self.path.parent)}")
            self._migrate()
        except sqlite3.DatabaseError as e:
            raise StoreError(f"{self.path}: cannot open the database: {e}") from None
        self.lock = threading.RLock()
        self._in_tx = False
        # "The journal grew": called after each commit that appended to it (the link's outbox, the live
        # feed); the one place that says so, whoever appended
        self.journal_listeners: list[Callable[[], None]] = []
        # how they are told: at once, or (the daemon) once the door of the scan under way is driven
        self.announce_via: Callable[[Callable[[], None]], None] = lambda fn: fn()
        self._appended = False
        self._deferred: dict[str, str] = {}  # meta values that ride along with the next commit
        self.overlay: dict[str, set[str]] = {"consumed": set(), "signoffs": set()}  # see Mirrors.hold
        if created:
            log.info("created database %s", self.path)
        self.epoch = self._ensure_meta("epoch", lambda: uuid.uuid4().hex)
        self._ensure_meta("created_at", lambda: repr(time.time()))
        self._version_seen = -1
        self._seen: dict[str, int] = {}  # the `versions` counters as last read
        self.keys_changed = False  # another process changed the trusted keys: the gate rebuilds its keyring
        self.refresh(force=True)

    def _migrate(self) -> None:
        have = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if have > len(MIGRATIONS):
            raise StoreError(f"{self.path}: schema version {have} is newer than this gatekeeper ({len(MIGRATIONS)})")
        for n in range(have, len(MIGRATIONS)):
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                for stmt in _statements(MIGRATIONS[n]):
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
        if key in self._deferred:
            return self._deferred[key]
        row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute("INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value", (key, value))
        self._deferred.pop(key, None)

    def defer_meta(self, key: str, value: str) -> None:
        """A hint for restarts (the outbox watermark, when the central was last heard): written with the
        next transaction, so it costs no durable commit of its own. `flush_deferred` writes it now."""
        self._deferred[key] = value

    def flush_deferred(self, durable: bool = True) -> None:
        """Write what was deferred now. Not `durable`: no fsync of its own (a power cut may lose it, a
        crash does not), for hints whose loss only costs work (events sent twice)."""
        if not self._deferred:
            return
        with self.lock:
            if not durable:
                self.conn.execute("PRAGMA synchronous=NORMAL")
            try:
                with self.tx():
                    pass  # tx() writes what was deferred
            finally:
                if not durable:
                    self.conn.execute(f"PRAGMA synchronous={self._sync}")

    def tx(self) -> _Tx:
        """One write transaction (`with store.tx() as conn:`); nested use joins the outer one."""
        return _Tx(self)

    def _begin(self) -> dict[str, str]:
        """BEGIN, with what was deferred written first; returns that, for a rollback to put back."""
        self.conn.execute("BEGIN IMMEDIATE")
        self._in_tx = True
        deferred, self._deferred = self._deferred, {}
        if deferred:
            try:
                self.conn.executemany("INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE"
                                      " SET value=excluded.value", deferred.items())
            except BaseException:
                self._undo(deferred)
                raise
        return deferred

    def _commit(self) -> None:
        self.conn.execute("COMMIT")
        self._in_tx = False

    def _committed(self) -> None:
        if self._appended:
            self._appended = False
            self.announce_via(self._announce)
        # Nothing about data_version here: it moves only for other connections' commits, and reading
        # it now would swallow one committed since the last scan (a revocation imported meanwhile).

    def _undo(self, deferred: dict[str, str]) -> None:
        self._deferred = {**deferred, **self._deferred}  # still to be written, newer values first
        self._appended = False
        self._rollback()

    def _announce(self) -> None:
        for fn in self.journal_listeners:
            fn()

    def appended(self) -> None:
        """The journal took an entry in the transaction under way: its listeners hear of it at commit."""
        self._appended = True

    def _rollback(self) -> None:
        try:
            self.conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # SQLite already rolled back (a full disk at COMMIT does that)
        self._in_tx = False
        try:
            self.refresh(force=True)  # the mirrors may hold rolled-back changes
        except sqlite3.Error as e:
            self._version_seen = -1  # reloaded at the next scan
            log.error("cannot reload the decision's lists after a rollback: %s", e)

    def checkpoint(self, mode: str = "PASSIVE") -> None:
        """Move the write-ahead log back into the database file (and cut it to its size limit)."""
        try:
            self.conn.execute(f"PRAGMA wal_checkpoint({mode})")
        except sqlite3.Error as e:
            log.warning("checkpoint refused: %s", e)

    def close(self) -> None:
        try:
            self.conn.close()
        except sqlite3.Error:
            pass

    def genesis_hash(self) -> str:
        return hashlib.sha256(self.epoch.encode()).hexdigest()
