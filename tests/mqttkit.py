"""A test's own MQTT peer (paho): sees what the gate publishes, and speaks for the central system.

Every message a Peer receives on a topic the gate publishes (SPEC §2: events, status, muster, resync, key,
the site mode) is checked against docs/asyncapi.yaml at the end of the test (conftest.py), unless a test
published that very message itself: garbage sent on purpose is not the gate's.
"""
from __future__ import annotations

import json
import threading
import time
import uuid

import paho.mqtt.client as mqtt

from sitekit import WAIT_S

_PEERS: list["Peer"] = []  # every peer of the test run, until its messages were checked
_SENT: set[tuple[str, bytes]] = set()  # what the tests published themselves
_CONTRACT = None


class Peer:
    def __init__(self, port: int, subscribe: str | list[str] = "acs/#", client_id: str | None = None,
                 persistent: bool = False, v5: bool = False, username: str | None = None,
                 password: str | None = None, tls: tuple[str, str, str] | None = None):
        self.messages: list[tuple[str, bytes, bool]] = []
        self.content_types: list[str | None] = []  # each message's MQTT 5 content type, in step with messages
        self.checked = 0  # messages already checked against the contract
        self.closed = False
        self.cond = threading.Condition()
        _PEERS.append(self)
        self.topics = [subscribe] if isinstance(subscribe, str) else subscribe
        cid = client_id or f"test-{uuid.uuid4().hex[:8]}"
        if v5:  # MQTT 5: the messages' properties come along
            self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv5)
        else:
            self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, clean_session=not persistent)
        self.c.on_connect = self._on_connect
        self.c.on_message = self._on_message
        self.subscribed = threading.Event()
        self.c.on_subscribe = lambda *a: self.subscribed.set()
        self.c.reconnect_delay_set(0.1, 1)
        if username is not None:  # an identity of the broker's password file (SPEC §7)
            self.c.username_pw_set(username, password)
        if tls is not None:  # (CA, client certificate, its key)
            self.c.tls_set(ca_certs=tls[0], certfile=tls[1], keyfile=tls[2])
        self.c.connect("127.0.0.1", port, keepalive=10, **({"clean_start": not persistent} if v5 else {}))
        self.c.loop_start()
        assert self.subscribed.wait(WAIT_S), "no SUBACK from the broker"

    def _on_connect(self, client, userdata, flags, reason, props):
        for t in self.topics:
            client.subscribe(t, 1)

    def _on_message(self, client, userdata, msg):
        with self.cond:
            self.messages.append((msg.topic, msg.payload, bool(msg.retain)))
            self.content_types.append(getattr(msg.properties, "ContentType", None) if msg.properties else None)
            self.cond.notify_all()

    def wait(self, pred, timeout: float = WAIT_S, what: str = "messages"):
        deadline = time.monotonic() + timeout
        with self.cond:
            while not (v := pred(self.messages)):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{what} not seen within {timeout} s; have {len(self.messages)} messages, "
                                         f"last topics {[t for t, _, _ in self.messages[-5:]]}")
                self.cond.wait(left)
            return v

    def events(self, gate: str = "gate-1") -> list[dict]:
        with self.cond:
            return [json.loads(p) for t, p, _ in self.messages if t.startswith(f"acs/test/{gate}/events/")]

    def publish(self, topic: str, payload, retain: bool = False, qos: int = 1) -> None:
        body = payload if isinstance(payload, (bytes, str)) else json.dumps(payload)
        _SENT.add((topic, body.encode() if isinstance(body, str) else body))
        info = self.c.publish(topic, body, qos=qos, retain=retain)
        info.wait_for_publish(WAIT_S)

    def close(self) -> None:
        self.closed = True
        self.c.disconnect()
        self.c.loop_stop()


def contract_violations() -> list[str]:
    """What the gate published, as the peers received it since the last call, that breaks the contract
    (docs/asyncapi.yaml); each problem once, however many peers saw it."""
    global _CONTRACT
    if _CONTRACT is None:
        from simulators.contract import Contract
        _CONTRACT = Contract()
    seen: dict[str, None] = {}
    for peer in list(_PEERS):
        with peer.cond:
            new, peer.checked = peer.messages[peer.checked:], len(peer.messages)
        for topic, payload, _ in new:
            if not payload or (topic, payload) in _SENT or not _CONTRACT.gate_sends(topic):
                continue  # a cleared retained message, the test's own, or not the gate's to send
            for problem in _CONTRACT.check(topic, payload):
                seen[f"{topic}: {problem}"] = None
    _PEERS[:] = [p for p in _PEERS if not p.closed]
    return list(seen)


def rfc3339_now(offset: float = 0.0) -> str:
    t = time.time() + offset
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


def record(credential: str, holder: str, category: str = "staff", areas=("site",), **kw) -> dict:
    r = {"credential": credential, "holder": holder, "category": category, "tier": None, "roles": [],
         "areas": list(areas), "valid_from": None, "valid_until": None, "schedule": None, "party": 1, "host": None,
         "escort": False, "id_hash": None}
    r.update(kw)
    return r


def batch(frm: int, to: int, **lists) -> dict:
    b = {"from_version": frm, "to_version": to, "upserts": [], "deletes": [], "revoke": [], "blocklist_add": [],
         "blocklist_remove": [], "keys_add": [], "keys_remove": []}
    b.update(lists)
    return b


def site_mode(mode: str, version: int, actor: str = "central", reason: str = "set by central") -> dict:
    """A SPEC §2 site-mode message: every field, ordered by `version`."""
    return {"mode": mode, "actor": actor, "reason": reason, "time": rfc3339_now(), "version": version}


def event(central: Peer, etype: str, **match) -> dict:
    """The first event of `etype` whose `data` has every `match` item, as the peer received it (waits for it)."""
    def found(msgs):
        for topic, payload, _ in msgs:
            if topic.endswith("/events/" + etype):
                e = json.loads(payload)
                if all(e["data"].get(k) == v for k, v in match.items()):
                    return e
        return None
    return central.wait(found, what=f"{etype} {match}")
