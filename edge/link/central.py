"""The central link: one MQTT session carrying the outbox, status and muster out, and the allow-list,
sign-offs, site mode, heartbeat and peers' events in (SPEC §2).

Nothing received here drives an output: a message can change the cache, the mode or a sign-off, and
the next scan decides. That is how retained or replayed messages can never open a door.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path

from edge.config import GateConfig
from edge.devices import DeviceBoard
from edge.gate import Gate
from edge.link.client import Incoming, MqttClient
from edge.link.messages import BadMessage, GateKey, PeerEvent, Signoff, SiteMode, parse
from edge.link.outbox import Outbox
from edge.link.sync import AllowlistSync
from edge.model import Mode
from edge.passes.keys import load_public_pem
from edge.store.journal import rfc3339

log = logging.getLogger(__name__)

ALARM_EVERY_S = 60.0  # one bad-message alarm per topic per minute; the rest are counted in it
STATUS_EVERY_S = 60.0


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
        self.source = f"{root}/{me}"
        self.t_status = f"{root}/{me}/status"
        self.t_muster = f"{root}/{me}/muster"
        self.t_resync = f"{root}/{me}/allowlist/resync"
        self.t_changes = f"{root}/allowlist/changes"
        self.t_snapshot = f"{root}/{me}/allowlist/snapshot"
        self.t_signoff = f"{root}/visits/signoff"
        self.t_mode = f"{root}/mode"
        self.t_heartbeat = f"{root}/central/heartbeat"
        self.t_muster_req = f"{root}/{me}/muster/request"
        self.t_peers = f"{root}/+/events/#"
        self.t_key = f"{root}/{me}/key"
        self.t_keys = f"{root}/+/key"
        self.own_key: tuple[str, str] | None = None  # (kid, public PEM) when this gate registers walk-ins
        self.base = base
        self.loop: asyncio.AbstractEventLoop | None = None
        self.client: MqttClient | None = None
        self.outbox: Outbox | None = None
        self.sync: AllowlistSync | None = None
        self.connected = False
        self.kick = asyncio.Event()
        self._alarms: dict[str, tuple[float, int]] = {}
        self._last_status: str | None = None
        self._mode_seen = gate.mode
        self.stopping = False

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        subs = [(self.t_changes, 1), (self.t_snapshot, 1), (self.t_signoff, 1), (self.t_mode, 1),
                (self.t_heartbeat, 0), (self.t_muster_req, 1), (self.t_peers, 1), (self.t_keys, 1)]
        client_id = self.m.client_id or f"gatekeeper-{self.cfg.site.id}-{self.me}"
        self.client = MqttClient(self.m, self.base, client_id, self.t_status, loop, subs, self._on_message,
                                 self._on_published, self._on_state)
        self.outbox = Outbox(self.store, self.client.publish, self._event_topic, self.source, self.m.max_inflight)
        self.outbox.gap_after_prune()
        self.sync = AllowlistSync(self.store, self._send_resync, self._applied, self._alarm,
                                  self.m.resync_retry_s, self._post, (self.t_changes, self.t_snapshot))
        self.sync.start()
        self.board.register("broker", "mqtt")
        self.client.start()

    def stop(self) -> None:
        self.stopping = True  # the disconnect below is ours: no device.fault for it
        if self.outbox:
            self.outbox.persist(force=True)
        if self.client:
            # A clean goodbye: offline, retained, since the broker sends no will after a disconnect.
            self.client.stop((self.t_status, json.dumps(self._status("offline")).encode()))
        if self.sync:
            self.sync.stop()

    async def run(self, stop: asyncio.Event) -> None:
        """Pump the outbox when asked (a new entry) or every 50 ms; status once a minute or on change."""
        next_status = 0.0
        while not stop.is_set():
            try:
                await asyncio.wait_for(self.kick.wait(), 0.05)
            except asyncio.TimeoutError:
                pass
            self.kick.clear()
            self.outbox.pump()
            self.outbox.persist()
            self.sync.check_retry()
            if self.gate.mode is not self._mode_seen:
                if self.gate.mode is Mode.FIRE:
                    self.publish_muster()  # P16: who is on site, the moment fire mode starts
                self._mode_seen = self.gate.mode
            now = time.monotonic()
            status = self._status_text()
            if self.connected and (status != self._last_status or now >= next_status):
                self._publish_status()
                next_status = now + STATUS_EVERY_S

    def _post(self, fn, *args) -> None:
        self.loop.call_soon_threadsafe(fn, *args)

    # -- out ------------------------------------------------------------------------------------
    def _event_topic(self, etype: str) -> str:
        return f"{self.source}/events/{etype}"

    def _on_published(self, mids: list[int]) -> None:
        self.outbox.on_acks(mids)
        if len(self.outbox.inflight) < self.m.max_inflight // 2:
            self.kick.set()  # room in the window: refill now rather than at the next tick

    def _on_state(self, up: bool, why: str) -> None:
        if self.stopping:
            return
        self.connected = up
        if up:
            log.info("broker %s:%d %s", self.m.host, self.m.port, why)
            self.board.up("broker")
            self._publish_status()
            if self.own_key:  # P13: every gate of the site trusts our walk-in passes
                kid, pem = self.own_key
                self.client.publish(self.t_key, json.dumps({"kid": kid, "public_key": pem, "scope": ["visitor"]}),
                                    qos=1, retain=True)
            self.kick.set()
        else:
            self.board.down("broker", f"{self.m.host}:{self.m.port} {why}")

    def _status_text(self) -> str:
        """What a status change is: state, mode, version, devices (not the outbox depth, which moves
        with every event)."""
        body = self._status()
        body.pop("outbox_depth")
        return json.dumps(body, sort_keys=True)

    def _status(self, state: str | None = None) -> dict:
        devices = {n: h.value for n, h in self.board.health.items() if n != "broker"}
        if state is None:
            state = "degraded" if any(v == "down" for v in devices.values()) else "online"
        return {"state": state, "mode": self.gate.mode.value, "allowlist_version": self.sync.version if self.sync else 0,
                "devices": devices, "outbox_depth": self.outbox.depth if self.outbox else 0}

    def _publish_status(self) -> None:
        self._last_status = self._status_text()
        body = self._status()
        body["time"] = rfc3339(time.time())
        self.client.publish(self.t_status, json.dumps(body), qos=1, retain=True)

    def publish_site_mode(self, mode: str, by: str, reason: str) -> None:
        """P15: a site lockdown (or its end) from this gate reaches every gate of the site; retained so a
        gate that was away learns it when it comes back."""
        body = {"mode": mode, "by": by, "reason": reason, "time": rfc3339(time.time())}
        self.client.publish(self.t_mode, json.dumps(body), qos=1, retain=True)

    def publish_muster(self) -> None:
        people = self.gate.muster()
        body = {"time": rfc3339(time.time()), "mode": self.gate.mode.value, "count": sum(p["party"] for p in people),
                "people": people}
        self.client.publish(self.t_muster, json.dumps(body, ensure_ascii=False), qos=1, retain=True)

    def _applied(self, keys_changed: bool) -> None:
        """The worker committed a batch or a snapshot: mirror it now rather than at the next scan."""
        self.store.refresh(force=True)
        if keys_changed:
            self.reload_keys()
        self.kick.set()

    def _send_resync(self, have: int) -> None:
        log.warning("asking the central system for an allow-list snapshot (have version %d)", have)
        self.client.publish(self.t_resync, json.dumps({"have_version": have}), qos=1)

    # -- in -------------------------------------------------------------------------------------
    def _on_message(self, msg: Incoming) -> None:
        t = msg.topic
        done = lambda: self.client.ack(msg)  # noqa: E731 - acknowledged only once applied
        try:
            if t == self.t_changes:
                self._heard()
                self.sync.on_changes(msg.payload, done)
                return
            if t == self.t_snapshot:
                self._heard()
                self.sync.on_snapshot(msg.payload, done)
                return
            if t == self.t_signoff:
                self._heard()
                self._signoff(parse(Signoff, msg.payload))
            elif t == self.t_mode:
                self._heard()
                self._site_mode(parse(SiteMode, msg.payload), msg.retain)
            elif t == self.t_heartbeat:
                self._heard()
            elif t == self.t_muster_req:
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
        done()

    def _heard(self) -> None:
        # P23 counts any word from the central system; kept in memory, written with the next commit
        self.store.set_meta("central_heard_at", repr(time.time()))

    def _alarm(self, topic: str, why: str) -> None:
        now = time.monotonic()
        last, suppressed = self._alarms.get(topic, (0.0, 0))
        if last and now - last < ALARM_EVERY_S:
            self._alarms[topic] = (last, suppressed + 1)
            return
        self._alarms[topic] = (now, 0)
        log.error("refused a message on %s: %s", topic, why)
        self.gate.record("alarm.raised", {"alarm": "bad_message", "topic": topic, "error": why[:300],
                                          "suppressed_before": suppressed})
        self.kick.set()

    def _signoff(self, s: Signoff) -> None:
        """P9: the host signed the visit off; the visitor's next exit scan goes through. Opens nothing."""
        self.gate.sign_off(s.visit, s.host, "central")
        self.kick.set()

    def _site_mode(self, m: SiteMode, retained: bool) -> None:
        """P15 from the central system or another gate. A stale retained message does not undo a newer
        local change, and the key switch keeps its lockdown until it is turned back."""
        target = Mode(m.mode)
        if target is self.gate.mode or self.gate.mode is Mode.FIRE:
            return
        sent = _epoch(m.time)
        local = float(self.store.meta("mode_at", "0"))
        if sent is not None and sent <= local:
            log.info("site mode %s from %s is older than this gate's last change: ignored", m.mode, m.by)
            return
        if target is Mode.NORMAL and self.store.meta("mode_by") == "lockdown_input":
            log.warning("site mode normal from %s ignored: the lockdown key switch is on", m.by)
            return
        self.gate.set_mode(target, m.by or "central", m.reason or "site mode", scope="site")
        self.kick.set()

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
        if not (e.type.startswith("access.") or e.type.startswith("visit.")):
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
                self.gate.move_presence(ref, d.get("holder"), d.get("category"), to, party, now)
            elif e.type == "visit.checked_out" and isinstance(d.get("visit"), str):
                c.execute("INSERT OR IGNORE INTO consumed(visit, at) VALUES(?, ?)", (d["visit"], now))
                self.store.consumed.add(d["visit"])
            elif e.type == "visit.amended" and isinstance(d.get("revoked"), str) and d["revoked"].startswith("pass:"):
                # P4: the pass a supervisor replaced at another gate is void here too
                c.execute("INSERT OR IGNORE INTO local_revocations(ref, at, by) VALUES(?,?,?)",
                          (d["revoked"], now, e.source))
                self.store.revoked.add(d["revoked"])
            elif e.type == "visit.signed_off" and isinstance(d.get("visit"), str):
                c.execute("INSERT OR IGNORE INTO signoffs(visit, host, at) VALUES(?,?,?)", (d["visit"], d.get("host"), now))
                self.store.signoffs.add(d["visit"])


def _epoch(t) -> float | None:
    if not isinstance(t, str):
        return None
    from datetime import datetime
    try:
        return datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
