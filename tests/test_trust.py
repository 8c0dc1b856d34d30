"""What a site found trying the gate from outside: each case end to end, with the daemon, its simulators and
a broker as real processes, and the lock read back over Modbus.

Every test here failed before its fix: a revoked badge opened the door, a freed door stayed unlocked after a
fire, a malformed message made a stale gate admit visitors, a replayed site message ended a newer lockdown,
a new gate waited with an empty allow-list, a hung module unlocked late.
"""
from __future__ import annotations

import json
import os
import signal
import time

import httpx
import pytest

from mqttkit import Peer, rfc3339_now, site_mode
from sitekit import make_site, wait_until
from test_e2e_gate import STAFF, staffed_gate
from test_link import start_gate

pytestmark = pytest.mark.e2e

SUPERVISOR_BADGE = "04112233"


def _post(site, path: str, body: dict, token: str) -> httpx.Response:
    return httpx.post(site.api_url + path, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=10)


def test_p6_import_while_running_is_enforced(tmp_path, procs):
    """Imported by another process while the daemon runs, then ordinary activity (a malformed line at
    another door, a door contact opening and closing): the revoked badge is refused and nothing unlocks."""
    g = staffed_gate(make_site(tmp_path / "site"), procs)
    _, etype, _ = g.scan("main-in", STAFF)
    assert etype == "access.granted"
    g.settle()
    assert g.site.import_lines([{"revoke": {"credential": f"badge:{STAFF}"}}]).returncode == 0
    g.journal.next("allowlist.applied")
    g.readers["office-in"].send("this is not a badge")
    g.journal.next("access.denied", reason="malformed")
    g.door_io.send("input 2 on")
    g.journal.next(("door.forced", "door.opened"), door="office")
    g.door_io.send("input 2 off")
    g.journal.next("door.closed", door="office")
    before = g.unlocks(0)
    _, etype, data = g.scan("main-in", STAFF)
    assert (etype, data["reason"]) == ("access.denied", "revoked")
    assert g.unlocks(0) == before and g.locked(0)


def test_p16_fire_cleared_relocks_freed_doors(tmp_path, procs):
    """The fire panel frees the fail-safe doors; the supervisor ends fire mode: the closed door locks at
    once, the open one as soon as it shuts, read back from the module; grants pulse it again after."""
    site = make_site(tmp_path / "site", api=True)
    site.edit_door("main", fail_mode="fail_safe")
    site.edit_door("office", fail_mode="fail_safe")
    g = staffed_gate(site, procs)
    site.wait_api()
    supervisor = site.token("supervisor")
    g.daemon.wait_for("io module io1 ready", already=True)
    g.door_io.send("input 100 on")
    g.journal.next("mode.changed", mode="fire")
    wait_until(lambda: not g.locked(0) and not g.locked(1), what="both fail-safe doors freed")
    g.door_io.send("input 0 on")  # people leave through the main door; it stands open
    g.journal.next("door.opened", door="main")
    g.door_io.send("input 100 off")
    # refused (409) until the gate has read the panel's input off: only then may a supervisor end fire mode
    wait_until(lambda: _post(site, "/mode", {"mode": "normal", "reason": "all clear"}, supervisor).status_code == 200,
               what="fire mode ended by the supervisor")
    wait_until(lambda: g.locked(1), what="the closed office door locked at once")
    assert not g.locked(0)  # never locked on someone walking through
    g.door_io.send("input 0 off")
    g.journal.next("door.closed", door="main")
    wait_until(lambda: g.locked(0), what="the main door locked as it shut")
    before = g.unlocks(1)
    _, etype, _ = g.scan("office-in", STAFF)
    assert etype == "access.granted"
    wait_until(lambda: g.unlocks(1) == before + 1, what="a grant pulses the relocked door again")
    wait_until(lambda: g.locked(1), what="and the pulse ends locked")


def test_p23_malformed_heartbeat_keeps_gate_stale(tmp_path, procs, broker):
    """Central silent beyond max_sync_age: a visitor is refused `stale_allowlist`. Garbage on the heartbeat
    (or a sign-off) raises an alarm and changes nothing; only a well-formed heartbeat refreshes the gate."""
    g = start_gate(tmp_path, procs, broker, daemon=False)
    g.site.config.write_text(g.site.config.read_text().replace("[policy]", "[policy]\nmax_sync_age_s = 30"))
    # the gate's database says it was made an hour ago: the allow-list is stale from the start
    import sqlite3
    conn = sqlite3.connect(g.site.db)
    conn.execute("UPDATE meta SET value=? WHERE key='created_at'", (repr(time.time() - 3600),))
    conn.commit(), conn.close()
    g.start_daemon()
    central = Peer(broker.port, "acs/none")
    try:
        visitor = g.site.visitor_pass("h-9")
        _, _, data = g.scan("main-in", visitor)
        assert data["reason"] == "stale_allowlist"
        for topic, payload in (("acs/test/central/heartbeat", b"garbage"),
                               ("acs/test/visits/signoff", b'{"visit": 7}')):
            central.publish(topic, payload)
            g.journal.next("alarm.raised", alarm="bad_message", topic=topic)
        _, _, data = g.scan("main-in", visitor)
        assert data["reason"] == "stale_allowlist"
        central.publish("acs/test/central/heartbeat", {"time": rfc3339_now()})
        central.publish("acs/test/gate-1/muster/request", b"not json")  # handled after the heartbeat
        g.journal.next("alarm.raised", alarm="bad_message", topic="acs/test/gate-1/muster/request")
        _, etype, data = g.scan("main-in", g.site.visitor_pass("h-9"))
        assert (etype, data["reason"]) == ("access.granted", "ok")
    finally:
        central.close()


def test_p15_replayed_site_mode_keeps_newer_lockdown(tmp_path, procs, broker):
    """A guard's local lockdown is newer than anything the site said: a site message without a version,
    or with one not above it, changes nothing; a newer one is applied."""
    g = start_gate(tmp_path, procs, broker, api=True)
    g.site.wait_api()
    guard = g.site.token("guard")
    central = Peer(broker.port, "acs/none")
    try:
        central.publish("acs/test/mode", site_mode("normal", 4, reason="earlier"), retain=True)
        r = _post(g.site, "/mode", {"mode": "lockdown", "reason": "intruder"}, guard)
        assert r.status_code == 200 and r.json()["mode"] == "lockdown"
        _, _, changed = g.journal.next("mode.changed", mode="lockdown")
        assert changed["version"] >= 5  # one more than the highest it had seen
        central.publish("acs/test/mode", {"mode": "normal", "by": "x"})
        g.journal.next("alarm.raised", alarm="bad_message", topic="acs/test/mode")
        central.publish("acs/test/mode", site_mode("normal", 4, reason="replayed"))
        central.publish("acs/test/mode", site_mode("normal", changed["version"], actor="a", reason="tie, smaller"))
        central.publish("acs/test/visits/signoff", {"visit": "v-0", "host": "h-1", "time": rfc3339_now()})
        g.journal.next("visit.signed_off", visit="v-0")  # the messages before it were handled by now
        _, _, data = g.scan("main-in", STAFF)
        assert data["reason"] == "lockdown"
        central.publish("acs/test/mode", site_mode("normal", changed["version"] + 1, reason="all clear"))
        g.journal.next("mode.changed", mode="normal")
        _, etype, _ = g.scan("main-in", STAFF)
        assert etype == "access.granted"
    finally:
        central.publish("acs/test/mode", b"", retain=True)
        central.close()


def test_link_a_new_gate_gets_its_allow_list_at_its_first_connection(tmp_path, procs, broker):
    """SPEC §2: no session at the broker means a resync with the gate's version; the central answers with
    a snapshot at once, not at its next change."""
    data = tmp_path / "people.jsonl"
    data.write_text(json.dumps({"credential": "badge:0A0B0C0D", "holder": "h-2", "category": "staff",
                                "areas": ["site"]}) + "\n")
    central = procs.start("central", "-m", "simulators.central", "--broker", broker.url, "--site", "test",
                          "--data", str(data), "--version", "3", "--heartbeat", "0", stdin=True)
    central.wait_for("central ready", 30)
    g = start_gate(tmp_path, procs, broker, items=[])
    central.wait_for("resync gate-1 have_version 0", 30)
    g.journal.next("allowlist.applied", source="snapshot", to_version=3)
    _, etype, _ = g.scan("main-in", "0A0B0C0D")
    assert etype == "access.granted"


def test_link_a_session_lost_at_the_broker_is_followed_by_a_resync(tmp_path, procs):
    """A broker that lost its store (restarted without persistence): the gate reconnects without a session
    and asks for a snapshot, since batches meanwhile could not reach it."""
    from simulators.mosquitto import Broker
    b = Broker(tmp_path / "volatile", persistence=False).start()
    try:
        g = start_gate(tmp_path, procs, b)
        asked = "asking the central system for an allow-list snapshot (have version 0)"
        g.daemon.wait_for(asked, already=True)  # a new gate: no session yet
        b.stop()
        b.start()
        g.daemon.wait_for(asked, timeout=60)  # the session is gone with the broker's store
        assert g.daemon.p.poll() is None
    finally:
        b.stop()


def test_p18_hung_module_late_unlock_is_relocked_at_once(tmp_path, procs):
    """The module stops answering (SIGSTOP) with a grant's unlock in flight. The gate reports the fault and
    queues a relock right behind the unlock; when the module resumes it does both, in order: the late
    unlock lasts a moment, never a pulse."""
    site = make_site(tmp_path / "site")
    # a long pulse, and the inputs read rarely: the grant's unlock is the request in flight
    site.edit_door("main", pulse_s=5)
    site.config.write_text(site.config.read_text().replace("poll_ms = 100", "poll_ms = 5000"))
    g = staffed_gate(site, procs)
    g.daemon.wait_for("io module io1 ready", already=True)
    os.killpg(g.door_io.p.pid, signal.SIGSTOP)
    try:
        g.readers["main-in"].send(STAFF)
        g.journal.next("access.granted")
        g.journal.next("device.fault")
        g.journal.next("alarm.raised", alarm="output_failed", door="main")
    finally:
        os.killpg(g.door_io.p.pid, signal.SIGCONT)
    unlocked = g.door_io.wait_for("door_io coil 0 unlocked", timeout=30)
    locked = g.door_io.wait_for("door_io coil 0 locked", timeout=30)
    at = lambda line: int(line.rsplit("at=", 1)[1]) / 1e9  # noqa: E731 - the module's own clock
    assert at(locked) - at(unlocked) < 1.0, "the late unlock lasted like a pulse (5 s) or longer"
    assert g.locked(0)
    g.journal.next("device.recovered")


def test_p18_a_grant_with_its_module_down_is_flagged_and_alarmed(tmp_path, procs):
    """Granted but not opened: the journal says so next to the grant, not only a log line."""
    g = staffed_gate(make_site(tmp_path / "site"), procs)
    g.daemon.wait_for("io module io1 ready", already=True)
    g.door_io.send("down")
    g.journal.next("device.fault")
    seq, _, data = g.scan("main-in", STAFF)
    assert data["reason"] == "ok" and "output_down" in data["flags"]
    _, _, alarm = g.journal.next("alarm.raised", alarm="output_failed")
    assert alarm["grant_seq"] == seq and alarm["door"] == "main"
    g.door_io.send("up")
    g.journal.next("device.recovered")


def test_the_api_port_taken_is_a_fault_and_the_doors_keep_working(tmp_path, procs):
    """Another program holds the API's port: the daemon is ready all the same, reports the API as a device
    fault, opens doors, and serves the API as soon as the port is free."""
    import socket
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    site = make_site(tmp_path / "site")
    site.config.write_text(site.config.read_text() + f"\n[api]\nport = {port}\n")
    g = staffed_gate(site, procs)
    _, _, fault = g.journal.next("device.fault", device="api")
    assert "in use" in fault["error"]
    before = g.unlocks(0)
    _, etype, _ = g.scan("main-in", STAFF)
    assert etype == "access.granted"
    wait_until(lambda: g.unlocks(0) == before + 1, what="the door opened")
    holder.close()
    g.journal.next("device.recovered", device="api", timeout=60)
    assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200
    assert g.daemon.p.poll() is None


def test_malformed_heartbeat_and_muster_request_raise_alarms_and_change_nothing(tmp_path, procs, broker):
    g = start_gate(tmp_path, procs, broker)
    central = Peer(broker.port, "acs/test/gate-1/muster")
    try:
        central.publish("acs/test/gate-1/muster/request", b"[1, 2]")
        g.journal.next("alarm.raised", alarm="bad_message", topic="acs/test/gate-1/muster/request")
        central.publish("acs/test/central/heartbeat", b'{"time": "yesterday"}', qos=1)
        g.journal.next("alarm.raised", alarm="bad_message", topic="acs/test/central/heartbeat")
        assert not [t for t, _, retained in central.messages if not retained]  # no muster republished
        central.publish("acs/test/gate-1/muster/request", {})
        central.wait(lambda m: [t for t, _, retained in m if not retained], what="the muster list on {}")
    finally:
        central.close()


def test_a_stop_saves_the_last_acks_and_leaves_no_traceback(tmp_path, procs, broker):
    """SIGTERM after the broker acknowledged everything: the watermark says so (no event sent again after
    the restart), the status it leaves is `offline` with its session, and nothing fails on the way out."""
    g = start_gate(tmp_path, procs, broker, daemon=False)
    central = Peer(broker.port, ["acs/test/gate-1/events/#", "acs/test/gate-1/status"])
    try:
        g.start_daemon()
        for _ in range(5):
            g.scan("main-in", STAFF)
        last = g.journal.rows()[-1][0]
        central.wait(lambda m: {json.loads(p)["seq"] for t, p, _ in m if "/events/" in t} >= set(range(1, last + 1)),
                     what="every event at the broker")
        assert g.daemon.stop() == 0
        out = "\n".join(g.daemon.output)
        for bad in ("Traceback", "Exception in thread", "closed database"):
            assert bad not in out, out
        import sqlite3
        conn = sqlite3.connect(f"file:{g.site.db}?mode=ro", uri=True)
        acked = int(conn.execute("SELECT value FROM meta WHERE key='outbox_acked'").fetchone()[0])
        conn.close()
        assert acked == last
        status = central.wait(lambda m: [json.loads(p) for t, p, _ in m if t.endswith("/status")
                                         and json.loads(p)["state"] == "offline"], what="the offline status")[-1]
        assert status["session"] >= 1 and status["last_seq"] == last and "outbox_depth" not in status, out
    finally:
        central.close()


def test_a_missing_api_certificate_is_a_fault_and_the_doors_keep_working(tmp_path, procs):
    """`--check` names the files; the daemon, started anyway, opens doors and reports the API as a fault
    naming the certificate, rather than logging an address nothing listens on."""
    site = make_site(tmp_path / "site")
    site.config.write_text(site.config.read_text() + '\n[api]\nbind = "0.0.0.0"\nport = 0\n'
                           'tls_cert_file = "secrets/api.pem"\ntls_key_file = "secrets/api.key"\n')
    from sitekit import gatekeeper
    r = gatekeeper("run", "--config", str(site.config), "--check")
    assert r.returncode == 2 and "api.tls_cert_file: cannot read " in r.stderr
    g = staffed_gate(site, procs)
    _, _, fault = g.journal.next("device.fault", device="api")
    assert "api.pem" in fault["error"]
    assert not any("gatekeeper api on" in line for line in g.daemon.output)
    before = g.unlocks(0)
    _, etype, _ = g.scan("main-in", STAFF)
    assert etype == "access.granted"
    wait_until(lambda: g.unlocks(0) == before + 1, what="the door opened")


def test_spec2_status_and_last_will_carry_the_session(tmp_path, procs, broker):
    """SPEC §2: the online status says its session, the last seq and the epoch; the last will the broker
    publishes after a kill -9 says the same session, so a consumer can order it against the status."""
    g = start_gate(tmp_path, procs, broker, daemon=False)
    central = Peer(broker.port, "acs/test/gate-1/status")
    try:
        g.start_daemon()
        online = central.wait(lambda m: [json.loads(p) for _, p, _ in m if json.loads(p)["state"] == "online"],
                              what="the online status")[-1]
        import sqlite3
        conn = sqlite3.connect(f"file:{g.site.db}?mode=ro", uri=True)
        epoch = conn.execute("SELECT value FROM meta WHERE key='epoch'").fetchone()[0]
        conn.close()
        assert online["session"] >= 1 and online["epoch"] == epoch and online["last_seq"] >= 1
        g.daemon.kill()
        will = central.wait(lambda m: [json.loads(p) for _, p, _ in m if json.loads(p)["state"] == "offline"],
                            what="the last will")[-1]
        assert will == {"state": "offline", "session": online["session"]}
    finally:
        central.close()
