"""When the database cannot be written (disk full, read-only, I/O error), decisions go on (SPEC §6).

Writes that fail are kept, in order, as the calls that make them, and replayed when the database takes
writes again: `seq` is assigned then, so the journal stays gapless and in order. A reserve file next to
the database is given up the first time the disk fills, which usually lets the write through at once.
If even the memory queue overflows, the number of lost writes is committed in one `alarm.raised`
(`lost_events`) as soon as the database is writable again.
"""
from __future__ import annotations

import logging
import os
import shutil
import sqlite3
from collections import deque
from pathlib import Path
from typing import Callable

log = logging.getLogger(__name__)

RESERVE_BYTES = 8 << 20
RESERVE_AGAIN_FREE = 64 << 20  # the reserve is made again only once the disk has room to spare
MAX_HELD = 10_000


class Holdback:
    def __init__(self, db_path: Path, record: Callable[[str, dict], object], max_held: int = MAX_HELD):
        self.reserve = Path(str(db_path) + ".reserve")
        self.record = record
        self.held: deque[tuple[Callable, tuple]] = deque()
        self.max_held = max_held
        self.lost = 0
        self.since_error: str | None = None
        self.make_reserve()

    def make_reserve(self) -> None:
        try:
            if self.reserve.exists() or shutil.disk_usage(self.reserve.parent).free < RESERVE_AGAIN_FREE:
                return
            with open(self.reserve, "wb") as f:
                f.truncate(RESERVE_BYTES)
                f.seek(RESERVE_BYTES - 1)
                f.write(b"\0")  # real blocks, not a sparse file: the space must actually be held
                os.fsync(f.fileno())
        except OSError as e:
            log.warning("cannot keep a disk reserve at %s: %s", self.reserve, e)

    def run(self, fn: Callable, *args):
        """fn(*args), or hold it for later if the database cannot take it. Returns fn's result or None."""
        if self.held:
            self._hold(fn, args)  # nothing overtakes what is waiting: the journal keeps its order
            return None
        try:
            return fn(*args)
        except sqlite3.OperationalError as e:
            if _full(e) and self._give_up_reserve():
                try:
                    return fn(*args)
                except sqlite3.OperationalError as e2:
                    e = e2
            self._start(e)
            self._hold(fn, args)
            return None

    def flush(self) -> bool:
        """Write what was held; True when nothing is held any more."""
        while self.held:
            fn, args = self.held[0]
            try:
                fn(*args)
            except sqlite3.OperationalError:
                return False
            self.held.popleft()
        if self.since_error is not None:
            lost, self.lost = self.lost, 0
            try:
                self.record("alarm.raised", {"alarm": "storage_recovered", "error": self.since_error,
                                             "lost_events": lost})
            except sqlite3.OperationalError:
                self.lost = lost
                return False
            log.warning("database writable again; held writes committed, %d lost", lost)
            self.since_error = None
            self.make_reserve()
        return True

    def _start(self, e: Exception) -> None:
        if self.since_error is None:
            self.since_error = str(e)
            log.error("database cannot be written (%s): decisions go on, writes are held in memory", e)

    def _hold(self, fn: Callable, args: tuple) -> None:
        if len(self.held) >= self.max_held:
            self.lost += 1  # counted, and committed as lost_events when the database is back
            return
        self.held.append((fn, args))

    def _give_up_reserve(self) -> bool:
        try:
            self.reserve.unlink()
            log.error("disk full: the reserve %s was given up", self.reserve)
            return True
        except FileNotFoundError:
            return False


def _full(e: Exception) -> bool:
    return "full" in str(e).lower()
