"""The central simulator against a real mosquitto: batches, chunked snapshots, event counters, lost batches."""
from __future__ import annotations

import json
import threading
import time
import uuid

import paho.mqtt.client as mqtt

from sitekit import WAIT_S

MIB = 1024 * 1024


class Sub:
    """A paho client standing in for a gate: collects what arrives on its topics, publishes with PUBACK."""

    def __init__(self, port: int, *topics: str):
        self.messages: list[tuple[str, bytes]] = []
        self.cond = threading.Condition()
        self.subscribed = threading.Event()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex[:8]}")
        self.c.on_connect = lambda c, u, f, rc, p: c.subscribe([(t, 1) for t in topics]) if topics else \
            self.subscribed.set()
        self.c.on_subscribe = lambda *a: self.subscribed.set()
        self.c.on_message = self._on_message
        self.c.connect("127.0.0.1", port, keepalive=10)
        self.c.loop_start()
        assert self.subscribed.wait(WAIT_S), "no SUBACK"

    def _on_message(self, client, userdata, msg):
        with self.cond:
            self.messages.append((msg.topic, msg.payload))
            self.cond.notify_all()

    def wait(self, pred, timeout: float = WAIT_S):
        with self.cond:
            assert self.cond.wait_for(lambda: pred(self.messages), timeout), \
                f"not seen in {timeout} s; have {[t for t, _ in self.messages]}"

    def publish(self, topic: str, payload) -> None:
        body = payload if isinstance(payload, (str, bytes)) else json.dumps(payload)
        self.c.publish(topic, body, qos=1).wait_for_publish(WAIT_S)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def start_central(procs, broker, *extra: str):
    p = procs.start("central", "-m", "simulators.central", "--broker", broker.url, "--site", "s1",
                    "--client-id", f"central-{uuid.uuid4().hex[:6]}", "--heartbeat", "0", *extra, stdin=True)
    p.wait_for("central ready")
    return p


def record(cred: str, holder: str) -> dict:
    return {"credential": cred, "holder": holder, "category": "staff", "tier": None, "roles": [],
            "areas": ["site"], "valid_from": None, "valid_until": None, "schedule": None, "party": 1,
            "host": None, "escort": False, "id_hash": None}


def test_upsert_publishes_a_change_batch(procs, broker):
    sub = Sub(broker.port, "acs/s1/allowlist/changes")
    try:
        central = start_central(procs, broker, "--version", "5")
        rec = record("badge:04A1B2C3", "h-1")
        central.send("upsert " + json.dumps(rec))
        central.wait_for("central batch 5->6")
        sub.wait(lambda m: len(m) >= 1)
        b = json.loads(sub.messages[0][1])
        assert b == {"from_version": 5, "to_version": 6, "upserts": [rec], "deletes": [], "revoke": [],
                     "blocklist_add": [], "blocklist_remove": [], "keys_add": [], "keys_remove": []}
        central.send("upsert not json")
        central.wait_for("central error:")
        central.send("report")
        assert json.loads(central.wait_for("central report ").split(" ", 2)[2])["version"] == 6
    finally:
        sub.close()


def test_resync_gets_every_chunk_of_a_large_snapshot(procs, broker):
    sub = Sub(broker.port, "acs/s1/g1/allowlist/snapshot")
    try:
        central = start_central(procs, broker, "--generate", "20000")
        sub.publish("acs/s1/g1/allowlist/resync", {"have_version": 0})
        line = central.wait_for("central snapshot g1 version 1 chunks ")
        k = int(line.rsplit(" ", 1)[1])
        assert k > 1  # 20,000 records do not fit one 900 kB chunk: the split is exercised
        sub.wait(lambda m: len(m) >= k)
        chunks = [json.loads(p) for _, p in sub.messages]
        assert all(len(p) <= MIB for _, p in sub.messages)
        assert sorted(c["chunk"] for c in chunks) == list(range(k))
        assert {c["chunks"] for c in chunks} == {k} and {c["version"] for c in chunks} == {1}
        assert all({"upserts", "revoke", "blocklist", "keys"} <= c.keys() for c in chunks)
        creds = [r["credential"] for c in chunks for r in c["upserts"]]
        assert len(creds) == len(set(creds)) == 20000
        assert chunks[0]["upserts"][0].keys() == record("x", "y").keys()
    finally:
        sub.close()


def test_event_counters(procs, broker, tmp_path):
    out = tmp_path / "events.jsonl"
    central = start_central(procs, broker, "--events-out", str(out))
    gate = Sub(broker.port)
    try:
        def ev(seq: int, eid: str) -> dict:
            return {"specversion": "1.0", "id": eid, "source": "acs/s1/g1", "type": "door.opened",
                    "time": "2026-11-01T00:00:00Z", "datacontenttype": "application/json", "epoch": "e1",
                    "seq": seq, "data": {"door": "main"}}
        for seq, eid in [(1, "a"), (2, "b"), (2, "b"), (4, "d")]:
            gate.publish("acs/s1/g1/events/door.opened", ev(seq, eid))
        central.send("wait-events g1 4")
        central.wait_for("central events g1 4")
        central.send("report")
        rep = json.loads(central.wait_for("central report ").split(" ", 2)[2])
        g1 = rep["gates"]["g1"]
        assert (g1["received"], g1["duplicates"], g1["gaps"], g1["max_seq"]) == (4, 1, 1, 4)
        assert (g1["conflicts"], g1["out_of_order"], g1["malformed"], g1["epoch"]) == (0, 0, 0, "e1")
        # a reused seq with another id, garbage, and a late seq 3: counted, never fatal
        gate.publish("acs/s1/g1/events/door.opened", ev(4, "other"))
        gate.publish("acs/s1/g1/events/door.opened", b"\xff not json")
        gate.publish("acs/s1/g1/events/door.opened", ev(3, "c"))
        central.send("wait-events g1 7")
        central.wait_for("central events g1 7")
        central.send("report")
        g1 = json.loads(central.wait_for("central report ").split(" ", 2)[2])["gates"]["g1"]
        assert (g1["conflicts"], g1["malformed"], g1["out_of_order"], g1["gaps"]) == (1, 1, 1, 0)
        assert [json.loads(l)["seq"] for l in out.read_text().splitlines()] == [1, 2, 2, 4, 4, 3]
    finally:
        gate.close()


def test_spec2_the_central_counts_what_breaks_the_contract(procs, broker):
    """Everything the central receives is checked against docs/asyncapi.yaml: a conforming status and event
    count as checked, an extra status field and an unknown reason code as violations, named in `report`."""
    central = start_central(procs, broker)
    gate = Sub(broker.port)
    try:
        status = {"state": "online", "mode": "normal", "allowlist_version": 0, "devices": {}, "session": 1,
                  "last_seq": 0, "epoch": "e1", "time": "2026-11-01T00:00:00.000Z"}
        gate.publish("acs/s1/g1/status", status)
        gate.publish("acs/s1/g1/status", {**status, "uptime": 5})
        ev = {"specversion": "1.0", "id": "a", "source": "acs/s1/g1", "type": "door.opened",
              "time": "2026-11-01T00:00:00Z", "datacontenttype": "application/json", "epoch": "e1", "seq": 1,
              "data": {"door": "main"}}
        gate.publish("acs/s1/g1/events/door.opened", ev)
        gate.publish("acs/s1/g1/events/door.closed", {**ev, "id": "b", "seq": 2, "type": "door.closed"})
        central.send("wait-events g1 2")
        central.wait_for("central events g1 2")
        central.send("report")
        rep = json.loads(central.wait_for("central report ").split(" ", 2)[2])["contract"]
        assert (rep["checked"], rep["violations"]) == (4, 2), rep
        assert rep["by_topic"] == {"acs/s1/g1/status": 1, "acs/s1/g1/events/door.closed": 1}
        assert any("'uptime' was unexpected" in line for line in rep["last"])
        assert any("open_s" in line for line in rep["last"])  # door.closed says how long it was open
        assert "error" not in rep
    finally:
        gate.close()


def test_drop_next_loses_one_batch(procs, broker):
    sub = Sub(broker.port, "acs/s1/allowlist/changes")
    try:
        central = start_central(procs, broker, "--version", "1")
        central.send("drop-next")
        central.wait_for("central will drop the next batch")
        central.send("upsert " + json.dumps(record("badge:00000001", "h-1")))
        central.wait_for("central dropped batch 1->2")
        central.send("upsert " + json.dumps(record("badge:00000002", "h-2")))
        central.wait_for("central batch 2->3")
        central.send("wait-published")
        central.wait_for("central published")
        sub.wait(lambda m: len(m) >= 1)
        # the broker acknowledged the publish; one more round trip through it proves nothing else follows
        central.send("raw acs/s1/allowlist/changes end")
        central.wait_for("central raw acs/s1/allowlist/changes 3 bytes")
        sub.wait(lambda m: m[-1][1] == b"end")
        batches = [json.loads(p) for _, p in sub.messages[:-1]]
        assert [(b["from_version"], b["to_version"]) for b in batches] == [(2, 3)]
        assert batches[0]["upserts"][0]["credential"] == "badge:00000002"
    finally:
        sub.close()


def test_sigterm_and_stdin_eof(procs, broker):
    central = start_central(procs, broker)
    central.p.stdin.close()  # tests may close stdin: the central keeps serving
    gate = Sub(broker.port, "acs/s1/g2/allowlist/snapshot")
    try:
        gate.publish("acs/s1/g2/allowlist/resync", {"have_version": 3})
        central.wait_for("central snapshot g2 version 0 chunks 1")
        gate.wait(lambda m: len(m) == 1)
        assert json.loads(gate.messages[0][1]) == {"version": 0, "chunk": 0, "chunks": 1, "upserts": [],
                                                   "revoke": [], "blocklist": [], "keys": []}
    finally:
        gate.close()
    assert central.stop() == 0
    central.wait_for("central stopped")


def test_a_resync_storm_is_answered_whole_with_a_cap_on_snapshots_in_flight(procs, broker):
    """Twelve gates ask at once (one of them twice): every gate gets its whole snapshot, yet the central
    never has more than `--max-snapshots` of them in flight; the rest wait their turn."""
    gates = [f"g{i}" for i in range(12)]
    sub = Sub(broker.port, "acs/s1/+/allowlist/snapshot")
    asker = Sub(broker.port)
    try:
        central = start_central(procs, broker, "--generate", "20000", "--max-snapshots", "2")
        central.send("disconnect")  # the resyncs pile up in the central's session, and arrive as one burst
        central.wait_for("central disconnected")
        for g in [*gates, "g0"]:
            asker.publish(f"acs/s1/{g}/allowlist/resync", {"have_version": 0})
        central.send("connect")
        k = int(central.wait_for("central snapshot g0 version 1 chunks ").rsplit(" ", 1)[1])
        assert k > 1

        def whole(messages) -> bool:
            got: dict[str, set[int]] = {}
            for topic, payload in messages:
                got.setdefault(topic.split("/")[2], set()).add(json.loads(payload)["chunk"])
            return all(got.get(g) == set(range(k)) for g in gates)
        sub.wait(whole)
        deadline = time.monotonic() + WAIT_S
        while True:  # until the line is empty and the last snapshot acknowledged
            central.send("report")
            snaps = json.loads(central.wait_for("central report ").split(" ", 2)[2])["snapshots"]
            if snaps["queued"] == snaps["in_flight"] == 0 or time.monotonic() > deadline:
                break
        assert snaps["max_in_flight"] == 2 and 1 <= snaps["in_flight_peak"] <= 2, snaps
        # g0 asked twice: answered a second time, or its second ask joined the one waiting in line
        assert snaps["sent"] + snaps["asked_again"] == len(gates) + 1, snaps
    finally:
        sub.close()
        asker.close()
