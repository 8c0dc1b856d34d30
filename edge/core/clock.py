"""P3: is the wall clock to be trusted? Jumps seen against a steady clock, and the central system's time.

Both compare the wall clock (`time.time`, which NTP, an operator or a bad RTC may move) with a steady one
that only counts elapsed time. The steady clock is CLOCK_BOOTTIME where there is one: it keeps counting
while the machine is suspended, so waking up is not mistaken for a jump forwards.
"""
from __future__ import annotations

import time
from typing import Callable

DAY_S = 86400.0  # P3: "more than a day off the central system's time", "heard within a day"


def steady() -> float:
    try:
        return time.clock_gettime(time.CLOCK_BOOTTIME)
    except (AttributeError, OSError):
        return time.monotonic()


class JumpWatch:
    """The wall clock against the steady clock between two looks: a difference beyond the skew is a jump."""

    def __init__(self, wall: Callable[[], float], steady_: Callable[[], float], skew_s: float):
        self.wall, self.steady, self.skew_s = wall, steady_, skew_s
        self.last = (wall(), steady_())

    def check(self) -> tuple[float, float, float] | None:
        """(jump in seconds, + forwards, - backwards; the wall time expected; the wall time read), or None.
        Each look starts a new base, so one jump is reported once."""
        w, s = self.wall(), self.steady()
        w0, s0 = self.last
        self.last = (w, s)
        expected = w0 + (s - s0)
        jump = w - expected
        return (jump, expected, w) if abs(jump) > self.skew_s else None


class CentralClock:
    """The central system's time as of its last heartbeat (SPEC §2 `central/heartbeat`), carried forward on
    the steady clock. Known for a day after a heartbeat; in memory only (a steady clock does not survive a
    reboot, and a new heartbeat comes within a minute)."""

    def __init__(self, steady_: Callable[[], float]):
        self.steady = steady_
        self.heard: tuple[float, float] | None = None  # (its time, our steady time when heard)

    def heartbeat(self, central_time: float) -> None:
        self.heard = (central_time, self.steady())

    def now(self) -> float | None:
        """The central system's time now, or None when no heartbeat was heard within a day."""
        if self.heard is None:
            return None
        t, at = self.heard
        elapsed = self.steady() - at
        return t + elapsed if 0 <= elapsed <= DAY_S else None

    def offset(self, wall: float) -> float | None:
        """How far our wall clock is ahead (+) or behind (-) the central system's, when known."""
        c = self.now()
        return None if c is None else wall - c

    def far_off(self, wall: float) -> bool:
        """P3: more than a day off the central system's time makes the clock implausible."""
        off = self.offset(wall)
        return off is not None and abs(off) > DAY_S
