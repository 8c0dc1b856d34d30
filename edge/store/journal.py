"""The append-only journal: every decision and action, with a gapless `seq` and a SHA-256 chain (P19)."""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import dataclass
from typing import Iterator

from edge.store.db import Store

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


_second: tuple[float | None, str] = (None, "")  # the last whole second formatted, its text up to the milliseconds


def rfc3339(epoch: float) -> str:
    """UTC with milliseconds and `Z`, as SPEC conventions ask. Every entry's time passes here on the scan's
    path, so it is plain arithmetic, with the second's text kept from the last call (datetime's rounding of
    the microseconds is kept: the text is what `datetime.fromtimestamp` would give)."""
    frac, whole = math.modf(epoch)
    us = round(frac * 1e6)
    if us >= 1_000_000:
        whole, us = whole + 1, us - 1_000_000
    elif us < 0:
        whole, us = whole - 1, us + 1_000_000
    global _second
    seen = _second  # read once: another thread may put another second's text there meanwhile
    if whole != seen[0]:
        seen = _second = (whole, "%04d-%02d-%02dT%02d:%02d:%02d." % time.gmtime(whole)[:6])
    return f"{seen[1]}{us // 1000:03d}Z"


def event_id() -> str:
    """A random (version 4) UUID as 32 hex digits, as uuid.uuid4().hex gives, with less work on the scan's
    path."""
    b = bytearray(os.urandom(16))
    b[6] = b[6] & 0x0F | 0x40
    b[8] = b[8] & 0x3F | 0x80
    return b.hex()


def chain(prev: str, seq: int, eid: str, t: str, etype: str, data: str) -> str:
    """Each row's hash covers the previous row's hash, so changing or removing a row shows."""
    h = hashlib.sha256(prev.encode())
    h.update(f"\n{seq}\n{eid}\n{t}\n{etype}\n{data}".encode())
    return h.hexdigest()


@dataclass(frozen=True, slots=True)
class Entry:
    seq: int
    id: str
    time: str
    type: str
    data: str  # JSON text exactly as hashed
    hash: str

    def _head(self, source: str, epoch: str, data: dict | None) -> dict:
        head = {"specversion": "1.0", "id": self.id, "source": source, "type": self.type, "time": self.time,
                "datacontenttype": "application/json", "epoch": epoch, "seq": self.seq}
        subject = self.subject(data)
        if subject is not None:
            head["subject"] = subject
        return head

    def subject(self, data: dict | None = None) -> str | None:
        """SPEC §2: an event about a door names it as the CloudEvents `subject` (`data.door`), so a consumer
        can route or filter by door without reading `data`. Derived from the stored data, so a re-sent event
        is the same. The text is parsed only when it may name a door (the outbox's hot path)."""
        if data is None:
            if '"door":' not in self.data:
                return None
            data = json.loads(self.data)
        door = data.get("door")
        return door if isinstance(door, str) else None

    def envelope_json(self, source: str, epoch: str) -> str:
        """The envelope as compact JSON, built around the stored data text (no re-encoding of `data` on
        the outbox's hot path)."""
        head = json.dumps(self._head(source, epoch, None), separators=(",", ":"), ensure_ascii=False)
        return head[:-1] + ',"data":' + self.data + "}"

    def envelope(self, source: str, epoch: str) -> dict:
        """The SPEC §2 CloudEvents envelope of this entry."""
        data = json.loads(self.data)
        return {**self._head(source, epoch, data), "data": data}


class Journal:
    def __init__(self, store: Store):
        self.store = store

    def append(self, etype: str, data: dict, at: float | None = None) -> Entry:
        """Add one event inside the caller's transaction (or its own); `seq` is assigned here, at commit."""
        with self.store.tx() as c:
            # Read the tail inside the write transaction: another writer (a CLI) may have appended.
            row = c.execute("SELECT seq, hash FROM journal ORDER BY seq DESC LIMIT 1").fetchone()
            seq, prev = (row[0] + 1, row[1]) if row else (1, self.store.genesis_hash())
            t = rfc3339(time.time() if at is None else at)
            eid = event_id()
            text = _dumps(data)
            h = chain(prev, seq, eid, t, etype, text)
            c.execute("INSERT INTO journal(seq, id, time, type, data, hash) VALUES(?,?,?,?,?,?)", (seq, eid, t, etype, text, h))
            self.store.appended()
        return Entry(seq, eid, t, etype, text, h)

    def entries(self, after_seq: int = 0, limit: int | None = None) -> Iterator[Entry]:
        q = "SELECT seq, id, time, type, data, hash FROM journal WHERE seq > ? ORDER BY seq"
        args: tuple = (after_seq,)
        if limit is not None:
            q += " LIMIT ?"
            args += (limit,)
        # fetchall: the rows in one go, rather than a lock hand-over per row with other threads about
        rows = self.store.conn.execute(q, args).fetchall() if limit is not None else self.store.conn.execute(q, args)
        for r in rows:
            yield Entry(*r)

    def entry(self, seq: int) -> Entry | None:
        """One entry by its seq, or None."""
        r = self.store.conn.execute("SELECT seq, id, time, type, data, hash FROM journal WHERE seq=?", (seq,)).fetchone()
        return Entry(*r) if r else None

    def last_seq(self) -> int:
        row = self.store.conn.execute("SELECT max(seq) FROM journal").fetchone()
        return row[0] or 0

    def verify(self) -> tuple[bool, str]:
        """Walk the chain; returns (ok, what is wrong or how many rows were checked). Rows pruned by
        retention leave an anchor (the last pruned row's seq and hash) that the oldest kept row must follow."""
        first = self.store.conn.execute("SELECT min(seq) FROM journal").fetchone()[0]
        if first is None:
            return True, "0 entries, chain intact"
        if first == 1:
            prev, expected_seq = self.store.genesis_hash(), 1
        else:
            anchor = self.store.meta("journal_anchor")
            if anchor is None:
                return False, f"rows before seq {first} are gone and no pruning anchor says why"
            a_seq, a_hash = anchor.split(":", 1)
            prev, expected_seq = a_hash, int(a_seq) + 1
        n = 0
        for e in self.entries(first - 1):
            if e.seq != expected_seq:
                return False, f"gap: expected seq {expected_seq}, found {e.seq}"
            if chain(prev, e.seq, e.id, e.time, e.type, e.data) != e.hash:
                return False, f"seq {e.seq}: hash does not match its content and the previous row"
            prev, expected_seq, n = e.hash, e.seq + 1, n + 1
        return True, f"{n} entries, chain intact"

    def prune(self, older_than: float, keep_from_seq: int | None = None, batch: int = 2000) -> int:
        """P19 retention: the oldest rows, in seq order, up to the first one not older than `older_than`,
        so the rest stays one unbroken chain whatever the clock said when each row was written. The newest
        row is always kept (seq never restarts), and nothing from `keep_from_seq` on (events the broker
        has not acknowledged yet). The last pruned row's seq and hash stay as the chain's anchor. In small
        transactions: the decisions never wait long for the write lock."""
        limit = keep_from_seq if keep_from_seq is not None else 1 << 62
        cutoff = rfc3339(older_than)
        pruned = 0
        while True:
            with self.store.tx() as c:
                last = c.execute("SELECT max(seq) FROM journal").fetchone()[0]
                if last is None:
                    return pruned
                rows = c.execute("SELECT seq, time, hash FROM journal WHERE seq < ? AND seq < ? ORDER BY seq LIMIT ?",
                                 (last, limit, batch)).fetchall()
                old = []
                for row in rows:
                    if row[1] >= cutoff:
                        break
                    old.append(row)
                if not old:
                    return pruned
                self.store.set_meta("journal_anchor", f"{old[-1][0]}:{old[-1][2]}")
                pruned += c.execute("DELETE FROM journal WHERE seq <= ?", (old[-1][0],)).rowcount
            if len(old) < len(rows) or len(rows) < batch:
                return pruned
