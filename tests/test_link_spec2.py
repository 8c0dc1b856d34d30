"""SPEC §2 details of what the gate publishes and subscribes to, against a real mosquitto: the events' MQTT 5
content type and `subject`, the status and last will, the muster's mode, retain handling and the peers'
event types."""
from __future__ import annotations

import json
import threading

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from mqttkit import Peer, site_mode
from sitekit import WAIT_S, gatekeeper, wait_until
from test_e2e_gate import STAFF
from test_link import start_gate

pytestmark = pytest.mark.e2e

CLOUDEVENTS = "application/cloudevents+json"
# what a gate reads of its peers (SPEC §2; the broker ACL grants the same)
PEER_TYPES = ("access.granted", "access.passage", "visit.checked_out", "visit.signed_off", "visit.amended",
              "occupancy.corrected")
NOT_READ = ("access.denied", "alarm.raised", "door.forced", "visit.checked_in", "permit.changed")


def _online(watcher: Peer, after_session: int = 0) -> dict:
    """The gate's newest `online` status with a session above `after_session`."""
    def found(m):
        for _, p, _ in reversed(m):
            body = json.loads(p) if p else {}
            if body.get("state") == "online" and body.get("session", 0) > after_session:
                return body
        return None
    return watcher.wait(found, what=f"an online status of a session after {after_session}")


@pytest.mark.parametrize("protocol, event_type, other_type", [("5", CLOUDEVENTS, "application/json"),
                                                               ("3.1.1", None, None)])
def test_spec2_events_say_they_are_cloudevents_under_mqtt5_and_name_their_door_as_subject(
        tmp_path, procs, broker, protocol, event_type, other_type):
    central = Peer(broker.port, ["acs/test/gate-1/events/#", "acs/test/gate-1/status"], v5=True)
    g = start_gate(tmp_path, procs, broker, mqtt_extra=f'protocol = "{protocol}"')
    try:
        _, etype, granted = g.scan("main-in", STAFF)
        assert etype == "access.granted"
        last = g.journal.last_seq()
        central.wait(lambda m: {e["seq"] for e in central.events()} >= set(range(1, last + 1)),
                     what=f"events 1..{last}")
        with central.cond:
            got = list(zip(central.messages, central.content_types))
        events = [(json.loads(p), ct) for (t, p, _), ct in got if "/events/" in t]
        status = [ct for (t, p, _), ct in got if t.endswith("/status")]
        # MQTT 5: the CloudEvents MQTT binding, structured mode; 3.1.1 has no place for it and nothing changes
        assert {ct for _, ct in events} == {event_type}
        assert status and set(status) == {other_type}
        by_type = {e["type"]: e for e, _ in events}
        assert by_type["access.granted"]["subject"] == granted["door"] == "main"
        assert "subject" not in by_type["allowlist.applied"]  # no door, no subject
        for e, _ in events:
            assert e.get("subject") == e["data"].get("door")
        # the journal's envelope is the one published: a re-send is the same event, subject and all
        r = gatekeeper("events", "--config", str(g.site.config))
        assert r.returncode == 0, r.stderr
        printed = {e["seq"]: e for e in map(json.loads, r.stdout.splitlines())}
        for e, _ in events:
            assert printed[e["seq"]] == e
    finally:
        central.close()


def test_spec2_status_carries_session_last_seq_and_epoch_and_the_will_the_session(tmp_path, procs, broker):
    watcher = Peer(broker.port, ["acs/test/gate-1/status", "acs/test/gate-1/events/#"])
    g = start_gate(tmp_path, procs, broker)
    try:
        first = _online(watcher)
        assert isinstance(first["session"], int) and first["session"] >= 1
        assert isinstance(first["last_seq"], int) and first["last_seq"] <= g.journal.last_seq()
        epoch = watcher.wait(lambda m: central_epoch(watcher), what="an event's epoch")
        assert first["epoch"] == epoch
        g.daemon.stop()
        g.start_daemon()
        again = _online(watcher, first["session"])  # a new connection, a higher session, across a restart
        g.daemon.kill()  # no goodbye: the broker speaks the will, naming the session it belongs to
        def last_status(m):
            bodies = [json.loads(p) for t, p, _ in m if t.endswith("/status") and p]
            return bodies[-1] if bodies and bodies[-1]["state"] == "offline" else None
        will = watcher.wait(last_status, what="the last will")
        assert will == {"state": "offline", "session": again["session"]}
    finally:
        watcher.close()


def central_epoch(peer: Peer) -> str | None:
    events = peer.events()
    return events[0]["epoch"] if events else None


def test_spec2_the_muster_says_whether_people_are_mustering(tmp_path, procs, broker):
    g = start_gate(tmp_path, procs, broker)
    watcher = Peer(broker.port, ["acs/test/gate-1/muster", "acs/test/gate-1/status"])
    try:
        _online(watcher)
        g.scan("main-in", STAFF)
        watcher.publish("acs/test/mode", site_mode("lockdown", 1))
        g.journal.next("mode.changed", mode="lockdown")

        def muster(m):
            bodies = [json.loads(p) for t, p, _ in m if t.endswith("/muster") and p]
            return bodies[-1] if bodies else None
        watcher.publish("acs/test/gate-1/muster/request", {})
        body = watcher.wait(muster, what="the muster list")
        assert body["mode"] == "normal"  # a lockdown is no muster (SPEC §2: fire, drill or normal)
        assert [p["holder"] for p in body["people"]] == ["h-1"]
        g.door_io.send("input 100 on")  # the fire panel: fire mode, and the muster at once
        watcher.wait(lambda m: (b := muster(m)) and b["mode"] == "fire", what="the fire muster")
    finally:
        watcher.close()


@pytest.mark.parametrize("topic", ["acs/test/mode", "acs/test/gate-9/key"])
def test_spec2_retained_topics_are_read_again_only_on_a_new_subscription(tmp_path, procs, broker, topic):
    """MQTT 5 retain handling 1: a gate that comes back to its kept session is not sent the retained `mode`
    and `key` messages again (it read them when it subscribed); what was published meanwhile still comes."""
    central = Peer(broker.port, "acs/test/gate-1/status")
    g = start_gate(tmp_path, procs, broker)
    try:
        session = _online(central)["session"]
        central.publish(topic, b"retained garbage", retain=True)
        _, _, first = g.journal.next("alarm.raised", alarm="bad_message", topic=topic)
        assert first["error"].startswith("not JSON")
        g.daemon.stop()
        g.start_daemon()
        assert _online(central, session)  # subscribed again (the status follows the subscriptions)
        central.publish(topic, {"x": 1})  # a new message: out of schema, so it is alarmed too
        _, _, second = g.journal.next("alarm.raised", alarm="bad_message", topic=topic)
        # had the retained message come again, its alarm would be this one (the new one's counted in it)
        assert "Field required" in second["error"], second
    finally:
        central.publish(topic, b"", retain=True)
        central.close()


def _old_session(port: int) -> None:
    """The session an earlier release of the gate left at the broker: subscribed to every peer event."""
    old = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="gatekeeper-test-gate-1", protocol=mqtt.MQTTv5)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    done = threading.Event()
    old.on_subscribe = lambda *a: done.set()
    old.on_connect = lambda c, *a: c.subscribe("acs/test/+/events/#", 1)
    old.connect("127.0.0.1", port, clean_start=False, properties=props)
    old.loop_start()
    try:
        assert done.wait(WAIT_S), "no SUBACK for the old session's subscription"
    finally:
        old.disconnect()
        old.loop_stop()


@pytest.mark.parametrize("kept_session", [False, True])
def test_spec2_a_gate_reads_only_the_peer_event_types_that_carry_site_state(tmp_path, procs, broker, kept_session):
    """Subscriptions per type, not `events/#`: a peer's other events never reach the gate (here, a malformed
    one of each type: only those the gate reads are alarmed as bad messages), also when the broker kept the
    session of an earlier release that subscribed to them all."""
    if kept_session:
        _old_session(broker.port)
    central = Peer(broker.port, "acs/test/gate-1/status")
    g = start_gate(tmp_path, procs, broker)
    try:
        _online(central)
        for etype in NOT_READ + PEER_TYPES:  # the unread ones first: had they come, they came before the rest
            central.publish(f"acs/test/gate-2/events/{etype}", b"garbage")
        alarmed = set()
        wait_until(lambda: alarmed.update(
            d["topic"] for _, t, d in g.journal.rows() if t == "alarm.raised" and d.get("alarm") == "bad_message")
            or alarmed >= {f"acs/test/gate-2/events/{t}" for t in PEER_TYPES}, what="the peer types' alarms")
        assert alarmed == {f"acs/test/gate-2/events/{t}" for t in PEER_TYPES}
    finally:
        central.close()
