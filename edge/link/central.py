"""The central link: one MQTT session carrying the outbox, status and muster out, and the allow-list,
sign-offs, site mode, heartbeat and peers' events in (SPEC §2).

Nothing received here drives an output: a message can change the cache, the mode or a sign-off, and
the next scan decides. That is how retained or replayed messages can never open a door.
"""
from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections import deque
from pathlib import Path

from edge.config import GateConfig
from edge.hardware.devices import DeviceBoard
from edge.core.gate import Gate
from edge.link.client import Incoming, MqttClient, Subscription
from edge.link.messages import (
    PEER_EVENT_TYPES, BadMessage, GateKey, Heartbeat, MusterRequest, PeerEvent, ReplayRequest, Signoff, SiteMode, parse,
)
from edge.link.outbox import Outbox
from edge.link.replay import Replay
from edge.link.restore import ModeRestore
from edge.link.sync import AllowlistSync
from edge.core.model import Mode
from edge.core.modes import MUSTERING
from edge.passes.keys import load_public_pem
from edge.store.journal import rfc3339
from edge.runtime.threads import post

log = logging.getLogger(__name__)

ALARM_EVERY_S = 60.0  # one bad-message alarm per topic per minute; the rest are counted in it
STATUS_EVERY_S = 60.0
RETRY_WAITING_S = 1.0  # inbound messages the database refused are tried again this often (SPEC §6)
CLIENT_RETRY_S = 30.0
EVENT_CONTENT_TYPE = "application/cloudevents+json"
TICK_S = 1.0  # the link's chores without an event: another process's appends, retries, the watermark


class CentralLink:
    def __init__(self, cfg: GateConfig, base: Path, gate: Gate, board: DeviceBoard, reload_keys):
        assert cfg.mqtt is not None
        self.cfg = cfg
        self.m = cfg.mqtt
        self.gate = gate
        self.store = gate.store
        self.board = board
        self.reload_keys = reload_keys
        site, me = cfg.site.id, cfg.site.gate
        root = f"{self.m.topic_root}/{site}"
        self.root = root
        self.me = me
        self.source = cfg.event_source()
        self.t_status = f"{root}/{me}/status"
        self.t_muster = f"{root}/{me}/muster"
        self.t_resync = f"{root}/{me}/allowlist/resync"
        self.t_changes = f"{root}/allowlist/changes"
        self.t_snapshot = f"{root}/{me}/allowlist/snapshot"
        self.t_signoff = f"{root}/visits/signoff"
        self.t_mode = f"{root}/mode"
        self.t_heartbeat = f"{root}/central/heartbeat"
        self.t_muster_req = f"{root}/{me}/muster/request"
        self.t_replay = f"{root}/{me}/replay"
        self.t_peers = [f"{root}/+/events/{etype}" for etype in PEER_EVENT_TYPES]  # SPEC §2: not events/#
        self.t_key = f"{root}/{me}/key"
        self.t_keys = f"{root}/+/key"
        self.own_key: tuple[str, str] | None = None  # (kid, public PEM) when this gate registers walk-ins
        self.base = base
        self.loop: asyncio.AbstractEventLoop | None = None
        self.client: MqttClient | None = None
        self.outbox: Outbox | None = None
        self.replay: Replay | None = None
        self.restore: ModeRestore | None = None
        self.sync: AllowlistSync | None = None
        self.connected = False
        self.kick = asyncio.Event()
        self._alarms: dict[str, tuple[float, int]] = {}
        self._last_status: str | None = None
        self.stopping = False
        self.closed = False  # after stop(): late callbacks find no database to write to
        # SPEC §2: a number that rises at every connection of this gate and survives restarts
        self.session = int(self.store.meta("mqtt_session", "0"))
        # Inbound messages the database could not take yet (a full disk), applied in order when it can;
        # acknowledged only then, so a restart meanwhile gets them again from the broker (SPEC §6).
        self.waiting: deque[Incoming] = deque()
        self._retry_at = 0.0
        self._client_started = False
        self._client_retry_at = 0.0

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        subs = [Subscription(self.t_changes), Subscription(self.t_snapshot), Subscription(self.t_signoff),
                Subscription(self.t_mode, retained_once=True), Subscription(self.t_heartbeat, 0),
                Subscription(self.t_muster_req), *(Subscription(t) for t in self.t_peers),
                Subscription(self.t_keys, retained_once=True), Subscription(self.t_replay)]
        client_id = self.m.client_id or f"gatekeeper-{self.cfg.site.id}-{self.me}"
        self.client = MqttClient(self.m, self.base, client_id, self.t_status, loop, subs, self._on_message,
                                 self._on_published, self._on_state, self._next_will,
                                 retired=(f"{self.root}/+/events/#",))  # every peer event, before SPEC §2 said not
        self.outbox = Outbox(self.store, self._publish_event, self._event_topic, self.source, self.m.max_inflight)
        self.outbox.gap_after_prune()
        self.replay = Replay(self.store, self._publish_event, self._event_topic, self.source,
                             lambda: self.outbox.handed, self.gate.record, self.m.replay_per_s, self.m.max_inflight // 10)
        self.restore = ModeRestore(self.gate.modes, self.store, lambda body: self.client.publish(
            self.t_mode, json.dumps(body), qos=1, retain=True))
        self.sync = AllowlistSync(self.store, self._send_resync, self._applied, self._alarm,
                                  self.m.resync_retry_s, self._post, (self.t_changes, self.t_snapshot),
                                  heard=self.gate.heard)
        self.sync.start()
        self.store.journal_listeners.append(self.kick.set)
        self.gate.urgent = self._urgent  # P34: an alarm.duress goes out ahead of any backlog
        self.gate.modes.listeners.append(self._mode_changed)
        self.board.register("broker", "mqtt")
        self._start_client()

    def _start_client(self) -> None:
        """Connect (paho retries on its own from then on). A password or TLS file that cannot be read is
        a named fault of the link, tried again every CLIENT_RETRY_S: the doors never wait for it."""
        try:
            self.client.start()
            self._client_started = True
        except (OSError, ValueError) as e:  # ssl.SSLError is an OSError
            self._client_retry_at = time.monotonic() + CLIENT_RETRY_S
            self.board.down("broker", f"cannot connect: {e.__class__.__name__}: {e}"[:200])

    def stop(self) -> None:
        self.stopping = True  # the disconnect below is ours: no device.fault for it
        if self.client and self._client_started:
            # A clean goodbye: offline, retained, since the broker sends no will after a disconnect. A
            # full status (SPEC §2), with its time, as every other status.
            body = self._status("offline")
            body["time"] = rfc3339(time.time())
            self.client.stop((self.t_status, json.dumps(body).encode()))
            self.client.drain_acks()  # acks that arrived during the goodbye count too
        if self.sync:
            self.sync.stop()
        if self.outbox:
            self.outbox.persist(force=True)  # the last acks, before the database closes
        self.closed = True

    async def run(self, stop: asyncio.Event) -> None:
        """Pump the outbox when the journal grows or the broker acknowledges, and every TICK_S for what
        another process appended and for retries; status once a minute or on change."""
        next_status = 0.0
        while not stop.is_set():
            try:
                await asyncio.wait_for(self.kick.wait(), self._wake_s())
            except asyncio.TimeoutError:
                pass
            self.kick.clear()
            if not self._client_started:
                if time.monotonic() >= self._client_retry_at:
                    self._start_client()
                continue
            self.outbox.pump()
            if self.connected:  # SPEC §2: behind the live traffic, in what its window leaves
                self.replay.pump(len(self.outbox.inflight), self.m.max_inflight)
                self.restore.check()
            self.outbox.persist()
            self.sync.check_retry()
            if self.waiting and time.monotonic() >= self._retry_at:
                self._retry_waiting()
            now = time.monotonic()
            status = self._status_text()
            if self.connected and (status != self._last_status or now >= next_status):
                self._publish_status()
                next_status = now + STATUS_EVERY_S

    def _urgent(self, entry) -> None:
        self.outbox.expedite(entry.seq)
        self.kick.set()

    def _post(self, fn, *args) -> None:
        post(self.loop, fn, *args)

    def _wake_s(self) -> float:
        """TICK_S, or sooner when a replay's next burst or putting the site mode back is due."""
        waits = [TICK_S, self.restore.wait(), self.replay.wait_s() if self.connected else None]
        return min(w for w in waits if w is not None)

    def _next_will(self) -> str:
        """Before every connection (paho's thread): the session number rises, and the last will says it."""
        self.session += 1
        self._post(self.store.defer_meta, "mqtt_session", str(self.session))
        return json.dumps({"state": "offline", "session": self.session})

    # -- out ------------------------------------------------------------------------------------
    def _event_topic(self, etype: str) -> str:
        return f"{self.source}/events/{etype}"

    def _publish_event(self, topic: str, payload: str) -> int:
        """SPEC §2: under MQTT 5 an event says it is a CloudEvent in structured mode (the CloudEvents MQTT
        binding), so a consumer knows the envelope without looking inside."""
        return self.client.publish(topic, payload, content_type=EVENT_CONTENT_TYPE)

    def _on_published(self, mids: list[int]) -> None:
        if self.closed:
            return
        self.outbox.on_acks(self.replay.on_acks(mids))  # a replay's acks never move the watermark
        if len(self.outbox.inflight) < self.m.max_inflight // 2 or self.replay.pending:
            self.kick.set()  # room in the window: refill now rather than at the next tick

    def _on_state(self, up: bool, why: str, session_present: bool = True) -> None:
        if self.stopping:
            return
        self.connected = up
        if up:
            log.info("broker %s:%d %s (session %d%s)", self.m.host, self.m.port, why, self.session,
                     "" if session_present else ", none kept at the broker")
            self.board.up("broker")
            if not session_present:
                # SPEC §2: batches sent while we had no session never reach us: ask for a snapshot now,
                # rather than at the next change (a new gate at version 0 gets its allow-list at once)
                self.sync.resync(force=True)
                self.restore.no_session()  # SPEC §7: the broker may have lost the retained site mode
            self._publish_status()
            if self.own_key:  # P13: every gate of the site trusts our walk-in passes
                kid, pem = self.own_key
                self.client.publish(self.t_key, json.dumps({"kid": kid, "public_key": pem, "scope": ["visitor"]}),
                                    qos=1, retain=True)
            self.kick.set()
        else:
            self.board.down("broker", f"{self.m.host}:{self.m.port} {why}")

    def _status_text(self) -> str:
        """What a status change is: state, mode, version, devices, session (not the time or the last seq,
        which move all the time and are sent with every status anyway). Asked at every turn of the link's
        loop, so it reads nothing from the database."""
        return json.dumps(self._status(with_seq=False), sort_keys=True)

    def _status(self, state: str | None = None, with_seq: bool = True) -> dict:
        """SPEC §2 status. `last_seq` lets the central system see a loss before the next event comes."""
        devices = {n: h.value for n, h in self.board.health.items() if n != "broker"}
        if state is None:
            state = "degraded" if self.board.degraded else "online"
        body = {"state": state, "mode": self.gate.mode.value, "allowlist_version": self.sync.version if self.sync else 0,
                "devices": devices, "session": self.session, "epoch": self.store.epoch}
        if with_seq:
            body["last_seq"] = self.gate.journal.last_seq()
        return body

    def _publish_status(self) -> None:
        self._last_status = self._status_text()
        body = self._status()
        body["time"] = rfc3339(time.time())
        self.client.publish(self.t_status, json.dumps(body), qos=1, retain=True)

    def publish_site_mode(self, mode: str, actor: str, reason: str, version: int) -> None:
        """P15, P28: a site lockdown or drill (or its end) from this gate reaches every gate of the site;
        retained so a gate that was away learns it when it comes back. SPEC §2: ordered by `version`, not by
        clocks."""
        body = {"mode": mode, "actor": actor, "reason": reason, "time": rfc3339(time.time()), "version": version}
        self.client.publish(self.t_mode, json.dumps(body), qos=1, retain=True)

    def _mode_changed(self, previous: Mode, mode: Mode) -> None:
        if (mode in MUSTERING or previous in MUSTERING) and self._client_started:
            # P16, P28: who is on site, the moment a fire or a drill starts; and, when it ends, the retained
            # list says so (a central that joins later must not see a muster still under way)
            self.publish_muster()

    def publish_muster(self) -> None:
        people = self.gate.muster()
        # SPEC §2: the muster's `mode` says whether people are mustering (fire, drill) or not (normal); a
        # lockdown is no muster
        mode = self.gate.mode.value if self.gate.modes.mustering else Mode.NORMAL.value
        body = {"time": rfc3339(time.time()), "mode": mode, "count": sum(p["party"] for p in people),
                "people": people}
        self.client.publish(self.t_muster, json.dumps(body, ensure_ascii=False), qos=1, retain=True)

    def _applied(self, keys_changed: bool) -> None:
        """The worker committed a batch or a snapshot: mirror it now rather than at the next scan."""
        if self.closed:
            return
        self.store.refresh()
        if keys_changed:
            self.reload_keys()
        self.kick.set()  # the worker appended to the journal from its own process: no listener heard it

    def _send_resync(self, have: int) -> None:
        log.info("asking the central system for an allow-list snapshot (have version %d)", have)
        self.client.publish(self.t_resync, json.dumps({"have_version": have}), qos=1)

    # -- in -------------------------------------------------------------------------------------
    def _on_message(self, msg: Incoming) -> None:
        if self.closed:
            return  # not acknowledged: the broker sends it again after the restart
        if self.waiting and msg.topic not in (self.t_heartbeat, self.t_muster_req):
            self.waiting.append(msg)  # behind what the database refused: order is kept
            return
        if not self._handle(msg):
            self.waiting.append(msg)
            self._retry_at = time.monotonic() + RETRY_WAITING_S

    def _retry_waiting(self) -> None:
        while self.waiting:
            if not self._handle(self.waiting[0]):
                self._retry_at = time.monotonic() + RETRY_WAITING_S
                return
            self.waiting.popleft()
        log.warning("inbound messages held while the database refused writes are applied")

    def _handle(self, msg: Incoming) -> bool:
        """Apply one message. False when the database refused it (kept, not acknowledged, tried again);
        anything malformed, oversized or out of schema changes nothing and raises an alarm (SPEC §2)."""
        t = msg.topic
        done = lambda: self.client.ack(msg)  # noqa: E731 - acknowledged only once applied
        try:
            if t == self.t_changes:
                self.sync.on_changes(msg.payload, done)  # the worker acknowledges it when it is applied
                return True
            if t == self.t_snapshot:
                self.sync.on_snapshot(msg.payload, done)
                return True
            if t == self.t_signoff:
                s = parse(Signoff, msg.payload)
                self.gate.heard()  # P23: a well-formed word from the central system, and only that
                # acknowledged once written: now, or after a full disk with the gate's other held writes
                self.gate.sign_off(s.visit, s.host, "central", then=done, role="central")
                return True
            elif t == self.t_mode:
                m = parse(SiteMode, msg.payload)
                self.restore.heard(m.version, m.actor)
                self.gate.modes.from_site(Mode(m.mode), m.actor, m.reason, m.version)
            elif t == self.t_heartbeat:
                hb = parse(Heartbeat, msg.payload)
                self.gate.heard()
                self.gate.central_heartbeat(hb.epoch())  # P3: a clock far off the central system's
            elif t == self.t_replay:
                r = parse(ReplayRequest, msg.payload)
                self.replay.request(r.after_seq, r.until_seq)
            elif t == self.t_muster_req:
                parse(MusterRequest, msg.payload)
                self.publish_muster()
            elif t.startswith(f"{self.root}/") and t.endswith("/key") and t.count("/") == self.root.count("/") + 2:
                if t != self.t_key:
                    self._gate_key(t.split("/")[-2], parse(GateKey, msg.payload))
            elif t.startswith(f"{self.root}/") and "/events/" in t:
                if not t.startswith(f"{self.source}/events/"):
                    self._peer_event(parse(PeerEvent, msg.payload))
            else:
                log.debug("ignored message on %s", t)
        except BadMessage as e:
            self._alarm(t, str(e))
        except sqlite3.OperationalError as e:
            log.error("message on %s waits: the database refused it (%s)", t, e)
            return False
        except Exception as e:  # a bug must not stall the link: named, alarmed, and the message let go
            log.exception("message on %s could not be handled", t)
            self._alarm(t, f"not handled: {e.__class__.__name__}: {e}", "handler_failed")
        done()
        return True

    def _alarm(self, topic: str, why: str, alarm: str = "bad_message") -> None:
        now = time.monotonic()
        last, suppressed = self._alarms.get(topic, (0.0, 0))
        if last and now - last < ALARM_EVERY_S:
            self._alarms[topic] = (last, suppressed + 1)
            return
        self._alarms[topic] = (now, 0)
        log.error("refused a message on %s: %s", topic, why)
        self.gate.record("alarm.raised", {"alarm": alarm, "topic": topic, "error": why[:300],
                                          "suppressed_before": suppressed})

    def _gate_key(self, gate: str, k: GateKey) -> None:
        """Another gate's walk-in key. It never takes the kid of a key from the config or the central
        system (that would let a gate sign as them), and it signs visitor passes only."""
        try:
            load_public_pem(k.public_key.encode())
        except ValueError as e:
            raise BadMessage(f"public_key: {e}") from None
        central = {r[0] for r in self.store.conn.execute("SELECT kid FROM keys")} | {x.kid for x in self.cfg.keys}
        if k.kid in central or (self.own_key and k.kid == self.own_key[0]):
            raise BadMessage(f"kid {k.kid!r} of gate {gate!r} is already the kid of another key")
        row = self.store.conn.execute("SELECT public_key, gate FROM gate_keys WHERE kid=?", (k.kid,)).fetchone()
        if row == (k.public_key, gate):
            return
        with self.store.tx() as c:
            c.execute("INSERT OR REPLACE INTO gate_keys(kid, public_key, gate, at) VALUES(?,?,?,?)",
                      (k.kid, k.public_key, gate, time.time()))
        log.info("trusting gate %s's walk-in key %s (visitor passes only)", gate, k.kid)
        self.reload_keys()

    def _peer_event(self, e: PeerEvent) -> None:
        """P7/P8 across the site: presence and consumed passes follow the other gates' events."""
        if e.type not in PEER_EVENT_TYPES:
            return
        c = self.store.conn
        with self.store.tx():
            row = c.execute("SELECT seq FROM peers WHERE source=? AND epoch=?", (e.source, e.epoch)).fetchone()
            if row and e.seq <= row[0]:
                return  # a duplicate (at-least-once) or a replay
            c.execute("INSERT OR REPLACE INTO peers(source, epoch, seq) VALUES(?,?,?)", (e.source, e.epoch, e.seq))
            d = e.data
            ref = d.get("credential_ref")
            now = _epoch(e.time) or time.time()
            first_passage = e.type == "access.passage" and d.get("count") == 1
            if (e.type == "access.granted" or first_passage) and isinstance(ref, str) and "to_area" in d:
                to = d["to_area"] if isinstance(d["to_area"], str) else None
                party = d.get("party") if isinstance(d.get("party"), int) else 1
                self.store.move_presence(ref, d.get("holder"), d.get("category"), to, party, now)
                if d.get("direction") == "in":  # P36: that gate journaled the later entry and watches it now
                    self.gate.overstays.dropped(ref, now)
            elif e.type == "visit.checked_out" and isinstance(d.get("visit"), str):
                self.store.consume(d["visit"], now)
            elif e.type == "visit.amended" and isinstance(d.get("revoked"), str) and d["revoked"].startswith("pass:"):
                # P4: the pass a supervisor replaced at another gate is void here too
                self.store.revoke_locally(d["revoked"], now, e.source)
            elif e.type == "visit.signed_off" and isinstance(d.get("visit"), str):
                self.store.sign_off(d["visit"], d.get("host"), now)
            elif e.type == "occupancy.corrected" and d.get("area") in self.gate.occupancy.limits \
                    and type(d.get("count")) is int and d["count"] >= 0:
                # P35: an area's count is site-wide: a supervisor's correction at another gate holds here too
                self.gate.occupancy.correct(d["area"], d["count"], now, d.get("actor"), d.get("reason"))


def _epoch(t) -> float | None:
    if not isinstance(t, str):
        return None
    from datetime import datetime
    try:
        return datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
