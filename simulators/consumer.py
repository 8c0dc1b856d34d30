"""The central system's event consumer at fleet scale (SPEC §7): stores every event once and checks completeness.

    python -m simulators.consumer --broker 127.0.0.1:1883 --topic 'acs/+/+/events/#' --client-id central-1 --out DIR
    python -m simulators.consumer ... --share consumers --client-id central-2 --out DIR   # one member of
        $share/consumers/acs/+/+/events/#; every member of the group takes the same --out, one of them also
        --replay-leader

An MQTT 5 persistent session (or one member of a shared subscription). Events go to SQLite (DIR/events.db,
WAL) by their `id`, so a duplicate (at-least-once, a replay, a re-sent outbox) is counted and not stored
twice; a message is acknowledged (PUBACK) only once its row is committed, so a kill -9 loses nothing: the
broker sends again what was not acknowledged. Members of one shared subscription write the same store: each
commit takes the write lock up front (BEGIN IMMEDIATE) and waits for it up to a minute, so a member never
fails a commit because another one holds it (one that still fails keeps its rows, unacknowledged, for the
next turn). The broker deals a member that is down its share all the same (mosquitto 2.0.11 queues it in the
member's session, and sends again what it had not acknowledged when it resumes): restart a member on its
client id, or those events wait for its session to expire and then only replay brings them.

Completeness is checked per (`source`, `epoch`, `seq`); a gap that stays open `--replay-after` seconds is
asked of the gate on `{source}/replay`, at most one request outstanding per gate; a status whose `last_seq`
is above what was stored reveals a missing tail the same way (the last_seq announced are kept in the store,
so a restart still knows the tail). Alone, the consumer judges from the rows it commits. In a shared
subscription a member sees only part of each gate's events, so only the member given --replay-leader
subscribes to the statuses and asks for replays, judging from the shared store (it reads every row any member
committed, in commit order); the others only store. One asker keeps "one request per gate" without
coordination between members; while the leader is down nobody asks, and it catches up from the store when
it is back. The role goes with the session (the statuses are subscribed when the session is new): a member
becomes the leader on a new client id. The store cannot tell a member's queued share from a loss: while a
member is down longer than --replay-after the leader asks the gates again for what waits in its session
(stored once, counted as duplicates); a --replay-after above a member's usual restart time avoids that.
Latency is the receipt time minus the gate's `data.sent_at`.

Stdin, one command a line, each answered by one line `consumer ...`:
    report [EXPECT.json]   writes DIR/report.json and prints `consumer report {json}`; EXPECT maps each
                           source to [epoch, last_seq] so a missing tail and a silent gate count as missing;
                           `by_member` is the events each member of a shared subscription stored
    quit
It prints `consumer ready` once subscribed. It imports nothing from `edge`.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import sys
import time

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from simulators.mqtt5 import Client, MqttError  # noqa: E402

REPLAY_TIMEOUT_S = 30.0  # an unanswered replay request may be asked again after this
FLUSH_S = 0.01  # rows are committed (and then acknowledged) in batches at this period
TAIL_S = 0.5  # the replay leader reads the rows every member committed at this period

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (id TEXT PRIMARY KEY, source TEXT NOT NULL, epoch TEXT NOT NULL,
    seq INTEGER NOT NULL, type TEXT NOT NULL, sent_at REAL, recv_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS events_seq ON events (source, epoch, seq);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, n INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS announced (source TEXT NOT NULL, epoch TEXT NOT NULL, last_seq INTEGER NOT NULL,
    PRIMARY KEY (source, epoch));
"""
BUSY_S = 60.0  # how long a commit waits for another member's write lock before it gives up (and retries)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return values[min(len(values) - 1, int(q * len(values)))]


class Store:
    """SQLite, written by one consumer or by every member of a shared subscription; reloads after a crash
    from what was committed."""

    def __init__(self, path: str, member: str = ""):
        self.member = member
        # timeout: the busy handler, so a member waits for another's write lock (also while one switches to WAL)
        self.db = sqlite3.connect(path, isolation_level=None, timeout=BUSY_S)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # a process kill loses nothing committed; power loss is not tested
        self.db.executescript(SCHEMA)

    def add(self, rows: list[tuple], announced: list[tuple] = (), counts: dict | None = None) -> int:
        """One transaction: rows (id, source, epoch, seq, type, sent_at, recv_at), the last_seq statuses announced
        (source, epoch, last_seq; the highest is kept, for a restart or another member) and counters to add to
        (malformed messages, replay requests); returns how many rows were new."""
        before = self.db.total_changes
        # IMMEDIATE: the write lock is taken (or waited for) at BEGIN; a deferred transaction that reads first
        # can be refused the upgrade at once (SQLITE_BUSY without the busy handler) when another member wrote
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.executemany("INSERT OR IGNORE INTO events VALUES (?,?,?,?,?,?,?)", rows)
            new = self.db.total_changes - before
            self.bump("duplicates", len(rows) - new)  # inside the transaction: counted with the rows
            if self.member:
                self.bump(f"stored_by:{self.member}", new)
            self.db.executemany("INSERT INTO announced VALUES (?,?,?) ON CONFLICT(source, epoch) DO UPDATE SET "
                                "last_seq = MAX(last_seq, excluded.last_seq)", announced)
            for name, n in (counts or {}).items():
                self.bump(name, n)
            self.db.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise
        return new

    def announcements(self) -> list[tuple[str, str, int]]:
        return self.db.execute("SELECT source, epoch, last_seq FROM announced").fetchall()

    def tail(self, after_rowid: int, limit: int = 100000) -> list[tuple]:
        """Rows committed after `after_rowid` (by any member), in commit order: (rowid, source, epoch, seq).
        Writers are serialized and a new row takes the largest rowid plus one (rows are never deleted), so a
        row committed later always has a larger rowid: reading above the last one seen misses none."""
        return self.db.execute("SELECT rowid, source, epoch, seq FROM events WHERE rowid > ? ORDER BY rowid "
                               "LIMIT ?", (after_rowid, limit)).fetchall()

    def bump(self, name: str, n: int) -> None:
        if n:
            self.db.execute("INSERT INTO counters VALUES (?,?) ON CONFLICT(name) DO UPDATE SET n = n + excluded.n",
                            (name, n))

    def counter(self, name: str) -> int:
        row = self.db.execute("SELECT n FROM counters WHERE name = ?", (name,)).fetchone()
        return row[0] if row else 0

    def report(self, expect: dict | None) -> dict:
        seen = {(s, e): (n, hi) for s, e, n, hi in self.db.execute(
            "SELECT source, epoch, COUNT(DISTINCT seq), MAX(seq) FROM events GROUP BY source, epoch")}
        missing, ranges = 0, []
        for (source, epoch), (n, hi) in seen.items():
            last = hi
            if expect and source in expect and expect[source][0] == epoch:
                last = max(hi, expect[source][1])
            missing += last - n
        if expect:
            for source, (epoch, last, *_) in expect.items():
                if (source, epoch) not in seen and last:
                    missing += last
                    ranges.append([source, 1, last])
        gaps = self.db.execute(
            "SELECT source, prev + 1, seq - 1 FROM (SELECT source, seq, LAG(seq, 1, 0) OVER "
            "(PARTITION BY source, epoch ORDER BY seq) AS prev FROM events) WHERE seq > prev + 1 LIMIT 20").fetchall()
        ranges += [list(g) for g in gaps]
        if expect:
            for (source, epoch), (n, hi) in seen.items():
                if source in expect and expect[source][0] == epoch and expect[source][1] > hi and len(ranges) < 40:
                    ranges.append([source, hi + 1, expect[source][1]])
        lat = sorted(r[0] for r in self.db.execute("SELECT recv_at - sent_at FROM events WHERE sent_at IS NOT NULL"))
        stored = self.db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        ms = lambda v: None if v is None else round(v * 1000, 1)  # noqa: E731
        return {"stored": stored, "sources": len(seen), "missing": missing, "missing_ranges": ranges[:20],
                "duplicates": self.counter("duplicates"), "bad": self.counter("bad"),
                "replay_requests": self.counter("replay_requests"),
                "by_member": {n[len("stored_by:"):]: k for n, k in self.db.execute(
                    "SELECT name, n FROM counters WHERE name LIKE 'stored_by:%' ORDER BY name")},
                "latency_ms": {"p50": ms(percentile(lat, 0.50)), "p90": ms(percentile(lat, 0.90)),
                               "p99": ms(percentile(lat, 0.99)), "max": ms(lat[-1] if lat else None)}}

    def contiguity(self):
        """((source, epoch) -> list of seqs, the largest rowid among them), to rebuild the gap tracker after a
        restart; one statement, so the rowid and the seqs are one snapshot."""
        out: dict = {}
        top = 0
        for r, s, e, q in self.db.execute("SELECT rowid, source, epoch, seq FROM events ORDER BY source, epoch, seq"):
            out.setdefault((s, e), []).append(q)
            top = max(top, r)
        return out, top


class Gaps:
    """Per (source, epoch): the contiguous high mark and the seqs seen above it."""

    def __init__(self):
        self.high: dict = {}
        self.above: dict = {}
        self.since: dict = {}  # key -> when the current gap was first seen
        self.last: dict = {}  # key -> the newest seq the gate's status announced (`last_seq`): a missing tail
        self.asked: dict = {}  # source -> when a replay was asked (one outstanding per gate)

    def see(self, key, seq: int) -> None:
        hi = self.high.get(key, 0)
        if seq <= hi:
            return
        if seq == hi + 1:
            hi += 1
            above = self.above.get(key)
            while above and hi + 1 in above:
                hi += 1
                above.discard(hi)
            self.high[key] = hi
            if not above and self.last.get(key, 0) <= hi:
                self.above.pop(key, None)
                self.since.pop(key, None)
                self.asked.pop(key[0], None)
        else:
            self.high.setdefault(key, 0)
            self.above.setdefault(key, set()).add(seq)
            self.since.setdefault(key, time.monotonic())

    def announce(self, key, last_seq: int) -> None:
        """A status said the gate journaled up to `last_seq`: anything above the high mark not seen is a gap."""
        if last_seq > self.last.get(key, 0):
            self.last[key] = last_seq
        if last_seq > self.high.get(key, 0) and not (self.above.get(key) and max(self.above[key]) >= last_seq):
            self.high.setdefault(key, 0)
            self.since.setdefault(key, time.monotonic())

    def due(self, after_s: float, limit: int):
        now = time.monotonic()
        for key, t in list(self.since.items()):
            if limit <= 0:
                return
            if now - t < after_s or now - self.asked.get(key[0], -1e9) < REPLAY_TIMEOUT_S:
                continue
            self.asked[key[0]] = now
            limit -= 1
            above = self.above.get(key)
            yield key, self.high[key], (min(above) - 1) if above else self.last[key]


class Consumer:
    def __init__(self, args):
        self.args = args
        os.makedirs(args.out, exist_ok=True)
        self.store = Store(os.path.join(args.out, "events.db"), member=args.client_id if args.share else "")
        # alone, the consumer judges completeness from its own commits; in a shared subscription only the
        # leader judges, from every member's commits (the store's tail); the other members only store
        self.judge = not args.share or args.replay_leader
        self.gaps = Gaps()
        self.rowid = 0
        if self.judge:  # a member that only stores has no use for them
            seqs_by_key, self.rowid = self.store.contiguity()
            for key, seqs in seqs_by_key.items():
                for q in seqs:
                    self.gaps.see(key, q)
            for source, epoch, last_seq in self.store.announcements():
                self.gaps.announce((source, epoch), last_seq)
        self.next_tail = 0.0
        self.bad = 0
        self.asked = 0  # replay requests sent, counted in the store with the next commit
        self.pending: list[tuple] = []
        self.statuses: list[bytes] = []
        self.pids: list[int] = []
        self.client: Client | None = None
        self.stopping = False

    def _on_message(self, client, topic, payload, pid) -> None:
        now = time.time()
        if topic.endswith("/status"):
            self.statuses.append((topic, payload))
            if pid is not None:
                self.pids.append((client, pid))
            return
        try:
            m = json.loads(payload)
            sent = m.get("data", {}).get("sent_at") if isinstance(m.get("data"), dict) else None
            self.pending.append((str(m["id"]), str(m["source"]), str(m["epoch"]), int(m["seq"]), str(m["type"]),
                                 float(sent) if sent is not None else None, now))
        except (ValueError, KeyError, TypeError):
            self.bad += 1  # kept as a count: a malformed event is the gate's fault, shown in the report
        if pid is not None:
            self.pids.append((client, pid))

    async def _flush(self) -> None:
        while not self.stopping:
            await asyncio.sleep(FLUSH_S)
            # what arrived up to here is committed, then acknowledged; a failed commit keeps both for the next turn
            rows, statuses, pids, bad_messages = self.pending, self.statuses, self.pids, self.bad
            self.pending, self.statuses, self.pids, self.bad = [], [], [], 0
            bad = bad_messages
            announced = []
            for topic, raw in statuses:
                try:
                    m = json.loads(raw)
                    if m.get("state") == "online" and m.get("epoch") and int(m.get("last_seq", 0)):
                        announced.append((topic[:-len("/status")], str(m["epoch"]), int(m["last_seq"])))
                except (ValueError, TypeError, AttributeError):
                    bad += 1
            asked, self.asked = self.asked, 0
            try:
                if rows or announced or bad or asked:
                    self.store.add(rows, announced, {"bad": bad, "replay_requests": asked})
            except sqlite3.OperationalError as e:  # the lock not had within BUSY_S: nothing acknowledged yet
                print(f"consumer: commit failed, retried: {e}", file=sys.stderr, flush=True)
                self.pending[:0], self.statuses[:0], self.pids[:0] = rows, statuses, pids
                self.bad += bad_messages  # the statuses' own are counted again when parsed again
                self.asked += asked
                continue
            for client, pid in pids:
                client.ack(pid)  # after the commit: an unacknowledged message comes again
            if not self.args.share:
                for _id, source, epoch, seq, *_ in rows:
                    self.gaps.see((source, epoch), seq)
            elif self.judge and time.monotonic() >= self.next_tail:
                self.next_tail = time.monotonic() + TAIL_S
                for rowid, source, epoch, seq in self.store.tail(self.rowid):
                    self.gaps.see((source, epoch), seq)
                    self.rowid = rowid
            if self.judge:
                for source, epoch, last_seq in announced:
                    self.gaps.announce((source, epoch), last_seq)
            if self.args.replay_after is not None and self.judge and self.client and self.client.connected:
                room = 50 - self.client.inflight  # within the broker's receive maximum; the rest next turn
                for (source, _epoch), after, until in self.gaps.due(self.args.replay_after, room):
                    ask = {"after_seq": after, "until_seq": until}
                    self.client.publish(f"{source}/replay", json.dumps(ask).encode())
                    self.asked += 1

    async def _connect_loop(self, ready: asyncio.Event) -> None:
        host, _, port = self.args.broker.rpartition(":")
        topic = f"$share/{self.args.share}/{self.args.topic}" if self.args.share else self.args.topic
        backoff = 0.2
        while not self.stopping:
            lost = asyncio.get_running_loop().create_future()
            self.client = Client(self.args.client_id, keepalive=30, session_expiry=7 * 24 * 3600, clean_start=False,
                                 auto_ack=False, receive_maximum=1000, on_message=self._on_message,
                                 on_lost=lambda c: lost.done() or lost.set_result(None))
            try:
                present = await self.client.connect(host, int(port))
                if not present:
                    filters = [(topic, 1, 0)]
                    if self.args.status_topic and self.judge:  # their last_seq reveal a missing tail (SPEC §2)
                        filters.append((self.args.status_topic, 1, 0))
                    await self.client.subscribe(filters)
            except (OSError, MqttError, asyncio.TimeoutError):
                self.client.abort()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.2
            ready.set()
            await lost

    async def run(self) -> None:
        ready = asyncio.Event()
        tasks = [asyncio.create_task(self._connect_loop(ready)), asyncio.create_task(self._flush())]
        await ready.wait()
        print("consumer ready", flush=True)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while True:
            line = (await reader.readline()).decode().strip()
            if not line or line == "quit":
                break
            word, _, rest = line.partition(" ")
            if word == "report":
                try:
                    expect = json.load(open(rest)) if rest else None
                except (OSError, ValueError) as e:
                    print(f"consumer error: cannot read {rest}: {e}", flush=True)
                    continue
                rep = self.store.report(expect)
                with open(os.path.join(self.args.out, "report.json"), "w") as f:
                    json.dump(rep, f)
                print("consumer report " + json.dumps(rep), flush=True)
            else:
                print(f"consumer error: unknown command {word!r} (report [EXPECT.json] | quit)", flush=True)
        self.stopping = True
        await asyncio.sleep(FLUSH_S * 3)
        if self.client:
            self.client.disconnect()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--broker", required=True, help="HOST:PORT of the central broker")
    p.add_argument("--topic", default="acs/+/+/events/#")
    p.add_argument("--share", help="join the shared subscription $share/GROUP/TOPIC")
    p.add_argument("--status-topic", default="acs/+/+/status", help="the gates' statuses ('' for none)")
    p.add_argument("--replay-leader", action="store_true",
                   help="with --share: this member reads the shared store for gaps and asks for replays")
    p.add_argument("--client-id", default="central-consumer")
    p.add_argument("--out", required=True, help="directory of events.db and report.json")
    p.add_argument("--replay-after", type=float, default=2.0,
                   help="seconds a gap stays open before replay is asked (negative: never)")
    args = p.parse_args()
    if args.replay_after is not None and args.replay_after < 0:
        args.replay_after = None
    asyncio.run(Consumer(args).run())


if __name__ == "__main__":
    main()
