"""The outbox: every journal entry leaves for the broker, in `seq` order, and counts as sent only once
the broker acknowledged it.

The journal *is* the outbox: `outbox_acked` in meta is the highest seq below which everything was
acknowledged. After a crash the gate republishes from there (at-least-once: a duplicate carries the
entry's stored `id`). Within one run, paho keeps and retransmits what it was handed across reconnects,
so nothing is handed twice; `max_inflight` bounds what it holds in memory.

An `alarm.duress` (P34) jumps the queue: it is handed before anything not yet handed, whatever backlog waits
(its seq stays where the journal put it; the regular pass skips it when it gets there).
"""
from __future__ import annotations

import logging
import sqlite3
import time

from edge.store import Store
from edge.store.journal import Journal

log = logging.getLogger(__name__)

BATCH = 500
URGENT = ("alarm.duress",)  # P34: handed ahead of any backlog
# The watermark is a hint for restarts: it rides along with the next decision's commit, and is written on
# its own (without an fsync) only when no commit came for this long. Losing it only sends events twice.
PERSIST_EVERY_S = 1.0


class Outbox:
    def __init__(self, store: Store, publish, topic_for, source: str, max_inflight: int):
        self.store = store
        self.journal = Journal(store)
        self.publish = publish  # (topic, payload) -> mid
        self.topic_for = topic_for  # event type -> topic
        self.source = source
        self.max_inflight = max_inflight
        self.acked = int(store.meta("outbox_acked", "0"))
        self.handed = self.acked  # highest seq given to paho
        self.inflight: dict[int, int] = {}  # mid -> seq
        self.done: set[int] = set()  # acknowledged seqs above the watermark (acks may overtake)
        self._persisted = self.acked
        self._persist_at = 0.0
        # P34: seqs to hand first, and those handed ahead of their turn; an urgent entry journaled before a
        # restart and never acknowledged goes first again
        self.urgent: list[int] = [r[0] for r in store.conn.execute(
            "SELECT seq FROM journal WHERE seq > ? AND type IN (%s) ORDER BY seq" % ",".join("?" * len(URGENT)),
            (self.acked, *URGENT))]
        self.early: set[int] = set()

    def expedite(self, seq: int) -> None:
        """P34: this entry goes out at the next pump, ahead of every entry not yet handed."""
        if seq > self.handed and seq not in self.early:
            self.urgent.append(seq)

    @property
    def depth(self) -> int:
        """Events not yet acknowledged by the broker."""
        return max(0, self.journal.last_seq() - self.acked)

    def pump(self) -> int:
        """Hand the next entries to paho, up to the in-flight limit; returns how many."""
        n = 0
        while self.urgent:  # P34: never held back by the in-flight limit either
            seq = self.urgent.pop(0)
            e = self.journal.entry(seq) if seq > self.handed and seq not in self.early else None
            if e is None or e.type not in URGENT:  # already handed in turn, or not what was flagged
                continue
            self.inflight[self.publish(self.topic_for(e.type), e.envelope_json(self.source, self.store.epoch))] = seq
            self.early.add(seq)
            n += 1
        while len(self.inflight) < self.max_inflight:
            room = min(BATCH, self.max_inflight - len(self.inflight))
            entries = list(self.journal.entries(self.handed, room))
            if not entries:
                break
            for e in entries:
                self.handed = e.seq
                if e.seq in self.early:  # handed ahead of its turn already
                    self.early.discard(e.seq)
                    continue
                mid = self.publish(self.topic_for(e.type), e.envelope_json(self.source, self.store.epoch))
                self.inflight[mid] = e.seq
                n += 1
        return n

    def on_acks(self, mids: list[int]) -> bool:
        """The broker has these; returns True when the watermark moved."""
        for mid in mids:
            seq = self.inflight.pop(mid, None)
            if seq is not None:
                self.done.add(seq)
        moved = False
        while self.acked + 1 in self.done:
            self.acked += 1
            self.done.discard(self.acked)
            moved = True
        if moved:
            self.persist()
        return moved

    def persist(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.acked != self._persisted:
            self.store.defer_meta("outbox_acked", str(self.acked))
            self._persisted = self.acked
        if force or now - self._persist_at >= PERSIST_EVERY_S:
            self._persist_at = now
            try:
                self.store.flush_deferred(durable=force)
            except sqlite3.OperationalError:
                pass  # the database takes no writes now (SPEC §6); it stays deferred

    def gap_after_prune(self) -> None:
        """Entries pruned before they were sent cannot be sent: start after them (retention never
        prunes unsent entries; this covers a journal copied or edited by hand)."""
        first = self.store.conn.execute("SELECT min(seq) FROM journal").fetchone()[0]
        if first and first - 1 > self.acked:
            log.error("journal entries %d..%d are gone before they were sent", self.acked + 1, first - 1)
            self.acked = self.handed = first - 1
