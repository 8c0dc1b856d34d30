"""Allow-list sync (SPEC §2 sync rules): change batches in version order, snapshots staged and swapped.

All of it runs in a worker *process* with its own SQLite connection: parsing and validating a
1,000,000-record snapshot is CPU work, and in a thread it would hold the interpreter lock away from the
decisions. The worker is the only writer of the allow-list tables and `allowlist_version`; it commits in
small transactions so the gate's journal never waits long for the write lock, and swaps a complete
snapshot in with a few renames in one transaction. The gate reads the results through SQLite (its
mirrors follow `PRAGMA data_version`) and is told what happened through a result queue.
"""
from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import queue
import sqlite3
import threading
import time
from typing import Callable

from edge.store.allowlist import bump_generation, write_lists
from edge.store.journal import rfc3339
from edge.store.records import unknown_kind_alarm
from edge.store.staging import create_credentials, drop_in_steps

log = logging.getLogger(__name__)

STAGE_ROWS = 500  # rows per staging transaction: the journal waits at most this long for the lock

STAGE_DDL = [  # beside stage_credentials (edge/store/staging.py)
    "CREATE TABLE stage_revocations(ref TEXT PRIMARY KEY) WITHOUT ROWID",
    ("CREATE TABLE stage_blocklist(kind TEXT NOT NULL, value TEXT NOT NULL, reason TEXT,"
     " action TEXT NOT NULL DEFAULT 'deny', PRIMARY KEY(kind, value)) WITHOUT ROWID"),
    "CREATE TABLE stage_keys(kid TEXT PRIMARY KEY, public_key TEXT NOT NULL, scope TEXT) WITHOUT ROWID",
    "CREATE TABLE stage_calendar(date TEXT PRIMARY KEY, kind TEXT NOT NULL, as_day TEXT) WITHOUT ROWID",  # P24
]
CALENDAR_DIFFERS = (  # P24: a row in one of calendar and stage_calendar that is not in the other
    "SELECT 1 FROM (SELECT date, kind, as_day FROM calendar EXCEPT SELECT date, kind, as_day FROM stage_calendar)"
    " UNION ALL SELECT 1 FROM (SELECT date, kind, as_day FROM stage_calendar"
    " EXCEPT SELECT date, kind, as_day FROM calendar) LIMIT 1")
STAGE_TABLES = ("stage_credentials", "stage_revocations", "stage_blocklist", "stage_keys", "stage_calendar")


class AllowlistSync:
    """The gate's side: hands messages to the worker in arrival order and acts on what comes back."""

    def __init__(self, store, request_resync: Callable[[int], None], on_applied: Callable[[bool], None],
                 alarm: Callable[[str, str], None], retry_s: float, loop_post: Callable[..., None],
                 topics: tuple[str, str] = ("allowlist/changes", "allowlist/snapshot"),
                 heard: Callable[[], None] = lambda: None):
        self.path = str(store.path)
        self.request_resync = request_resync
        self.on_applied = on_applied
        self.alarm = alarm
        self.retry_s = retry_s
        self.loop_post = loop_post
        self.topics = topics  # (changes, snapshot): named in alarms
        self.heard = heard  # P23: a well-formed batch or chunk from the central system (even a duplicate)
        self.version = int(store.meta("allowlist_version", "0"))
        self.resync_sent_at: float | None = None
        self._pending: dict[int, Callable[[], None]] = {}
        self.snapshot: dict | None = None  # the snapshot being staged: version, chunks received of chunks, records
        self._told_at = 0.0
        self._next = 0
        ctx = mp.get_context("spawn")  # a clean interpreter: no threads or sockets inherited
        self.jobs = ctx.Queue()
        self.results = ctx.Queue()
        self.proc = ctx.Process(target=worker_main, args=(self.path, self.jobs, self.results, os.getpid()),
                                name="gatekeeper-sync", daemon=True)
        self._reader = threading.Thread(target=self._read_results, name="sync-results", daemon=True)

    def start(self) -> None:
        self.proc.start()
        self._reader.start()
        self.jobs.put(("drop_old", -1, None))  # left over from a crash right after a swap

    def stop(self) -> None:
        self.jobs.put(None)
        self.proc.join(5)
        if self.proc.is_alive():
            self.proc.terminate()
        self.results.put(None)
        self._reader.join(5)

    def _submit(self, kind: str, payload: bytes, done: Callable[[], None]) -> None:
        self._next += 1
        self._pending[self._next] = done
        self.jobs.put((kind, self._next, payload))

    def on_changes(self, payload: bytes, done: Callable[[], None]) -> None:
        self._submit("changes", payload, done)

    def on_snapshot(self, payload: bytes, done: Callable[[], None]) -> None:
        self._submit("snapshot", payload, done)

    def _read_results(self) -> None:
        while True:
            r = self.results.get()
            if r is None:
                return
            self.loop_post(self._result, r)

    def _result(self, r: tuple) -> None:
        kind, job, info = r
        if kind in ("applied", "duplicate", "gap", "staging"):
            self.heard()
        if kind == "waiting":
            log.error("allow-list %s waits: the database refuses writes (%s); it is applied when it can",
                      info["what"], info["why"])
            return  # the same job reports again when it is applied
        if kind == "bad":
            self.alarm(self.topics[0] if info["topic"] == "changes" else self.topics[1], info["why"])
        elif kind == "gap":
            log.warning("allow-list batch %s does not follow %d: asking for a snapshot", info["batch"], info["have"])
            self.resync()
        elif kind == "staging":
            self._staging(info)
            if self.resync_sent_at is None:  # an unasked snapshot that stays incomplete is asked for again too
                self.resync_sent_at = time.monotonic()
        elif kind == "applied":
            self.version = info["version"]
            if info["source"] == "snapshot":
                self.resync_sent_at = None
                self.snapshot = None
                log.info("allow-list snapshot %d swapped in: %d records", info["version"], info["records"])
            self.on_applied(info["keys_changed"])
        elif kind == "error":
            log.error("allow-list sync: %s", info["why"])
        done = self._pending.pop(job, None)
        if done:
            done()

    def _staging(self, info: dict) -> None:
        """A snapshot's progress, in the status at once and in the log at most every 5 s (thousands of chunks)."""
        new = self.snapshot is None or self.snapshot["version"] != info["version"]
        self.snapshot = info
        now = time.monotonic()
        if new or now - self._told_at >= 5.0:
            self._told_at = now
            log.info("allow-list snapshot %d: %d of %d chunks staged, %d records", info["version"],
                     info["chunks_received"], info["chunks"], info["records"])

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


# -- the worker process --------------------------------------------------------------------------
def worker_main(path: str, jobs, results, parent: int) -> None:
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the daemon stops us; Ctrl-C is for it
    w = Worker(path, results)
    while True:
        try:
            job = jobs.get(timeout=1.0)
        except queue.Empty:
            if os.getppid() != parent:  # the daemon died (kill -9): do not linger
                return
            continue
        if job is None:
            return
        kind, jid, payload = job
        try:
            w.until_written(kind, lambda: getattr(w, kind)(jid, payload), jid)
        except Exception as e:  # a bug must not end sync for good: the snapshot is asked for again
            logging.getLogger(__name__).exception("allow-list sync job %s failed", kind)
            results.put(("error", jid, {"why": f"{kind}: {e.__class__.__name__}: {e}"}))


class Worker:
    def __init__(self, path: str, results):
        from edge.store import Store
        from edge.store.journal import Journal
        self.store = Store(path)
        self.store.conn.execute("PRAGMA busy_timeout=30000")
        self.journal = Journal(self.store)
        self.results = results
        self.stage_version: int | None = None
        self.stage_chunks = 0
        self.staged: set[int] = set()
        self.unknown_kinds: list[str] = []  # P1: records of the staged snapshot of an unknown category
        self.unknown_count = 0
        self.stage_records = 0
        self.stage_started = 0.0

    def _progress(self) -> dict:
        """How far the staged snapshot is: in the status, the log, and the database for any reader."""
        return {"version": self.stage_version, "chunks_received": len(self.staged), "chunks": self.stage_chunks,
                "records": self.stage_records, "started": rfc3339(self.stage_started)}

    def version(self) -> int:
        return int(self.store.meta("allowlist_version", "0"))

    def until_written(self, what: str, job, jid: int) -> None:
        """SPEC §6: a change the database cannot take now (a full disk) waits and is applied as soon as it
        can, before any later one: jobs run one at a time, in arrival order, and none is skipped."""
        delay, told = 0.5, False
        while True:
            try:
                return job()
            except sqlite3.OperationalError as e:
                if "locked" in str(e) or "busy" in str(e):
                    raise  # not a refusal of writes: a bug or a stuck writer, reported as an error
                if not told:
                    self.results.put(("waiting", jid, {"what": what, "why": str(e)}))
                    told = True
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def changes(self, jid: int, payload: bytes) -> None:
        from edge.link.messages import BadMessage, ChangeBatch, parse
        try:
            b = parse(ChangeBatch, payload)
            check_lists(b.revoke, b.blocklist_add + b.blocklist_remove, b.keys_add)
            days = calendar_rows(b.calendar_set)
        except BadMessage as e:
            self.results.put(("bad", jid, {"topic": "changes", "why": str(e)}))
            return
        have = self.version()
        if b.to_version <= have:
            self.results.put(("duplicate", jid, {}))
            return
        if b.from_version != have:
            self.results.put(("gap", jid, {"batch": f"{b.from_version}->{b.to_version}", "have": have}))
            return
        now = time.time()
        with self.store.tx() as c:
            write_lists(c, now, upserts=[r.row() for r in b.upserts], deletes=b.deletes,
                        revoke=[r.ref() for r in b.revoke], block_add=[e.row() for e in b.blocklist_add],
                        block_remove=[e.key() for e in b.blocklist_remove], keys_add=b.keys_add,
                        keys_remove=b.keys_remove)
            write_calendar(c, days, b.calendar_remove)
            self.store.set_meta("allowlist_version", str(b.to_version))
            counts = ({"calendar_set": len(days), "calendar_remove": len(b.calendar_remove)}
                      if days or b.calendar_remove else {})
            self.journal.append("allowlist.applied", {
                "source": "batch", "from_version": b.from_version, "to_version": b.to_version,
                "upserts": len(b.upserts), "deletes": len(b.deletes), "revokes": len(b.revoke),
                "blocklist_add": len(b.blocklist_add), "blocklist_remove": len(b.blocklist_remove),
                "keys_add": len(b.keys_add), "keys_remove": len(b.keys_remove), **counts}, now)
            alarm = unknown_kind_alarm(b.upserts, "batch")
            if alarm:
                self.journal.append("alarm.raised", alarm, now)
        self.results.put(("applied", jid, {"source": "batch", "version": b.to_version,
                                           "keys_changed": bool(b.keys_add or b.keys_remove)}))

    def snapshot(self, jid: int, payload: bytes) -> None:
        from edge.link.messages import BadMessage, SnapshotChunk, parse
        try:
            chunk = parse(SnapshotChunk, payload)
            check_lists(chunk.revoke, chunk.blocklist, chunk.keys)
            calendar_rows(chunk.calendar)
        except BadMessage as e:
            self.results.put(("bad", jid, {"topic": "snapshot", "why": str(e)}))
            return
        if self.stage_version != chunk.version or self.stage_chunks != chunk.chunks:
            # A chunk of another version discards what was staged (SPEC §2).
            self.stage_version, self.stage_chunks, self.staged = chunk.version, chunk.chunks, set()
            self.unknown_kinds, self.unknown_count = [], 0
            self.stage_records, self.stage_started = 0, time.time()
            self._reset_stage()
        if chunk.chunk not in self.staged:
            self.staged.add(chunk.chunk)
            self.stage_records += len(chunk.upserts)
            self._stage(chunk, self._progress())
        if len(self.staged) < self.stage_chunks:
            self.results.put(("staging", jid, self._progress()))
            return
        records = self._swap(chunk.version)
        self.stage_version, self.stage_chunks, self.staged = None, 0, set()
        self.results.put(("applied", jid, {"source": "snapshot", "version": chunk.version, "records": records,
                                           "keys_changed": True}))
        self.drop_old(jid, None)

    def _reset_stage(self) -> None:
        c = self.store.conn
        with self.store.tx():
            for t in STAGE_TABLES:
                c.execute(f"DROP TABLE IF EXISTS {t}")
            create_credentials(c, "stage_credentials")
            for ddl in STAGE_DDL:
                c.execute(ddl)

    def _stage(self, chunk, progress: dict) -> None:
        c = self.store.conn
        rows = [r.row() for r in chunk.upserts]
        alarm = unknown_kind_alarm(chunk.upserts, "snapshot")
        if alarm:
            self.unknown_kinds += alarm["credentials"][: 20 - len(self.unknown_kinds)]
            self.unknown_count += alarm["count"]
        for i in range(0, len(rows), STAGE_ROWS):
            with self.store.tx():
                write_lists(c, 0.0, upserts=rows[i:i + STAGE_ROWS], into="stage_")
        with self.store.tx():
            write_lists(c, 0.0, revoke=[r.ref() for r in chunk.revoke],
                        block_add=[b.row() for b in chunk.blocklist], keys_add=chunk.keys, into="stage_")
            write_calendar(c, calendar_rows(chunk.calendar), (), into="stage_")
            self.store.set_meta("snapshot_progress", json.dumps(progress))

    def _swap(self, version: int) -> int:
        now = time.time()
        with self.store.tx() as c:
            counts = {t: c.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in STAGE_TABLES}
            have = self.version()
            c.execute("DROP TABLE IF EXISTS old_credentials")
            c.execute("ALTER TABLE credentials RENAME TO old_credentials")
            c.execute("ALTER TABLE stage_credentials RENAME TO credentials")
            c.execute("DELETE FROM revocations")
            c.execute("INSERT INTO revocations(ref, at) SELECT ref, ? FROM stage_revocations", (now,))
            c.execute("DELETE FROM blocklist")
            c.execute("INSERT INTO blocklist(kind, value, reason, action) SELECT kind, value, reason, action FROM stage_blocklist")
            c.execute("DELETE FROM keys")  # synced keys only: keys from the config are not in this table
            c.execute("INSERT INTO keys(kid, public_key, scope) SELECT kid, public_key, scope FROM stage_keys")
            # P24: the snapshot's calendar replaces the synced one (the config's days are not in this table);
            # rewritten only when it differs, so an unchanged calendar does not make every gate rebuild its maps
            if c.execute(CALENDAR_DIFFERS).fetchone():
                c.execute("DELETE FROM calendar")
                c.execute("INSERT INTO calendar(date, kind, as_day) SELECT date, kind, as_day FROM stage_calendar")
            for t in STAGE_TABLES[1:]:
                c.execute(f"DROP TABLE {t}")
            self.store.set_meta("allowlist_version", str(version))
            c.execute("DELETE FROM meta WHERE key='snapshot_progress'")
            bump_generation(c)
            self.journal.append("allowlist.applied", {
                "source": "snapshot", "from_version": have, "to_version": version,
                "records": counts["stage_credentials"], "revokes": counts["stage_revocations"],
                "blocklist": counts["stage_blocklist"], "keys": counts["stage_keys"],
                "calendar": counts["stage_calendar"]}, now)
            if self.unknown_count:
                self.journal.append("alarm.raised", {
                    "alarm": "unknown_category", "priority": "normal", "source": "snapshot",
                    "count": self.unknown_count, "credentials": self.unknown_kinds}, now)
        return counts["stage_credentials"]

    def drop_old(self, jid: int, payload) -> None:
        """The replaced cache goes in small steps, so the journal never waits long for the lock."""
        drop_in_steps(self.store, "old_credentials")


def calendar_rows(items) -> list[tuple[str, str, str | None]]:
    """P24: a batch's or chunk's calendar items as rows; BadMessage for a workday without `as` (or a holiday
    with one) or a date listed twice."""
    from edge.link.messages import BadMessage
    try:
        rows = [i.entry() for i in items]
    except ValueError as e:
        raise BadMessage(str(e)) from None
    dates = [r[0] for r in rows]
    if len(set(dates)) != len(dates):
        raise BadMessage(f"calendar: a date listed twice ({sorted(d for d in set(dates) if dates.count(d) > 1)[0]})")
    return rows


def write_calendar(c, days, remove, into: str = "") -> None:
    """P24: the synced calendar's days set (by date) and removed, in the caller's transaction."""
    c.executemany(f"INSERT OR REPLACE INTO {into}calendar(date, kind, as_day) VALUES(?,?,?)", days)
    c.executemany(f"DELETE FROM {into}calendar WHERE date=?", [(d,) for d in remove])


def check_lists(revoke, blocks, keys) -> None:
    """What pydantic cannot check alone: one-of fields and loadable keys. BadMessage otherwise."""
    from edge.link.messages import BadMessage
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
