"""Repeated log records, logged once with a count: a fault that repeats thousands of times a second
(a full descriptor table, a module that keeps refusing) must not fill the disk with tracebacks."""
from __future__ import annotations

import logging
import time

WINDOW_S = 60.0


class RepeatFilter(logging.Filter):
    """The first record of a kind (logger, level, message template) passes; the same kind again within
    WINDOW_S is counted, and the next one after the window says how many were left out."""

    def __init__(self, window_s: float = WINDOW_S):
        super().__init__()
        self.window_s = window_s
        self.seen: dict[tuple, list] = {}  # kind -> [first time in window, suppressed count]

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True  # only faults repeat like this; info and debug are the operator's choice
        kind = (record.name, record.levelno, str(record.msg))
        now = time.monotonic()
        state = self.seen.get(kind)
        if state is not None and now - state[0] < self.window_s:
            state[1] += 1
            return False
        if state is not None and state[1]:
            record.msg = f"{record.msg} [{state[1]} more like this in the last {self.window_s:.0f} s]"
            record.exc_info = None  # the first one had the traceback
        self.seen[kind] = [now, 0]
        if len(self.seen) > 1000:  # kinds are few; a flood of distinct messages still stays bounded
            self.seen.clear()
        return True


def install() -> RepeatFilter:
    f = RepeatFilter()
    for h in logging.getLogger().handlers:
        h.addFilter(f)
    return f
