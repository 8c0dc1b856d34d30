"""When the database cannot be written (disk full, read-only, I/O error), decisions go on (SPEC §6).

Writes that fail are kept, in order, as the calls that make them, and replayed when the database takes
writes again: `seq` is assigned then, so the journal stays gapless and in order. The replay goes in
bounded transactions with a checkpoint between them, so the backlog cannot refill the disk with its own
write-ahead log. A reserve file next to the database (real blocks, sized to the disk) is given up the
first time the disk fills, which usually lets the write through at once.

Writes that cannot be kept (the memory queue overflowed, or the daemon stopped while the database still
refused them) are counted, never dropped silently: the count is committed in one `alarm.raised`
(`lost_events`) as soon as the database is writable again, in this run or, through a small file made
when the gate starts (its blocks already allocated, so writing it needs no free space), in the next.
"""
from __future__ import annotations

import contextlib
import itertools
import logging
import os
import shutil
import sqlite3
from collections import deque
from pathlib import Path
from typing import Callable

log = logging.getLogger(__name__)

MAX_HELD = 10_000
FLUSH_BATCH = 200  # held writes per transaction when the database is back: one fsync each
LOST_FILE_BYTES = 64


def reserve_size(total: int, free: int) -> int:
    """The reserve for a disk of `total` bytes with `free` bytes free: 2% of the disk, between 256 KiB and
    8 MiB, and never more than a quarter of what is free (0: too little room to keep one)."""
    size = min(max(total // 50, 256 << 10), 8 << 20)
    return size if free >= 4 * size else 0


class Holdback:
    def __init__(self, db_path: Path, record: Callable[[str, dict], object], max_held: int = MAX_HELD,
                 checkpoint: Callable[[], None] | None = None, drained: Callable[[], None] | None = None):
        self.reserve = Path(str(db_path) + ".reserve")
        self.lost_file = Path(str(db_path) + ".lost")
        self.record = record
        self.checkpoint = checkpoint or (lambda: None)
        self.drained = drained or (lambda: None)  # every held write is committed
        self.held: deque[tuple[Callable, tuple, Callable | None]] = deque()
        self.max_held = max_held
        self.lost = 0
        self.since_error: str | None = None
        self.make_reserve()
        self._prepare_lost_file()

    # -- the disk reserve (SPEC §6) ---------------------------------------------------------------
    def make_reserve(self) -> None:
        try:
            if self.reserve.exists():
                return
            du = shutil.disk_usage(self.reserve.parent)
            size = reserve_size(du.total, du.free)
            if not size:
                log.warning("no disk reserve next to %s: only %d bytes free", self.reserve, du.free)
                return
            fd = os.open(self.reserve, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.posix_fallocate(fd, 0, size)  # real blocks, not a sparse file: the space is truly held
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as e:
            log.warning("cannot keep a disk reserve at %s: %s", self.reserve, e)
            try:
                self.reserve.unlink()
            except OSError:
                pass

    def _give_up_reserve(self) -> bool:
        try:
            self.reserve.unlink()
            log.error("disk full: the reserve %s was given up", self.reserve)
            return True
        except FileNotFoundError:
            return False

    # -- holding and replaying --------------------------------------------------------------------
    def run(self, fn: Callable, *args, then: Callable[[], None] | None = None):
        """fn(*args), or hold it for later if the database cannot take it. Returns fn's result or None.
        `then` runs once fn succeeded: now, or when the held call is replayed."""
        if self.held:
            self._hold(fn, args, then)  # nothing overtakes what is waiting: the journal keeps its order
            return None
        try:
            result = fn(*args)
        except sqlite3.OperationalError as e:
            if _full(e) and self._give_up_reserve():
                try:
                    result = fn(*args)
                except sqlite3.OperationalError as e2:
                    e = e2
                else:
                    _call(then)
                    return result
            self._start(e)
            self._hold(fn, args, then)
            return None
        _call(then)
        return result

    def flush(self, conn_tx=None) -> bool:
        """Write what was held, in bounded transactions (`conn_tx`: the store's transaction, so a batch of
        FLUSH_BATCH commits once; without it, one at a time), with a checkpoint after each; True when
        nothing is held any more."""
        size, tx = (FLUSH_BATCH, conn_tx) if conn_tx is not None else (1, contextlib.nullcontext)
        while self.held:
            batch = list(itertools.islice(self.held, size))
            try:
                with tx():
                    for fn, args, _ in batch:
                        fn(*args)
            except sqlite3.OperationalError:
                self.checkpoint()  # whatever was committed, its log can go back to the database file
                return False
            for _ in batch:
                _call(self.held.popleft()[2])
            self.checkpoint()
            if not self.held:
                self.drained()
        if self.since_error is not None or self.lost:
            lost = self.lost + self._read_lost_file()
            try:
                self.record("alarm.raised", {"alarm": "storage_recovered", "error": self.since_error or "stopped",
                                             "lost_events": lost, "priority": "high" if lost else "normal"})
            except sqlite3.OperationalError:
                return False
            self.lost = 0
            self._write_lost_file(0)
            if lost:
                log.error("database writable again; held writes committed, %d lost", lost)
            else:
                log.warning("database writable again; held writes committed, none lost")
            self.since_error = None
            self.make_reserve()
        return True

    def _start(self, e: Exception) -> None:
        if self.since_error is None:
            self.since_error = str(e)
            log.error("database cannot be written (%s): decisions go on, writes are held in memory", e)

    def _hold(self, fn: Callable, args: tuple, then: Callable | None) -> None:
        if len(self.held) >= self.max_held:
            self.lost += 1  # counted, and committed as lost_events when the database is back
            return
        self.held.append((fn, args, then))

    # -- at stop and start: nothing lost without a count ------------------------------------------------
    def close(self, conn_tx=None) -> int:
        """At stop: write what is held if the database takes it now; count the rest as lost, in the
        lost-events file, for the next start to commit. Returns how many were lost."""
        if self.held or self.lost:
            self._give_up_reserve()  # the last chance to write them is now
            self.flush(conn_tx)
        lost = len(self.held) + self.lost
        if lost:
            self._write_lost_file(lost + self._read_lost_file())
            log.error("stopping with %d writes the database refused: counted as lost_events for the next start",
                      lost)
        self.held.clear()
        self.lost = 0
        return lost

    def pending_from_last_run(self) -> int:
        return self._read_lost_file()

    def _prepare_lost_file(self) -> None:
        """Made now, with its blocks, so that writing a count into it at stop needs no free space."""
        try:
            if not self.lost_file.exists():
                fd = os.open(self.lost_file, os.O_WRONLY | os.O_CREAT, 0o600)
                try:
                    os.posix_fallocate(fd, 0, LOST_FILE_BYTES)
                    os.write(fd, b"0".ljust(LOST_FILE_BYTES))
                    os.fsync(fd)
                finally:
                    os.close(fd)
            if self._read_lost_file():  # committed as lost_events by the first flush
                self.since_error = self.since_error or "the gate stopped while its database refused writes"
        except OSError as e:
            log.warning("cannot keep the lost-events file %s: %s", self.lost_file, e)

    def _read_lost_file(self) -> int:
        try:
            return int(self.lost_file.read_bytes().strip() or b"0")
        except (OSError, ValueError):
            return 0

    def _write_lost_file(self, n: int) -> None:
        try:
            fd = os.open(self.lost_file, os.O_WRONLY)  # in place: the blocks are already there
            try:
                os.pwrite(fd, str(n).encode().ljust(LOST_FILE_BYTES), 0)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as e:
            log.error("cannot record %d lost events in %s: %s", n, self.lost_file, e)


def _call(then: Callable[[], None] | None) -> None:
    if then is not None:
        try:
            then()
        except Exception:  # an acknowledgement that fails must not undo a committed write
            log.exception("after a held write")


def _full(e: Exception) -> bool:
    return "full" in str(e).lower()
