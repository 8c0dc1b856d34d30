"""The write-ahead log moved back into the database file by a thread of its own, not by a scan's commit.

SQLite checkpoints on the commit that takes the log past 1,000 pages: copying them and syncing the database
file take milliseconds, and a grant writes about five pages, so one scan in two hundred would wait that long
before its door opens. The daemon's connection leaves that to this thread (a connection of its own, once a
second, PASSIVE: it never blocks a writer or waits for a reader) and checkpoints on commit only if the log
still grows past FALLBACK_PAGES (less on a small disk), should this thread be stuck.
"""
from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

log = logging.getLogger(__name__)

EVERY_S = 1.0
DEFAULT_PAGES = 1000  # SQLite's own
FALLBACK_PAGES = 4000  # 16 MiB of log at 4 KiB pages, where the disk allows the log that much


class Checkpointer:
    def __init__(self, path: Path, every_s: float = EVERY_S):
        self.path, self.every_s = path, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="checkpoints", daemon=True)
        self.failing: str | None = None  # the last error, while checkpoints fail

    def start(self, conn: sqlite3.Connection) -> int:
        """Take over checkpoints from `conn` (the daemon's connection), which then does one only as a fallback;
        returns the pages after which it does."""
        limit = conn.execute("PRAGMA journal_size_limit").fetchone()[0]
        page = conn.execute("PRAGMA page_size").fetchone()[0]
        # on a small disk the fallback stays SQLite's own 1,000 pages, within the log's size limit (SPEC §6)
        pages = max(DEFAULT_PAGES, min(FALLBACK_PAGES, limit // page // 2)) if limit > 0 else DEFAULT_PAGES
        conn.execute(f"PRAGMA wal_autocheckpoint={pages}")
        self._thread.start()
        return pages

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        conn = None
        while not self._stop.wait(self.every_s):
            try:
                if conn is None:
                    conn = sqlite3.connect(self.path, timeout=self.every_s, check_same_thread=False)
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                if self.failing:
                    log.info("checkpoints work again")
                self.failing = None
            except sqlite3.Error as e:  # a full disk, a locked file: tried again in a second; said once
                if self.failing is None:
                    log.warning("checkpoint of %s failed (tried again every %.0f s): %s", self.path, self.every_s, e)
                self.failing = str(e)
                if conn is not None:
                    conn.close()
                    conn = None
        if conn is not None:
            conn.close()
