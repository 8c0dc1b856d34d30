"""Many lightweight gate links in one process, speaking the gate's side of the MQTT contract (SPEC §2).

    python -m simulators.gate_links --site s001=127.0.0.1:20001 --site s002=127.0.0.1:20002 --gates 100

Each link is what the central system sees of a gate: its own client id and username, an MQTT 5 persistent
session, the retained status (`online` on connect, the will `offline` with the same `session`), a retained
`key`, CloudEvents with `seq` rising by one, held in an outbox until the broker's PUBACK and sent again after a
reconnect, `resync` whenever the CONNACK has no session (and the snapshot's chunks counted), answers to
`replay` from an in-memory log, and optionally the peer subscriptions to the site-state event types. It has
no journal, no doors and no decisions: it is the load the broker and the central system carry, ten thousand
connections on one asyncio loop (mqtt5.Client), not a copy of the daemon.

Control on stdin, one JSON object a line, each answered by one JSON line on stdout:
    {"cmd":"rate","per_s":2000}     events per second over all the gates, round robin (0 stops)
    {"cmd":"stats"}                  counters: connected, emitted, acked, pending, snapshots, peer deliveries
    {"cmd":"dump","path":P}          writes {source: [epoch, last_seq, session, killed]} for every gate to P
    {"cmd":"kill","gates":[...]}     drops those links without DISCONNECT (the will fires); they stay down
    {"cmd":"bounce","gates":[...]}   drops them the same way; they connect again at once (the next session)
    {"cmd":"emit","gates":[...],"n":N}  N events on each of those gates now
    {"cmd":"lose","gates":[...],"n":N}  their next N events are logged but never reach the broker, as if it
                                     acknowledged and then lost them: only `replay` brings them to central
    {"cmd":"quit"}
It prints {"ready":...} once every link is connected (or the connect timeout passed).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
import uuid
from collections import OrderedDict
from datetime import datetime, timezone

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from simulators.mqtt5 import Client, MqttError  # noqa: E402

ROOT = "acs"
CE_CONTENT_TYPE = "application/cloudevents+json"
# the event types that carry site state, the only ones a gate reads from its peers (SPEC §2)
PEER_TYPES = ("access.granted", "access.passage", "visit.checked_out", "visit.signed_off", "visit.amended",
              "permit.changed", "occupancy.corrected")
MAX_INFLIGHT = 20  # per link: a gate's outbox drains in order, a few at a time
REPLAY_BATCH = 50  # replayed events sent per turn of the loop, behind live traffic


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class GateLink:
    """One simulated gate: its session counter, seq, outbox, log and allow-list version."""

    def __init__(self, fleet: "Fleet", site: str, gate: str, host: str, port: int):
        self.fleet, self.site, self.gate, self.host, self.port = fleet, site, gate, host, port
        self.source = f"{ROOT}/{site}/{gate}"
        self.epoch = uuid.uuid4().hex[:12]
        self.session = 0
        self.seq = 0
        self.allowlist_version = 0
        self.log: dict[int, tuple[str, bytes]] = {}  # seq -> (topic, envelope), for replay
        self.outbox: OrderedDict[int, tuple[str, bytes]] = OrderedDict()  # emitted, not yet acknowledged
        self.sending: set[int] = set()  # seqs published on this connection, waiting for PUBACK
        self.replay_queue: list[int] = []
        self.client: Client | None = None
        self.killed = False
        self.connects = 0
        self.snapshot: dict = {}  # version -> set of chunk numbers, while one is arriving
        self.resync_at: float | None = None
        self.snapshot_s: list[float] = []  # seconds from resync to the last chunk of each snapshot
        self.peer_deliveries = 0
        self.acked = 0
        self.lose = 0  # the next events to be lost after the broker's PUBACK (a broker losing its store)

    # --- connection -------------------------------------------------------------------------------------
    async def run(self) -> None:
        backoff = 0.5
        while not self.killed and not self.fleet.stopping:
            self.session += 1
            offline = json.dumps({"state": "offline", "session": self.session}).encode()
            will = (f"{self.source}/status", offline, 1, True)
            self.client = Client(client_id=f"gate-{self.site}-{self.gate}", username=f"{self.site}/{self.gate}",
                                 keepalive=60, session_expiry=7 * 24 * 3600, clean_start=False, will=will,
                                 on_message=self._on_message, on_lost=self._on_lost)
            lost = self.fleet.loop.create_future()
            self._lost = lost
            try:
                async with self.fleet.connect_slots:
                    present = await self.client.connect(self.host, self.port)
                await self._on_connect(present)
            except (OSError, MqttError, asyncio.TimeoutError):
                self.client.abort()
                await asyncio.sleep(backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, 10.0)
                continue
            backoff = 0.5
            await lost

    def _on_lost(self, _client) -> None:
        self.fleet.connected -= 1
        self.sending.clear()  # what was not acknowledged goes again on the next connection
        if not self._lost.done():
            self._lost.set_result(None)

    async def _on_connect(self, present: bool) -> None:
        c = self.client
        self.connects += 1
        self.fleet.connected += 1
        filters = [(f"{self.source}/allowlist/snapshot", 1, 0), (f"{self.source}/replay", 1, 0)]
        if self.fleet.peers:
            filters += [(f"{ROOT}/{self.site}/+/events/{t}", 1, 0) for t in PEER_TYPES]
        if not present:
            await c.subscribe(filters)
        c.publish(f"{self.source}/status", json.dumps({
            "state": "online", "mode": "normal", "allowlist_version": self.allowlist_version, "devices": {},
            "session": self.session, "last_seq": self.seq, "epoch": self.epoch, "time": _now_iso()}).encode(),
            retain=True)
        if not present or self.connects == 1:
            c.publish(f"{self.source}/key", json.dumps({
                "kid": f"{self.site}-{self.gate}-1", "public_key": self.fleet.public_key,
                "scope": ["visitor"]}).encode(), retain=True)
        if not present:  # no session: batches may have been missed while away (SPEC §2 Sessions)
            self.resync_at = time.monotonic()
            c.publish(f"{self.source}/allowlist/resync", json.dumps({"have_version": self.allowlist_version}).encode())
        self.pump()

    # --- events -------------------------------------------------------------------------------------------
    def emit(self, kind: str = "access.granted") -> None:
        self.seq += 1
        seq = self.seq
        body = json.dumps({
            "specversion": "1.0", "id": uuid.uuid4().hex, "source": self.source, "type": kind, "time": _now_iso(),
            "datacontenttype": "application/json", "epoch": self.epoch, "seq": seq, "subject": "main",
            "data": {"door": "main", "direction": "in", "credential_kind": "badge",
                     "credential_ref": f"badge:{seq:08X}", "holder": f"h-{seq}", "sent_at": time.time()},
        }, separators=(",", ":")).encode()
        self.log[seq] = (f"{self.source}/events/{kind}", body)
        self.fleet.emitted += 1
        if self.lose:  # journaled, acknowledged, then lost on the way: only replay brings it to central
            self.lose -= 1
            self.acked += 1
            self.fleet.acked += 1
            return
        self.outbox[seq] = self.log[seq]
        self.pump()

    def pump(self) -> None:
        """Send what the outbox holds beyond what is in flight, then pending replays (behind live traffic)."""
        c = self.client
        if c is None or not c.connected:
            return
        for seq, (topic, body) in self.outbox.items():
            if len(self.sending) >= MAX_INFLIGHT:
                return
            if seq in self.sending:
                continue
            self.sending.add(seq)
            c.publish(topic, body, content_type=CE_CONTENT_TYPE, on_ack=lambda code, s=seq: self._acked(s))
        n = 0
        while self.replay_queue and n < REPLAY_BATCH and c.inflight < MAX_INFLIGHT:
            seq = self.replay_queue.pop(0)
            if seq in self.log:
                topic, body = self.log[seq]
                c.publish(topic, body, content_type=CE_CONTENT_TYPE,
                          on_ack=lambda code: self.pump())
                self.fleet.replayed += 1
                n += 1

    def _acked(self, seq: int) -> None:
        self.sending.discard(seq)
        if self.outbox.pop(seq, None) is not None:
            self.acked += 1
            self.fleet.acked += 1
        self.pump()

    # --- incoming -----------------------------------------------------------------------------------------
    def _on_message(self, _client, topic: str, payload: bytes, _pid) -> None:
        if topic.endswith("/allowlist/snapshot"):
            self._on_snapshot(payload)
        elif topic.endswith("/replay"):
            self._on_replay(payload)
        else:
            self.peer_deliveries += 1
            self.fleet.peer_deliveries += 1

    def _on_snapshot(self, payload: bytes) -> None:
        try:
            m = json.loads(payload)
            version, chunk, chunks = int(m["version"]), int(m["chunk"]), int(m["chunks"])
        except (ValueError, KeyError, TypeError):
            self.fleet.bad_messages += 1
            return
        got = self.snapshot.setdefault(version, set())
        for other in [v for v in self.snapshot if v != version]:  # a chunk of another version discards the rest
            del self.snapshot[other]
        got.add(chunk)
        if len(got) == chunks:
            del self.snapshot[version]
            self.allowlist_version = version
            if self.resync_at is not None:
                self.snapshot_s.append(time.monotonic() - self.resync_at)
                self.resync_at = None
            self.fleet.snapshots += 1

    def _on_replay(self, payload: bytes) -> None:
        try:
            m = json.loads(payload)
            after = int(m["after_seq"])
            until = int(m.get("until_seq") or self.seq)
        except (ValueError, KeyError, TypeError):
            self.fleet.bad_messages += 1
            return
        self.fleet.replay_requests += 1
        queued = set(self.replay_queue)
        self.replay_queue += [s for s in range(after + 1, min(until, self.seq) + 1) if s not in queued]
        self.pump()

    def kill(self) -> None:
        self.killed = True
        if self.client:
            self.client.abort()


class Fleet:
    def __init__(self, sites: list[tuple[str, str, int, int]], peers: bool, connect_parallel: int = 200):
        self.loop = asyncio.get_running_loop()
        self.peers = peers
        self.stopping = False
        self.connect_slots = asyncio.Semaphore(connect_parallel)  # a listen backlog is finite
        self.links = [GateLink(self, site, f"g{i:04d}", host, port)
                      for site, host, port, gates in sites for i in range(1, gates + 1)]
        self.by_name = {f"{l.site}/{l.gate}": l for l in self.links}
        self.connected = self.emitted = self.acked = self.snapshots = self.peer_deliveries = 0
        self.replayed = self.replay_requests = self.bad_messages = 0
        self.rate = 0.0
        self.tasks: list[asyncio.Task] = []
        # one real Ed25519 key for every simulated gate: real gates on the site check the PEM they are sent
        self.public_key = Ed25519PrivateKey.generate().public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    def start(self) -> None:
        self.tasks = [self.loop.create_task(l.run()) for l in self.links]
        self.tasks.append(self.loop.create_task(self._generate()))

    async def _generate(self) -> None:
        """Round robin over every gate, connected or not: doors do not wait for the broker."""
        tick, owed, i = 0.01, 0.0, 0
        live = [l for l in self.links]
        last = time.monotonic()
        while not self.stopping:
            await asyncio.sleep(tick)
            now = time.monotonic()
            owed += self.rate * (now - last)
            last = now
            while owed >= 1:
                link = live[i % len(live)]
                i += 1
                owed -= 1
                if not link.killed:
                    link.emit()
            if not self.rate:
                owed = 0.0

    def stats(self) -> dict:
        snaps = sorted(s for l in self.links for s in l.snapshot_s)
        return {"gates": len(self.links), "connected": self.connected, "emitted": self.emitted,
                "acked": self.acked, "pending": sum(len(l.outbox) for l in self.links),
                "snapshots": self.snapshots, "snapshot_max_s": round(snaps[-1], 3) if snaps else None,
                "peer_deliveries": self.peer_deliveries, "replay_requests": self.replay_requests,
                "replayed": self.replayed, "reconnects": sum(max(0, l.connects - 1) for l in self.links),
                "bad_messages": self.bad_messages}

    def dump(self, path: str) -> None:
        with open(path, "w") as f:
            json.dump({l.source: [l.epoch, l.seq, l.session, l.killed] for l in self.links}, f)

    async def stop(self) -> None:
        self.stopping = True
        for l in self.links:
            if l.client:
                l.client.disconnect()
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def _control(fleet: Fleet) -> None:
    reader = asyncio.StreamReader()
    await fleet.loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            return
        try:
            cmd = json.loads(line)
            op = cmd["cmd"]
            if op == "rate":
                fleet.rate = float(cmd["per_s"])
                out = {"ok": "rate", "per_s": fleet.rate}
            elif op == "stats":
                out = fleet.stats()
            elif op == "dump":
                fleet.dump(cmd["path"])
                out = {"ok": "dump"}
            elif op == "kill":
                for name in cmd["gates"]:
                    fleet.by_name[name].kill()
                out = {"ok": "kill", "gates": len(cmd["gates"])}
            elif op == "bounce":  # a crash and a restart: the will fires, then a new session's status
                for name in cmd["gates"]:
                    link = fleet.by_name[name]
                    if link.client:
                        link.client.abort()
                out = {"ok": "bounce", "gates": len(cmd["gates"])}
            elif op == "lose":
                for name in cmd["gates"]:
                    fleet.by_name[name].lose += int(cmd["n"])
                out = {"ok": "lose", "gates": len(cmd["gates"])}
            elif op == "emit":  # events on these gates now, whatever the rate
                for name in cmd["gates"]:
                    for _ in range(int(cmd.get("n", 1))):
                        fleet.by_name[name].emit()
                out = {"ok": "emit", "gates": len(cmd["gates"])}
            elif op == "quit":
                return
            else:
                out = {"error": f"unknown command {op!r}"}
        except (ValueError, KeyError, TypeError) as e:
            out = {"error": f"bad command: {e}"}
        print(json.dumps(out), flush=True)


async def main_async(args) -> None:
    sizes = {}
    for spec in args.site_gates or []:
        name, _, n = spec.partition("=")
        sizes[name] = int(n)
    sites = []
    for spec in args.site:
        name, _, addr = spec.partition("=")
        host, _, port = addr.rpartition(":")
        sites.append((name, host, int(port), sizes.get(name, args.gates)))
    fleet = Fleet(sites, args.peers)
    fleet.start()
    deadline = time.monotonic() + args.connect_timeout
    while fleet.connected < len(fleet.links) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    print(json.dumps({"ready": fleet.connected, "gates": len(fleet.links)}), flush=True)
    await _control(fleet)
    await fleet.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--site", action="append", required=True, help="SITE=HOST:PORT, the site's broker (repeat)")
    p.add_argument("--gates", type=int, default=100, help="gates per site")
    p.add_argument("--site-gates", action="append", help="SITE=N: that site has N gates instead (repeat)")
    p.add_argument("--peers", action="store_true", help="subscribe to the peers' site-state event types")
    p.add_argument("--connect-timeout", type=float, default=120.0, help="seconds to wait for every link")
    args = p.parse_args()
    try:
        import uvloop  # optional: a faster loop for ten thousand sockets
        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
