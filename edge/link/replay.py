"""Replay (SPEC §2): the central system asks for a range of events again, and the gate publishes them from
its journal with their original `id`, `seq` and `epoch`, on the same topics, at a bounded rate.

It never goes ahead of live traffic: the outbox fills the in-flight window first and a replay takes only
what is left, and never more than a small share of it, so a live event waits behind a handful of replayed
ones at most. It never touches the outbox's watermark: its publishes are its own (by `mid`), and their acks
are taken out before the outbox sees the rest. Nothing is persisted: a replay cut short by a restart is
asked for again by the central system, which sees the gap is still there.
"""
from __future__ import annotations

import logging
import time
from typing import Callable

from edge.store import Store
from edge.store.journal import Journal

log = logging.getLogger(__name__)

MAX_RANGES = 32  # pending ranges kept; beyond, the two closest are joined (sending a few events twice is allowed)
UNAVAILABLE_EVERY_S = 60.0  # the same unavailable range asked again within this answers no second alarm


class Replay:
    def __init__(self, store: Store, publish: Callable[[str, str], int], topic_for: Callable[[str], str],
                 source: str, newest: Callable[[], int], record, rate_per_s: float, window: int):
        self.store = store
        self.journal = Journal(store)
        self.publish = publish  # (topic, payload) -> mid
        self.topic_for = topic_for
        self.source = source
        self.newest = newest  # the highest seq the outbox handed over: beyond it, events go out live anyway
        self.record = record  # (event type, data): journals an event
        self.rate = rate_per_s
        self.window = max(1, window)  # replayed events in flight at most
        self.burst = max(1, int(rate_per_s / 20))  # at most 50 ms worth at once: the loop wakes for each burst
        self.ranges: list[list[int]] = []  # disjoint, sorted, each [after, until]: seqs after < s <= until
        self.inflight: dict[int, int] = {}  # mid -> seq
        self.tokens = float(self.burst)
        self._at = time.monotonic()
        self._told: dict[tuple[int, int], float] = {}
        self.sent = 0

    @property
    def pending(self) -> bool:
        return bool(self.ranges)

    def request(self, after: int, until: int | None) -> None:
        """Add (after, until] to what is to be sent again; `until` defaults to the newest event sent."""
        newest = self.newest()
        until = newest if until is None else min(until, newest)
        first = self.store.conn.execute("SELECT min(seq) FROM journal").fetchone()[0] or newest + 1
        if first > after + 1 and after < until:
            self._unavailable(after, first)
            after = first - 1
        if until <= after:
            return
        log.info("replaying events %d..%d", after + 1, until)
        self._add(after, until)

    def _unavailable(self, after: int, first: int) -> None:
        """SPEC §2: a range older than the retention answers one alarm naming the first seq still here."""
        now = time.monotonic()
        key = (after, first)
        if now - self._told.get(key, -UNAVAILABLE_EVERY_S) < UNAVAILABLE_EVERY_S:
            return
        self._told = {k: t for k, t in self._told.items() if now - t < UNAVAILABLE_EVERY_S}
        self._told[key] = now
        log.warning("replay after seq %d asked: the journal starts at seq %d", after, first)
        self.record("alarm.raised", {"alarm": "replay_unavailable", "after_seq": after, "first_seq": first})

    def _add(self, after: int, until: int) -> None:
        """Union with what is pending: a range asked twice, or overlapping one under way, is sent once."""
        spans = sorted(self.ranges + [[after, until]])
        merged: list[list[int]] = []
        for a, b in spans:
            if merged and a <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        while len(merged) > MAX_RANGES:  # bounded memory: join the two nearest ranges
            i = min(range(len(merged) - 1), key=lambda k: merged[k + 1][0] - merged[k][1])
            merged[i:i + 2] = [[merged[i][0], merged[i + 1][1]]]
        self.ranges = merged

    def pump(self, live_inflight: int, max_inflight: int) -> int:
        """Send what the rate and the window the outbox left allow; returns how many."""
        now = time.monotonic()
        self.tokens = min(float(self.burst), self.tokens + (now - self._at) * self.rate)
        self._at = now
        room = min(max_inflight - live_inflight - len(self.inflight), self.window - len(self.inflight),
                   int(self.tokens))
        n = 0
        while room > 0 and self.ranges:
            after, until = self.ranges[0]
            entries = list(self.journal.entries(after, min(room, until - after)))
            for e in entries:
                mid = self.publish(self.topic_for(e.type), e.envelope_json(self.source, self.store.epoch))
                self.inflight[mid] = e.seq
                n += 1
            after = entries[-1].seq if entries else until
            if after >= until:
                self.ranges.pop(0)
            else:
                self.ranges[0][0] = after
            room -= len(entries)
        self.tokens -= n
        self.sent += n
        return n

    def wait_s(self) -> float | None:
        """How long until the next burst may go, when something is pending; None otherwise."""
        if not self.ranges:
            return None
        return max(0.0, (self.burst - self.tokens) / self.rate)

    def on_acks(self, mids: list[int]) -> list[int]:
        """Take this replay's acks; the rest are the outbox's (or a status's)."""
        if not self.inflight:
            return mids
        return [m for m in mids if self.inflight.pop(m, None) is None]
