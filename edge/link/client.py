"""paho-mqtt, wrapped for the gate: persistent session, last will, TLS, manual acknowledgement.

paho runs its network loop on its own thread; every callback here is handed to the asyncio loop, which
owns the database. Incoming QoS 1 messages are acknowledged only after they were applied and
committed (manual ack), so a crash between the two makes the broker deliver them again.
"""
from __future__ import annotations

import asyncio
import json
import logging
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from edge.config import MqttSection
from edge.runtime.threads import post

log = logging.getLogger(__name__)


JSON = "application/json"


@dataclass(frozen=True, slots=True)
class Subscription:
    topic: str
    qos: int = 1
    # MQTT 5 retain handling 1: the broker sends retained messages only when the subscription is new, not
    # again at every reconnect of a kept session (SPEC §2: the retained `key` and `mode` topics)
    retained_once: bool = False


@dataclass(frozen=True, slots=True)
class Incoming:
    topic: str
    payload: bytes
    retain: bool
    mid: int
    qos: int


class MqttClient:
    def __init__(self, cfg: MqttSection, base: Path, client_id: str, will_topic: str, loop: asyncio.AbstractEventLoop,
                 subscriptions: list[Subscription], on_message: Callable[[Incoming], None],
                 on_published: Callable[[list[int]], None], on_state: Callable[[bool, str, bool], None],
                 will: Callable[[], str] = lambda: json.dumps({"state": "offline"}), retired: tuple[str, ...] = ()):
        self.cfg = cfg
        # topics an earlier release subscribed to: a session the broker kept would go on delivering them
        self.retired = retired
        self.loop = loop
        self.subscriptions = subscriptions
        self._on_message = on_message
        self._on_published = on_published
        self._on_state = on_state
        self.connected = False
        self._acks: list[int] = []
        self._acks_lock = threading.Lock()
        self._acks_scheduled = False
        v5 = cfg.protocol == "5"
        self.v5 = v5
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else False,  # 3.1.1: a persistent session; 5: clean_start below
            manual_ack=True)
        self.client.max_inflight_messages_set(cfg.max_inflight)
        self.client.max_queued_messages_set(0)  # the outbox bounds what it hands over
        self.client.reconnect_delay_set(0.5, 15)
        self.base = base
        self._started_tls = False
        # The broker publishes this, retained, when we vanish without saying goodbye. It is made again
        # before every connection, so it carries that connection's session number (SPEC §2).
        self.will_topic, self.will = will_topic, will
        self.client.on_pre_connect = lambda client, userdata: client.will_set(self.will_topic, self.will(), qos=1,
                                                                             retain=True)
        self.client.will_set(will_topic, json.dumps({"state": "offline"}), qos=1, retain=True)
        self.client.on_connect = self._cb_connect
        self.client.on_disconnect = self._cb_disconnect
        self.client.on_message = self._cb_message
        self.client.on_publish = self._cb_publish
        self.client.on_subscribe = lambda *a: None
        self._content_types: dict[str, Properties] = {}

    def _credentials(self) -> None:
        """The password and TLS files, read when connecting: a missing one is a link fault, retried."""
        cfg, base = self.cfg, self.base
        if cfg.username:
            password = None
            if cfg.password_file:
                password = _resolve(base, cfg.password_file).read_text().strip()
            self.client.username_pw_set(cfg.username, password)
        if cfg.tls:
            ca = str(_resolve(base, cfg.ca_file)) if cfg.ca_file else None
            cert = str(_resolve(base, cfg.cert_file)) if cfg.cert_file else None
            key = str(_resolve(base, cfg.key_file)) if cfg.key_file else None
            self.client.tls_set(ca_certs=ca, certfile=cert, keyfile=key, cert_reqs=ssl.CERT_REQUIRED,
                                tls_version=ssl.PROTOCOL_TLS_CLIENT)

    def start(self) -> None:
        """Raises OSError or ssl.SSLError when the password or a TLS file cannot be read."""
        if not self._started_tls:
            self._credentials()
            self._started_tls = True
        props = None
        clean = mqtt.MQTT_CLEAN_START_FIRST_ONLY
        if self.v5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = self.cfg.session_expiry_s
            clean = False  # keep the session (and what the broker queued for us) across restarts
        # connect_async + loop_start: the first connection is tried, and retried, on paho's thread.
        self.client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s, clean_start=clean,
                                  properties=props)
        self.client.loop_start()

    def stop(self, goodbye: tuple[str, bytes] | None = None) -> None:
        if goodbye and self.connected:
            info = self.client.publish(goodbye[0], goodbye[1], qos=1, retain=True, properties=self._props(JSON))
            try:
                info.wait_for_publish(2)
            except (RuntimeError, ValueError):
                pass
        self.client.disconnect()
        self.client.loop_stop()

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False,
                content_type: str = JSON) -> int:
        """The message id (paho queues it while disconnected); the ack arrives through on_published. Under
        MQTT 5 the message says what it holds (the content type property); 3.1.1 has no place for it."""
        return self.client.publish(topic, payload, qos=qos, retain=retain, properties=self._props(content_type)).mid

    def _props(self, content_type: str) -> Properties | None:
        """One PUBLISH property set per content type, made once: the outbox publishes thousands a second."""
        if not self.v5:
            return None
        props = self._content_types.get(content_type)
        if props is None:
            props = Properties(PacketTypes.PUBLISH)
            props.ContentType = content_type
            self._content_types[content_type] = props
        return props

    def ack(self, msg: Incoming) -> None:
        if msg.qos > 0:
            self.client.ack(msg.mid, msg.qos)

    # paho's thread -> the loop
    def _post(self, fn, *args) -> None:
        post(self.loop, fn, *args)

    def _cb_connect(self, client, userdata, flags, reason, properties) -> None:
        if reason.is_failure:
            self._post(self._on_state, False, f"refused: {reason}", False)
            return
        if flags.session_present and self.retired:
            client.unsubscribe(list(self.retired))
        for sub in self.subscriptions:  # in on_connect, so they come back after every reconnect
            if self.v5:
                # no_local: our own events would come straight back on the peers' wildcard
                client.subscribe(sub.topic, options=SubscribeOptions(
                    qos=sub.qos, noLocal=True,
                    retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB if sub.retained_once
                    else SubscribeOptions.RETAIN_SEND_ON_SUBSCRIBE))
            else:
                client.subscribe(sub.topic, sub.qos)
        self.connected = True
        # SPEC §2: no session at the broker (a new gate, an expired session, a broker that lost its store)
        # means batches may have been missed: the link asks for a snapshot.
        self._post(self._on_state, True, "connected", bool(flags.session_present))

    def _cb_disconnect(self, client, userdata, flags, reason, properties) -> None:
        self.connected = False
        self._post(self._on_state, False, f"disconnected: {reason}", False)

    def _cb_message(self, client, userdata, message) -> None:
        self._post(self._on_message, Incoming(
            message.topic, message.payload, bool(message.retain), message.mid, message.qos))

    def _cb_publish(self, client, userdata, mid, reason, properties) -> None:
        # Acks come by the thousand during a backlog: hand them over in batches, one wake-up each.
        with self._acks_lock:
            self._acks.append(mid)
            if self._acks_scheduled:
                return
            self._acks_scheduled = True
        self._post(self._deliver_acks)

    def drain_acks(self) -> None:
        """Hand over acks that arrived and were not delivered yet (at stop, before the watermark is saved)."""
        self._deliver_acks()

    def _deliver_acks(self) -> None:
        with self._acks_lock:
            mids, self._acks = self._acks, []
            self._acks_scheduled = False
        self._on_published(mids)


def _resolve(base: Path, p: str) -> Path:
    path = Path(p)
    return path if path.is_absolute() else base / path
