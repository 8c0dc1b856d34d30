"""Allow-list sync (SPEC §2 sync rules): change batches in version order, snapshots staged and swapped.

Parsing and staging run on a worker thread with its own SQLite connection, in small transactions, so
a 1,000,000-record snapshot neither stalls the event loop nor holds the write lock for long: decisions
keep running on the old cache and the journal keeps committing. The swap itself is a few renames in
one transaction on the gate's connection.
"""
from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from typing import Callable

from edge.link.messages import BadMessage, ChangeBatch, SnapshotChunk, parse
from edge.records import BlockEntry, RevokeRef, TrustedKey
from edge.store import Store
from edge.store.allowlist import _UPSERT

log = logging.getLogger(__name__)

STAGE_ROWS = 500  # rows per staging transaction: the journal waits at most this long for the lock

CREDENTIALS_DDL = """CREATE TABLE {name}(
    credential TEXT PRIMARY KEY, holder TEXT NOT NULL, category TEXT NOT NULL, tier TEXT,
    roles TEXT NOT NULL DEFAULT '', areas TEXT NOT NULL, valid_from REAL, valid_until REAL,
    schedule TEXT, party INTEGER NOT NULL DEFAULT 1, host TEXT, escort INTEGER NOT NULL DEFAULT 0,
    id_hash TEXT
) WITHOUT ROWID"""
STAGE_DDL = [
    CREDENTIALS_DDL.format(name="stage_credentials"),
    "CREATE TABLE stage_revocations(ref TEXT PRIMARY KEY) WITHOUT ROWID",
    "CREATE TABLE stage_blocklist(kind TEXT NOT NULL, value TEXT NOT NULL, reason TEXT, PRIMARY KEY(kind, value)) WITHOUT ROWID",
    "CREATE TABLE stage_keys(kid TEXT PRIMARY KEY, public_key TEXT NOT NULL, scope TEXT) WITHOUT ROWID",
]
STAGE_TABLES = ("stage_credentials", "stage_revocations", "stage_blocklist", "stage_keys")


def check_lists(revoke: list[RevokeRef], blocks: list[BlockEntry], keys: list[TrustedKey]) -> None:
    """What pydantic cannot check alone: one-of fields and loadable keys. BadMessage otherwise."""
    from edge.passes.keys import load_public_pem
    try:
        for r in revoke:
            r.ref()
        for b in blocks:
            b.key()
        for k in keys:
            load_public_pem(k.public_key.encode())
    except ValueError as e:
        raise BadMessage(str(e)) from None


def _key_row(k: TrustedKey) -> tuple:
    return k.kid, k.public_key, None if k.scope is None else ",".join(k.scope)


class Stager(threading.Thread):
    """The worker: parses sync messages in arrival order, stages snapshot chunks, drops old tables."""

    def __init__(self, path, post: Callable[..., None]):
        super().__init__(name="allowlist-sync", daemon=True)
        self.path = path
        self.post = post  # hands a result to the event loop
        self.jobs: queue.Queue = queue.Queue()
        self.conn: sqlite3.Connection | None = None

    def run(self) -> None:
        self.conn = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        self.conn.execute("PRAGMA busy_timeout=30000")
        self.conn.execute("PRAGMA synchronous=NORMAL")  # staging is thrown away after a crash anyway
        while True:
            job = self.jobs.get()
            if job is None:
                break
            try:
                job()
            except Exception:  # a bug must not kill sync for good: the snapshot is asked for again
                log.exception("allow-list sync job failed")
        self.conn.close()

    def stop(self) -> None:
        self.jobs.put(None)
        self.join(5)

    def submit(self, fn) -> None:
        self.jobs.put(fn)

    # -- jobs (worker thread) ------------------------------------------------------------------
    def reset_stage(self) -> None:
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        for t in STAGE_TABLES:
            c.execute(f"DROP TABLE IF EXISTS {t}")
        for ddl in STAGE_DDL:
            c.execute(ddl)
        c.execute("COMMIT")

    def stage(self, chunk: SnapshotChunk) -> None:
        c = self.conn
        rows = [r.row() for r in chunk.upserts]
        for i in range(0, len(rows), STAGE_ROWS):
            c.execute("BEGIN IMMEDIATE")
            c.executemany(_UPSERT.replace("INTO credentials", "INTO stage_credentials"), rows[i:i + STAGE_ROWS])
            c.execute("COMMIT")
        c.execute("BEGIN IMMEDIATE")
        c.executemany("INSERT OR IGNORE INTO stage_revocations(ref) VALUES(?)", [(r.ref(),) for r in chunk.revoke])
        c.executemany("INSERT OR REPLACE INTO stage_blocklist(kind, value, reason) VALUES(?,?,?)",
                      [(*b.key(), b.reason) for b in chunk.blocklist])
        c.executemany("INSERT OR REPLACE INTO stage_keys(kid, public_key, scope) VALUES(?,?,?)",
                      [_key_row(k) for k in chunk.keys])
        c.execute("COMMIT")

    def drop_old(self) -> None:
        """The replaced cache goes in small steps, so the journal never waits long for the lock."""
        c = self.conn
        exists = c.execute("SELECT 1 FROM sqlite_master WHERE name='old_credentials'").fetchone()
        if not exists:
            return
        while True:
            c.execute("BEGIN IMMEDIATE")
            n = c.execute("DELETE FROM old_credentials WHERE credential IN "
                          "(SELECT credential FROM old_credentials LIMIT 5000)").rowcount
            c.execute("COMMIT")
            if n == 0:
                break
        c.execute("DROP TABLE IF EXISTS old_credentials")


class AllowlistSync:
    """The sync rules. Everything here but the Stager's jobs runs on the event loop."""

    def __init__(self, store: Store, record: Callable[[str, dict], object], request_resync: Callable[[int], None],
                 on_keys_changed: Callable[[], None], alarm: Callable[[str, str], None], retry_s: float,
                 loop_post: Callable[..., None], topics: tuple[str, str] = ("allowlist/changes", "allowlist/snapshot")):
        self.store = store
        self.topics = topics  # (changes, snapshot): named in alarms
        self.record = record
        self.request_resync = request_resync
        self.on_keys_changed = on_keys_changed
        self.alarm = alarm
        self.retry_s = retry_s
        self.version = int(store.meta("allowlist_version", "0"))
        self.stager = Stager(store.path, loop_post)
        self.loop_post = loop_post
        self.stage_version: int | None = None
        self.stage_chunks = 0
        self.staged: set[int] = set()
        self.resync_sent_at: float | None = None

    def start(self) -> None:
        self.stager.start()
        self.stager.submit(self.stager.drop_old)  # left over from a crash right after a swap

    def stop(self) -> None:
        self.stager.stop()

    # -- change batches ------------------------------------------------------------------------
    def on_changes(self, payload: bytes, done: Callable[[], None]) -> None:
        def job():
            try:
                batch = parse(ChangeBatch, payload)
                check_lists(batch.revoke, batch.blocklist_add + batch.blocklist_remove, batch.keys_add)
            except BadMessage as e:
                self.loop_post(self._bad, self.topics[0], str(e), done)
                return
            self.loop_post(self._apply_batch, batch, done)
        self.stager.submit(job)

    def _bad(self, topic: str, why: str, done: Callable[[], None]) -> None:
        self.alarm(topic, why)
        done()

    def _apply_batch(self, b: ChangeBatch, done: Callable[[], None]) -> None:
        try:
            if b.to_version <= self.version:
                log.info("allow-list batch %d->%d: already have %d", b.from_version, b.to_version, self.version)
                return
            if b.from_version != self.version:
                log.warning("allow-list batch %d->%d does not follow %d: asking for a snapshot",
                            b.from_version, b.to_version, self.version)
                self.resync()
                return
            now = time.time()
            with self.store.tx() as c:
                c.executemany(_UPSERT, [r.row() for r in b.upserts])
                c.executemany("DELETE FROM credentials WHERE credential=?", [(d,) for d in b.deletes])
                c.executemany("INSERT OR IGNORE INTO revocations(ref, at) VALUES(?, ?)",
                              [(r.ref(), now) for r in b.revoke])
                c.executemany("INSERT OR REPLACE INTO blocklist(kind, value, reason) VALUES(?,?,?)",
                              [(*e.key(), e.reason) for e in b.blocklist_add])
                c.executemany("DELETE FROM blocklist WHERE kind=? AND value=?", [e.key() for e in b.blocklist_remove])
                c.executemany("INSERT OR REPLACE INTO keys(kid, public_key, scope) VALUES(?,?,?)",
                              [_key_row(k) for k in b.keys_add])
                c.executemany("DELETE FROM keys WHERE kid=?", [(k,) for k in b.keys_remove])
                self.store.set_meta("allowlist_version", str(b.to_version))
                self.store.set_meta("central_heard_at", repr(now))
                self.record("allowlist.applied", {
                    "source": "batch", "from_version": b.from_version, "to_version": b.to_version,
                    "upserts": len(b.upserts), "deletes": len(b.deletes), "revokes": len(b.revoke),
                    "blocklist_add": len(b.blocklist_add), "blocklist_remove": len(b.blocklist_remove),
                    "keys_add": len(b.keys_add), "keys_remove": len(b.keys_remove)})
            self.version = b.to_version
            self.store.refresh(force=True)
            if b.keys_add or b.keys_remove:
                self.on_keys_changed()
        finally:
            done()

    # -- snapshots -----------------------------------------------------------------------------
    def resync(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and self.resync_sent_at is not None and now - self.resync_sent_at < self.retry_s:
            return  # one request per retry period: a burst of out-of-order batches asks once
        self.resync_sent_at = now
        self.request_resync(self.version)

    def check_retry(self) -> None:
        """An incomplete snapshot (or an unanswered resync) is asked for again after retry_s."""
        if self.resync_sent_at is not None and time.monotonic() - self.resync_sent_at >= self.retry_s:
            self.resync(force=True)

    def on_snapshot(self, payload: bytes, done: Callable[[], None]) -> None:
        def job():
            try:
                chunk = parse(SnapshotChunk, payload)
                check_lists(chunk.revoke, chunk.blocklist, chunk.keys)
            except BadMessage as e:
                self.loop_post(self._bad, self.topics[1], str(e), done)
                return
            self.loop_post(self._chunk_arrived, chunk, done)
        self.stager.submit(job)

    def _chunk_arrived(self, chunk: SnapshotChunk, done: Callable[[], None]) -> None:
        if self.stage_version != chunk.version or self.stage_chunks != chunk.chunks:
            # A chunk of another version discards what was staged (SPEC §2).
            self.stage_version, self.stage_chunks, self.staged = chunk.version, chunk.chunks, set()
            self.stager.submit(self.stager.reset_stage)
        if chunk.chunk in self.staged:
            done()
            return
        self.staged.add(chunk.chunk)
        complete = len(self.staged) == self.stage_chunks
        version = chunk.version

        def job():
            self.stager.stage(chunk)
            self.loop_post(done)
            if complete:
                self.loop_post(self._swap, version)
        self.stager.submit(job)

    def _swap(self, version: int) -> None:
        if self.stage_version != version or len(self.staged) != self.stage_chunks:
            return  # superseded meanwhile
        now = time.time()
        with self.store.tx() as c:
            counts = {t: c.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in STAGE_TABLES}
            c.execute("DROP TABLE IF EXISTS old_credentials")
            c.execute("ALTER TABLE credentials RENAME TO old_credentials")
            c.execute("ALTER TABLE stage_credentials RENAME TO credentials")
            c.execute("DELETE FROM revocations")
            c.execute("INSERT INTO revocations(ref, at) SELECT ref, ? FROM stage_revocations", (now,))
            c.execute("DELETE FROM blocklist")
            c.execute("INSERT INTO blocklist(kind, value, reason) SELECT kind, value, reason FROM stage_blocklist")
            c.execute("DELETE FROM keys")  # synced keys only: keys from the config are not in this table
            c.execute("INSERT INTO keys(kid, public_key, scope) SELECT kid, public_key, scope FROM stage_keys")
            for t in STAGE_TABLES[1:]:
                c.execute(f"DROP TABLE {t}")
            self.store.set_meta("allowlist_version", str(version))
            self.store.set_meta("central_heard_at", repr(now))
            self.record("allowlist.applied", {
                "source": "snapshot", "to_version": version, "from_version": self.version,
                "records": counts["stage_credentials"], "revokes": counts["stage_revocations"],
                "blocklist": counts["stage_blocklist"], "keys": counts["stage_keys"]})
        log.info("allow-list snapshot %d swapped in: %d records", version, counts["stage_credentials"])
        self.version = version
        self.stage_version, self.stage_chunks, self.staged = None, 0, set()
        self.resync_sent_at = None
        self.store.refresh(force=True)
        self.on_keys_changed()
        self.stager.submit(self.stager.drop_old)
