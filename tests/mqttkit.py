"""A test's own MQTT peer (paho): sees what the gate publishes, and speaks for the central system."""
from __future__ import annotations

import json
import threading
import time
import uuid

import paho.mqtt.client as mqtt

from sitekit import WAIT_S


class Peer:
    def __init__(self, port: int, subscribe: str | list[str] = "acs/#", client_id: str | None = None,
                 persistent: bool = False, username: str | None = None, password: str | None = None,
                 tls: tuple[str, str, str] | None = None):
        self.messages: list[tuple[str, bytes, bool]] = []
        self.cond = threading.Condition()
        self.topics = [subscribe] if isinstance(subscribe, str) else subscribe
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or f"test-{uuid.uuid4().hex[:8]}",
                             clean_session=not persistent)
        self.c.on_connect = self._on_connect
        self.c.on_message = self._on_message
        self.subscribed = threading.Event()
        self.c.on_subscribe = lambda *a: self.subscribed.set()
        self.c.reconnect_delay_set(0.1, 1)
        if username is not None:  # an identity of the broker's password file (SPEC §7)
            self.c.username_pw_set(username, password)
        if tls is not None:  # (CA, client certificate, its key)
            self.c.tls_set(ca_certs=tls[0], certfile=tls[1], keyfile=tls[2])
        self.c.connect("127.0.0.1", port, keepalive=10)
        self.c.loop_start()
        assert self.subscribed.wait(WAIT_S), "no SUBACK from the broker"

    def _on_connect(self, client, userdata, flags, reason, props):
        for t in self.topics:
            client.subscribe(t, 1)

    def _on_message(self, client, userdata, msg):
        with self.cond:
            self.messages.append((msg.topic, msg.payload, bool(msg.retain)))
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
        info = self.c.publish(topic, body, qos=qos, retain=retain)
        info.wait_for_publish(WAIT_S)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


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
