"""The central link against a real mosquitto: nothing lost, sync rules, site-wide rules, no stale unlocks."""
from __future__ import annotations

import json
import sqlite3
import time

import pytest

from mqttkit import Peer, batch, record, rfc3339_now, site_mode
from sitekit import WAIT_S, JournalWatch, make_site, wait_until
from test_e2e_gate import STAFF, Gate

pytestmark = pytest.mark.e2e

DECISIONS = ("access.granted", "access.denied", "exit.held")
OTHER = "0A0B0C0D"


def start_gate(tmp_path, procs, broker, name="gate-1", private_key=None, items=None, daemon=True, **site_kw) -> Gate:
    site = make_site(tmp_path / name, broker_port=broker.port, gate=name, private_key=private_key, **site_kw)
    items = items if items is not None else [
        {"credential": f"badge:{STAFF}", "holder": "h-1", "category": "staff", "areas": ["site"]}]
    if items:
        r = site.import_lines(items)
        assert r.returncode == 0, r.stderr
    g = Gate(site, procs)
    g.start_hardware()
    if daemon:
        g.start_daemon()
    return g


def local_version(g: Gate) -> int:
    conn = sqlite3.connect(f"file:{g.site.db}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT value FROM meta WHERE key='allowlist_version'").fetchone()
        return int(row[0]) if row else 0
    finally:
        conn.close()


def central_has_everything(central: Peer, g: Gate) -> None:
    """Wait until the central peer holds every journaled event of the gate, then check how they came."""
    last = JournalWatch(g.site.db).rows()[-1][0]
    central.wait(lambda m: {e["seq"] for e in central.events()} >= set(range(1, last + 1)), what=f"events 1..{last}")
    assert_complete_in_order(central.events(), last)


def assert_complete_in_order(events: list[dict], last_seq: int) -> None:
    """Every seq 1..last arrived; duplicates carry the same id; first arrivals are in seq order."""
    ids: dict[int, str] = {}
    order = []
    for e in events:
        if e["seq"] in ids:
            assert ids[e["seq"]] == e["id"], f"seq {e['seq']} arrived twice with different ids"
            continue
        ids[e["seq"]] = e["id"]
        order.append(e["seq"])
    top = max(ids)  # the gate may have journaled more (a device event) since last_seq was read
    assert top >= last_seq and sorted(ids) == list(range(1, top + 1)), f"missing: {set(range(1, top + 1)) - set(ids)}"
    assert order == sorted(order), "events arrived out of seq order"


def test_p19_broker_gone_while_scans_go_on_every_event_arrives_in_order(tmp_path, procs, broker):
    central = Peer(broker.port, "acs/test/+/events/#", client_id="central-1", persistent=True)
    g = start_gate(tmp_path, procs, broker)
    try:
        g.scan("main-in", STAFF)
        central.wait(lambda m: any(e["type"] == "access.granted" for e in central.events()))
        broker.stop()
        for i in range(25):
            g.scan("main-in", f"{i:08X}")  # decisions go on and are journaled with the broker gone
        broker.start()
        central_has_everything(central, g)
    finally:
        central.close()


def test_p19_kill_9_mid_burst_then_restart_leaves_no_gap(tmp_path, procs, broker):
    central = Peer(broker.port, "acs/test/+/events/#", client_id="central-2", persistent=True)
    g = start_gate(tmp_path, procs, broker)
    try:
        for i in range(300):
            g.readers["main-in"].send(f"{i:08X}")
        wait_until(lambda: len(JournalWatch(g.site.db).rows()) >= 60, what="a burst under way")
        g.daemon.kill()
        g.start_daemon()
        g.scan("main-in", STAFF, holder="h-1")
        central_has_everything(central, g)
    finally:
        central.close()


def test_status_is_retained_and_the_last_will_says_offline(tmp_path, procs, broker):
    g = start_gate(tmp_path, procs, broker)
    watcher = Peer(broker.port, "acs/test/gate-1/status")
    try:
        watcher.wait(lambda m: any(json.loads(p).get("state") == "online" for _, p, _ in m), what="online")
        g.daemon.kill()  # no goodbye: the broker speaks the will
        watcher.wait(lambda m: json.loads(m[-1][1]).get("state") == "offline", what="the last will")
    finally:
        watcher.close()
    late = Peer(broker.port, "acs/test/gate-1/status")  # a newcomer sees the retained truth
    try:
        late.wait(lambda m: m and m[-1][2] and json.loads(m[-1][1])["state"] == "offline")
    finally:
        late.close()


def test_sync_three_batches_second_lost_resync_makes_the_gate_equal_to_central(tmp_path, procs, broker):
    g = start_gate(tmp_path, procs, broker, items=[])
    central = Peer(broker.port, "acs/test/gate-1/allowlist/resync")
    try:
        a, b, c = record(f"badge:{STAFF}", "h-1"), record(f"badge:{OTHER}", "h-2"), record("badge:01020304", "h-3")
        central.publish("acs/test/allowlist/changes", batch(0, 1, upserts=[a]))
        wait_until(lambda: local_version(g) == 1, what="batch 0->1 applied")
        # batch 1->2 (b) is lost on the way; 2->3 (c) arrives
        central.publish("acs/test/allowlist/changes", batch(2, 3, upserts=[c], revoke=[{"pass": "00" * 10}]))
        req = central.wait(lambda m: [json.loads(p) for t, p, _ in m if t.endswith("/resync")], what="a resync")
        assert req[0] == {"have_version": 1}
        assert local_version(g) == 1  # the gap was not papered over
        upserts = [a, b, c]
        for i, part in enumerate((upserts[:2], upserts[2:])):
            central.publish("acs/test/gate-1/allowlist/snapshot", {
                "version": 3, "chunk": i, "chunks": 2, "upserts": part,
                "revoke": [{"pass": "00" * 10}] if i == 0 else [], "blocklist": [], "keys": []})
        wait_until(lambda: local_version(g) == 3, what="the snapshot swapped in")
        conn = sqlite3.connect(f"file:{g.site.db}?mode=ro", uri=True)
        have = {r[0] for r in conn.execute("SELECT credential FROM credentials")}
        revoked = {r[0] for r in conn.execute("SELECT ref FROM revocations")}
        conn.close()
        assert have == {a["credential"], b["credential"], c["credential"]}
        assert revoked == {"pass:" + "00" * 10}
        _, etype, data = g.scan("main-in", OTHER)  # known only through the snapshot
        assert (etype, data["holder"]) == ("access.granted", "h-2")
    finally:
        central.close()


@pytest.mark.parametrize("topic", ["acs/test/allowlist/changes", "acs/test/gate-1/allowlist/snapshot"])
def test_garbage_oversized_and_out_of_schema_sync_messages_change_nothing(tmp_path, procs, broker, topic):
    g = start_gate(tmp_path, procs, broker)
    central = Peer(broker.port, "acs/none")
    watch = JournalWatch(g.site.db)
    try:
        bad = [b"\x00\xffnot json", b"x" * (10 * 1024 * 1024), json.dumps({"from_version": "zero"}).encode(),
               json.dumps(batch(0, 1, upserts=[{"credential": "badge:XYZ", "holder": "h"}])).encode(),
               json.dumps({"version": 1, "chunk": 3, "chunks": 2}).encode()]
        for payload in bad:
            central.publish(topic, payload)
        # one alarm a minute per topic (the rest are counted in the next one), naming the topic
        _, _, alarm = watch.next("alarm.raised")
        assert alarm["alarm"] == "bad_message" and topic.endswith(alarm["topic"]) and alarm["error"]
        central.publish("acs/test/allowlist/changes", batch(0, 1, upserts=[record(f"badge:{OTHER}", "h-2")]))
        wait_until(lambda: local_version(g) == 1, what="a good batch after the bad ones")
        _, etype, _ = g.scan("main-in", STAFF)  # still deciding, old entries intact
        assert etype == "access.granted"
    finally:
        central.close()


def test_no_retained_or_replayed_message_ever_unlocks_a_door(tmp_path, procs, broker):
    g = start_gate(tmp_path, procs, broker, daemon=False)
    central = Peer(broker.port, "acs/none")
    try:
        for topic, body in [
            ("acs/test/allowlist/changes", batch(0, 1, upserts=[record(f"badge:{OTHER}", "h-2")])),
            ("acs/test/gate-1/allowlist/snapshot", {"version": 5, "chunk": 0, "chunks": 1, "upserts": [],
                                                    "revoke": [], "blocklist": [], "keys": []}),
            ("acs/test/visits/signoff", {"visit": "v-1", "host": "h-1", "time": rfc3339_now()}),
            ("acs/test/mode", site_mode("lockdown", 1, reason="drill")),
            ("acs/test/central/heartbeat", {"time": rfc3339_now()}),
            ("acs/test/gate-1/muster/request", {}),
            ("acs/test/gate-9/events/access.granted", {
                "specversion": "1.0", "id": "x", "source": "acs/test/gate-9", "type": "access.granted",
                "time": rfc3339_now(), "epoch": "e", "seq": 1, "datacontenttype": "application/json",
                "data": {"door": "main", "direction": "in", "credential_ref": f"badge:{STAFF}", "to_area": "site/lobby",
                         "holder": "h-1", "category": "staff", "party": 1}}),
            ("acs/test/gate-1/events/access.granted", {"seq": 1}),
        ]:
            central.publish(topic, body, retain=True)
        before = (g.unlocks(0), g.unlocks(1))
        g.start_daemon()
        watch = JournalWatch(g.site.db)
        _, _, mode = watch.next("mode.changed")  # the retained lockdown was read...
        assert mode["mode"] == "lockdown"
        wait_until(lambda: local_version(g) == 5, what="the retained snapshot applied")
        time_limit = time.monotonic() + 1.0  # ...and nothing moved: read the module for a second
        while time.monotonic() < time_limit:
            assert (g.unlocks(0), g.unlocks(1)) == before
            assert g.locked(0) and g.locked(1)
    finally:
        for topic in ("acs/test/allowlist/changes", "acs/test/gate-1/allowlist/snapshot", "acs/test/visits/signoff",
                      "acs/test/mode", "acs/test/central/heartbeat", "acs/test/gate-1/muster/request",
                      "acs/test/gate-9/events/access.granted", "acs/test/gate-1/events/access.granted"):
            central.publish(topic, b"", retain=True)
        central.close()


def test_p9_signoff_from_central_lets_the_next_exit_through_and_opens_nothing(tmp_path, procs, broker):
    g = start_gate(tmp_path, procs, broker)
    central = Peer(broker.port, "acs/none")
    try:
        text = g.site.visitor_pass("h-9", visit="v-77")
        g.scan("main-in", text)
        _, etype, _ = g.scan("main-out", text)
        assert etype == "exit.held"
        g.settle()
        before = g.unlocks(0)
        central.publish("acs/test/visits/signoff", {"visit": "v-77", "host": "h-1", "time": rfc3339_now()})
        g.journal.next("visit.signed_off", visit="v-77")
        assert g.unlocks(0) == before and g.locked(0)  # the sign-off itself opens nothing
        _, etype, data = g.scan("main-out", text)
        assert (etype, data["reason"]) == ("access.granted", "ok")
        g.journal.next("visit.checked_out", visit="v-77")
    finally:
        central.close()


def test_p7_p8_presence_and_consumption_hold_across_the_gates_of_a_site(tmp_path, procs, broker):
    g1 = start_gate(tmp_path, procs, broker, "gate-1")
    g2 = start_gate(tmp_path, procs, broker, "gate-2", private_key=g1.site.private_key)
    central = Peer(broker.port, "acs/none")
    try:
        text = g1.site.visitor_pass("h-9", visit="v-88")
        _, etype, _ = g1.scan("main-in", text)
        assert etype == "access.granted"
        wait_until(lambda: _presence(g2, "h-9") == "site/lobby", what="gate-2 hearing of the entry at gate-1")
        _, etype, data = g2.scan("main-in", text)
        assert (etype, data["reason"]) == ("access.denied", "antipassback")  # global anti-passback
        g2.daemon.stop()  # gate-2 is away while the visit ends at gate-1...
        central.publish("acs/test/visits/signoff", {"visit": "v-88", "host": "h-1", "time": rfc3339_now()})
        g1.journal.next("visit.signed_off")
        _, etype, _ = g1.scan("main-out", text)
        assert etype == "access.granted"
        g2.start_daemon()  # ...and catches up from its persistent session when it is back
        wait_until(lambda: _consumed(g2, "v-88"), what="gate-2 hearing the pass was consumed")
        _, etype, data = g2.scan("main-in", text)
        assert (etype, data["reason"]) == ("access.denied", "pass_consumed")
    finally:
        central.close()


def _presence(g: Gate, holder: str):
    row = g.site.query("SELECT area FROM presence WHERE holder=?", holder)
    return row[0] if row else None


def _consumed(g: Gate, visit: str) -> bool:
    return g.site.query("SELECT 1 FROM consumed WHERE visit=?", visit) is not None


def test_p16_muster_is_published_on_request_and_retained(tmp_path, procs, broker):
    g = start_gate(tmp_path, procs, broker)
    watcher = Peer(broker.port, "acs/test/gate-1/muster")
    try:
        g.scan("main-in", STAFF)
        watcher.publish("acs/test/gate-1/muster/request", {})
        body = watcher.wait(lambda m: [json.loads(p) for _, p, _ in m if p], what="the muster list")[-1]
        assert [(p["holder"], p["area"]) for p in body["people"]] == [("h-1", "site/lobby")]
    finally:
        watcher.close()


def test_mqtt_3_1_1_works_too(tmp_path, procs, broker):
    site = make_site(tmp_path / "site", broker_port=broker.port, mqtt_extra='protocol = "3.1.1"')
    assert site.import_lines([{"credential": f"badge:{STAFF}", "holder": "h-1", "category": "staff",
                               "areas": ["site"]}]).returncode == 0
    central = Peer(broker.port, "acs/test/+/events/#")  # listening before the gate publishes anything
    g = Gate(site, procs)
    g.start_hardware()
    g.start_daemon()
    try:
        central.publish("acs/test/allowlist/changes", batch(0, 1, upserts=[record(f"badge:{OTHER}", "h-2")]))
        wait_until(lambda: local_version(g) == 1, what="the batch applied over 3.1.1")
        _, etype, _ = g.scan("main-in", OTHER)
        assert etype == "access.granted"
        central_has_everything(central, g)
    finally:
        central.close()


# -- against the central simulator, an independent implementation of the central side of SPEC §2 ------
def start_central(procs, broker, *args: str):
    c = procs.start("central", "-m", "simulators.central", "--broker", broker.url, "--site", "test",
                    "--client-id", f"central-{broker.port}", "--heartbeat", "0", *args, stdin=True)
    c.wait_for("central ready")
    return c


def test_sync_with_the_central_simulator_a_lost_batch_ends_in_an_equal_allowlist(tmp_path, procs, broker):
    data = tmp_path / "central.jsonl"
    data.write_text(json.dumps(record(f"badge:{STAFF}", "h-1")) + "\n")
    central = start_central(procs, broker, "--data", str(data), "--version", "1")
    g = start_gate(tmp_path, procs, broker, items=[])
    central.send("snapshot gate-1")  # a new gate starts from the central's state
    wait_until(lambda: local_version(g) == 1, what="the first snapshot")
    central.send("upsert " + json.dumps(record(f"badge:{OTHER}", "h-2")))  # 1 -> 2 arrives
    central.wait_for("central batch 1->2")
    central.send("drop-next")
    central.send("upsert " + json.dumps(record("badge:01020304", "h-3")))  # 2 -> 3 is lost
    central.wait_for("central dropped batch 2->3")
    central.send("revoke " + json.dumps({"credential": f"badge:{STAFF}"}))  # 3 -> 4 arrives: a gap
    central.wait_for("central batch 3->4")
    central.wait_for("central resync gate-1 have_version 2")
    wait_until(lambda: local_version(g) == 4, what="the snapshot answering the resync")
    conn = sqlite3.connect(f"file:{g.site.db}?mode=ro", uri=True)
    have = {r[0] for r in conn.execute("SELECT credential FROM credentials")}
    revoked = {r[0] for r in conn.execute("SELECT ref FROM revocations")}
    conn.close()
    assert have == {f"badge:{STAFF}", f"badge:{OTHER}", "badge:01020304"} and revoked == {f"badge:{STAFF}"}
    _, etype, data = g.scan("main-in", "01020304")  # known only from the lost batch, via the snapshot
    assert (etype, data["holder"]) == ("access.granted", "h-3")
    _, etype, data = g.scan("main-in", STAFF)
    assert (etype, data["reason"]) == ("access.denied", "revoked")


def test_p9_signoff_from_the_central_simulator_releases_the_next_exit(tmp_path, procs, broker):
    central = start_central(procs, broker)
    g = start_gate(tmp_path, procs, broker)
    text = g.site.visitor_pass("h-9", visit="v-99")
    g.scan("main-in", text)
    _, etype, _ = g.scan("main-out", text)
    assert etype == "exit.held"
    central.send("signoff v-99 h-1")
    central.wait_for("central signoff v-99")
    g.journal.next("visit.signed_off", visit="v-99")
    _, etype, data = g.scan("main-out", text)
    assert (etype, data["reason"]) == ("access.granted", "ok")
    last = JournalWatch(g.site.db).rows()[-1][0]
    central.send(f"wait-events gate-1 {last}")
    central.wait_for("central events gate-1")
    central.send("report")
    full = json.loads(central.wait_for("central report").split(" ", 2)[2])
    report = full["gates"]["gate-1"]
    assert (report["gaps"], report["conflicts"], report["out_of_order"]) == (0, 0, 0)
    # SPEC §2: the central checks all it received against docs/asyncapi.yaml (every event, the statuses)
    assert "error" not in full["contract"] and full["contract"]["checked"] > last, full["contract"]


def test_spec2_the_central_simulator_finds_a_gates_traffic_in_contract(tmp_path, procs, broker):
    """Through the whole chain: a gate's events, statuses and resync, as the central receives them, break
    nothing of docs/asyncapi.yaml."""
    central = start_central(procs, broker)
    g = start_gate(tmp_path, procs, broker)
    text = g.site.visitor_pass("h-9", visit="v-98")
    g.scan("main-in", text)
    g.scan("main-in", "DEADBEEF")
    g.scan("main-out", text)
    central.send("signoff v-98 h-1")
    central.wait_for("central signoff v-98")
    g.journal.next("visit.signed_off", visit="v-98")
    g.scan("main-out", text)
    last = JournalWatch(g.site.db).rows()[-1][0]
    central.send(f"wait-events gate-1 {last}")
    central.wait_for("central events gate-1")
    central.send("report")
    contract = json.loads(central.wait_for("central report").split(" ", 2)[2])["contract"]
    assert contract["checked"] > last and "error" not in contract, contract
    assert contract["violations"] == 0, "\n".join(contract["last"])


def test_p13_p4_p14_a_walkin_from_one_gate_works_at_another_and_the_gates_records_outlive_a_snapshot(
        tmp_path, procs, broker):
    import httpx
    g1 = start_gate(tmp_path, procs, broker, "gate-1", api=True, walkin=True)
    g2 = start_gate(tmp_path, procs, broker, "gate-2", private_key=g1.site.private_key)
    central = Peer(broker.port, "acs/test/+/key")
    guard, sup = g1.site.token("guard"), g1.site.token("supervisor")
    api = httpx.Client(base_url=g1.site.api_url, timeout=WAIT_S)
    try:
        central.wait(lambda m: [t for t, _, _ in m if t == "acs/test/gate-1/key"], what="gate-1's walk-in key")
        late = Peer(broker.port, "acs/test/gate-1/key")  # a gate that joins later still gets it: retained
        key = late.wait(lambda m: [json.loads(p) for _, p, r in m if r], what="the retained key")[0]
        late.close()
        assert key["kid"] == "gate-1-w" and key["scope"] == ["visitor"]
        wait_until(lambda: _gate_key(g2, "gate-1-w"), what="gate-2 trusting gate-1's key")
        body = {"visitor": {"name": "Li Lei", "company": "Acme", "id_number": "E12345678"}, "purpose": "audit",
                "host": "h-1", "host_confirmation": "in_person", "areas": ["site/lobby"]}
        v = api.post("/visits", json=body, headers={"Authorization": f"Bearer {guard}"}).json()
        _, etype, _ = g2.scan("main-in", v["pass"])  # signed at gate-1, admitted at gate-2
        assert etype == "access.granted"
        r = api.post(f"/visits/{v['visit']}/areas", json={"areas": ["site"], "reason": "site tour"},
                     headers={"Authorization": f"Bearer {sup}"})
        assert r.status_code == 200
        wait_until(lambda: _revoked(g2, v["credential_ref"]), what="gate-2 hearing of the replaced pass")
        _, etype, data = g2.scan("office-in", v["pass"])
        assert (etype, data["reason"]) == ("access.denied", "revoked")
        permit = {"credential": "badge:0C0C0C0C", "holder": "c-1", "name": "Wang Wu", "company": "Build Co",
                  "areas": ["site/office"], "valid_until": "2099-01-01T00:00:00Z"}
        assert api.post("/permits", json=permit, headers={"Authorization": f"Bearer {sup}"}).status_code == 201
        # the central system's snapshot knows neither the permit nor the amendment: both stay
        central.publish("acs/test/gate-1/allowlist/snapshot", {
            "version": 7, "chunk": 0, "chunks": 1, "upserts": [record(f"badge:{STAFF}", "h-1")], "revoke": [],
            "blocklist": [], "keys": []})
        wait_until(lambda: local_version(g1) == 7, what="the snapshot swapped in at gate-1")
        _, etype, data = g1.scan("office-in", "0C0C0C0C")
        assert (etype, data["category"]) == ("access.granted", "contractor")
        _, etype, data = g1.scan("office-in", v["pass"])
        assert (etype, data["reason"]) == ("access.denied", "revoked")
        r = api.post("/visits", json={**body, "host": "h-1", "repeat": True},
                     headers={"Authorization": f"Bearer {guard}"})
        assert r.status_code == 201  # the host is found in the swapped-in table (its holder index came along)
    finally:
        api.close()
        central.close()


def _gate_key(g: Gate, kid: str) -> bool:
    return g.site.query("SELECT 1 FROM gate_keys WHERE kid=?", kid) is not None


def _revoked(g: Gate, ref: str) -> bool:
    return g.site.query("SELECT 1 FROM local_revocations WHERE ref=?", ref) is not None


def test_p14_a_permit_made_at_one_gate_reaches_every_gate_through_the_central_system(tmp_path, procs, broker):
    import httpx
    central = start_central(procs, broker)
    g1 = start_gate(tmp_path, procs, broker, "gate-1", api=True)
    g2 = start_gate(tmp_path, procs, broker, "gate-2", private_key=g1.site.private_key)
    sup = {"Authorization": f"Bearer {g1.site.token('supervisor')}"}
    permit = {"credential": "badge:0C0C0C0D", "holder": "c-2", "name": "Wang Wu", "company": "Build Co",
              "areas": ["site/office"], "valid_until": "2099-01-01T00:00:00Z"}
    with httpx.Client(base_url=g1.site.api_url, timeout=WAIT_S) as api:
        p = api.post("/permits", json=permit, headers=sup).json()
        central.wait_for(f"central permit {p['permit']} created at gate-1")
        central.wait_for("central batch 0->1")
        wait_until(lambda: local_version(g2) == 1, what="gate-2 applying the central's batch")
        _, etype, data = g2.scan("office-in", "0C0C0C0D")
        assert (etype, data["holder"], data["category"]) == ("access.granted", "c-2", "contractor")
        api.post(f"/permits/{p['permit']}/return", json={}, headers=sup)
        central.wait_for("central batch 1->2")
        wait_until(lambda: local_version(g2) == 2, what="gate-2 hearing the card came back")
        _, etype, data = g2.scan("office-in", "0C0C0C0D")
        assert (etype, data["reason"]) == ("access.denied", "unknown_credential")


def test_spec6_a_batch_the_database_refuses_waits_and_is_applied_in_order_when_it_can(tmp_path):
    """The sync worker's side of a full disk, made exact with SQLite's page limit: the batch is reported
    waiting (not acknowledged), retried, and applied once the database takes writes again."""
    import queue
    import threading

    from edge.link.sync import Worker
    results: queue.Queue = queue.Queue()
    w = Worker(str(tmp_path / "gatekeeper.db"), results)
    pages = w.store.conn.execute("PRAGMA page_count").fetchone()[0]
    w.store.conn.execute(f"PRAGMA max_page_count={pages}")  # full: no page more
    people = [record(f"badge:{i:08X}", f"h-{i}") for i in range(300)]
    room = threading.Event()

    def job():
        if room.is_set():
            w.store.conn.execute("PRAGMA max_page_count=1073741823")
        w.changes(1, json.dumps(batch(0, 1, upserts=people)).encode())

    def central_watch():
        kind, jid, info = results.get(timeout=WAIT_S)
        assert (kind, jid) == ("waiting", 1) and "full" in info["why"]
        room.set()

    watcher = threading.Thread(target=central_watch)
    watcher.start()
    w.until_written("changes", job, 1)
    watcher.join(WAIT_S)
    assert room.is_set(), "the refused batch was not reported as waiting"
    kind, jid, info = results.get(timeout=WAIT_S)
    assert (kind, jid, info["version"]) == ("applied", 1, 1)
    assert w.store.conn.execute("SELECT count(*) FROM credentials").fetchone()[0] == 300
    w.store.close()
