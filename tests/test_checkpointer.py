"""Checkpoints off the scan's path: the write-ahead log goes back into the database file from a thread of its
own; the daemon's connection checkpoints only as a fallback, within the log's size limit (SPEC §6)."""
from __future__ import annotations

from edge.store import Store
from edge.store.checkpointer import DEFAULT_PAGES, FALLBACK_PAGES, Checkpointer
from edge.store.journal import Journal
from sitekit import wait_until

WAIT_S = 30.0  # a limit on waits that end on an event, never a sleep


def test_p19_the_write_ahead_log_is_checkpointed_by_its_own_thread_not_by_a_scans_commit(tmp_path):
    store = Store(tmp_path / "gk.db")
    cp = Checkpointer(store.path, every_s=0.05)
    try:
        # a scan's commit checkpoints only far past SQLite's usual 1,000 pages (on a disk with room for that log)
        store.conn.execute("PRAGMA journal_size_limit=67108864")
        assert cp.start(store.conn) == FALLBACK_PAGES
        assert store.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == FALLBACK_PAGES
        j = Journal(store)
        before = (tmp_path / "gk.db").stat().st_size
        for i in range(300):  # a few hundred pages of log, nowhere near the fallback
            j.append("access.granted", {"door": "main", "n": i, "pad": "x" * 2000})

        # only a checkpoint makes the database file itself grow (the thread says nothing when it is done)
        wait_until(lambda: (tmp_path / "gk.db").stat().st_size > before, WAIT_S, "the entries leaving the log")
        assert cp.failing is None
        ok, what = j.verify()
        assert ok, what
    finally:
        cp.stop()
        store.close()


def test_spec6_on_a_small_disk_the_fallback_checkpoint_stays_at_sqlites_own_1000_pages(tmp_path):
    store = Store(tmp_path / "gk.db")
    cp = Checkpointer(store.path, every_s=WAIT_S)
    try:
        store.conn.execute("PRAGMA journal_size_limit=1048576")  # what a 20 MB disk gets (SPEC §6)
        assert cp.start(store.conn) == DEFAULT_PAGES
    finally:
        cp.stop()
        store.close()
