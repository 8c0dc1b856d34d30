"""The door first: while a scan is decided and its door driven, work that would wake other processes waits.

A grant's path is one durable commit and one write to the I/O module. Around it, the gate would otherwise
hand the new journal entries to the outbox (a publish: the broker and its subscribers wake) and to the
API's live feed (the API process and its clients wake), and answer the API's calls, all in the moment the
unlock goes out. On a small controller those processes then take the CPU that the module's link and the
module need to receive that write. So they wait until the scan's door is driven (or its write failed): one
Modbus round trip, and never more than HOLD_MAX_S (a module that stopped answering holds the scan for its
timeout, and nobody else waits that long). Nothing is dropped and the order is kept.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Callable

log = logging.getLogger(__name__)

HOLD_MAX_S = 0.1


class DoorFirst:
    def __init__(self, hold_max_s: float = HOLD_MAX_S) -> None:
        self.hold_max_s = hold_max_s
        self.busy = False
        self._pending: list[Callable[[], None]] = []
        self._timer: asyncio.TimerHandle | None = None

    def later(self, fn: Callable[[], None]) -> None:
        """fn() now, or once the scan under way has driven its door; the same fn twice waits once (a kick is
        a kick)."""
        if not self.busy:
            fn()
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # another thread's commit: its listeners are told at once, as they always were
            fn()
            return
        if not self._pending:
            self._timer = loop.call_later(self.hold_max_s, self._release)
        if fn not in self._pending:
            self._pending.append(fn)

    def scan(self) -> DoorFirst:
        """`with doors.scan():` one scan, from its decision to its door driven; what asked to wait meanwhile
        runs at the end. (Itself as the manager, not a generator: this is on every scan's path.)"""
        return self

    def __enter__(self) -> None:
        self.busy = True

    def __exit__(self, *exc) -> bool:
        self._release()
        return False

    def _release(self) -> None:
        """The scan's door is driven, or it took too long: from now on nothing waits for this scan."""
        self.busy = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._pending = self._pending, []
        for fn in pending:
            try:
                fn()
            except Exception:  # one listener's bug must not keep the others from hearing
                log.exception("after a scan: %r failed", fn)
