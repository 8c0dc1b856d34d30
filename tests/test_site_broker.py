"""SPEC §7: the site broker `gatekeeper site-broker` renders, bridged to a central broker, with its ACL. Two
real mosquittos (site and central, each with its users and ACL from the rendered files), real gates on the
site broker, the central simulator on the central broker."""
from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from mqttkit import Peer, batch, record
from sitekit import WAIT_S, JournalWatch, gatekeeper, wait_until
from test_e2e_gate import STAFF, Gate
from test_link import _presence, start_gate
from test_link_security import pki  # noqa: F401  (a fixture: a CA, a server and a client certificate)

pytestmark = pytest.mark.e2e

SITE = "test"
GATES = ("gate-1", "gate-2")
BASE = f"acs/{SITE}"


@dataclass
class Chain:
    out: Path
    secrets: Path
    site: object  # simulators.mosquitto.Broker
    central: object

    def password(self, identity: str) -> str:
        return (self.secrets / f"{identity}.password").read_text().strip()

    def peer(self, broker, identity: str, subscribe, **kw) -> Peer:
        return Peer(broker.port, subscribe, username=identity, password=self.password(identity), **kw)

    def mqtt_extra(self, gate: str) -> str:
        """A gate's [mqtt] lines: its own identity on the site broker."""
        return f'username = "{gate}"\npassword_file = "{self.secrets / f"{gate}.password"}"\n'


def render(out: Path, secrets: Path, central: str, *more: str):
    r = gatekeeper("site-broker", "--site", SITE, *[a for g in GATES for a in ("--gate", g)], "--central", central,
                   "--out", str(out), "--secrets", str(secrets), "--retry-s", "1", "2", "--keepalive-s", "5", *more)
    assert r.returncode == 0, r.stderr
    return r


@pytest.fixture
def chain(tmp_path):
    """Rendered once for the central broker's files (its port is not known yet), then for the bridge to it:
    the passwords stay, read from the secrets folder."""
    from simulators.mosquitto import Broker
    out, secrets = tmp_path / "site-broker", tmp_path / "secrets"
    render(out, secrets, "127.0.0.1:1")
    central = Broker(tmp_path / "central", anonymous=False,
                     extra=f"password_file {out}/central/passwd\nacl_file {out}/central/acl\n")
    site = Broker(tmp_path / "site", include_dir=out / "conf.d")
    try:
        central.start()
        render(out, secrets, central.url)
        site.start()
        yield Chain(out, secrets, site, central)
    finally:
        site.stop()
        central.stop()


def start_central(procs, chain: Chain, events: Path):
    c = procs.start("central", "-m", "simulators.central", "--broker", chain.central.url, "--site", SITE,
                    "--username", "central", "--password-file", str(chain.secrets / "central.password"),
                    "--client-id", "central-sim", "--events-out", str(events), stdin=True)
    c.wait_for("central ready")
    return c


def central_seqs(events: Path, gate: str) -> set[int]:
    if not events.exists():
        return set()
    lines = events.read_text().split("\n")[:-1]  # whole lines only: the central may be writing the last one
    return {e["seq"] for e in map(json.loads, lines) if e["source"] == f"{BASE}/{gate}"}


def central_has_every_event(events: Path, g: Gate, gate: str) -> None:
    """Every seq the gate journaled, 1..its last, is at the central simulator (read again until it is)."""
    wait_until(lambda: central_seqs(events, gate) >= set(range(1, JournalWatch(g.site.db).last_seq() + 1)),
               what=f"every event of {gate} at central")


def bridge_state(peer: Peer) -> list[bytes]:
    return [p for t, p, _ in peer.messages if t == f"{BASE}/bridge/state"]


def connack(port: int, username: str, password: str) -> str:
    """The broker's answer to a connection with these credentials."""
    import threading
    import paho.mqtt.client as mqtt
    got: list[str] = []
    done = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.username_pw_set(username, password)
    c.on_connect = lambda client, userdata, flags, reason, props: (got.append(str(reason)), done.set())
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        assert done.wait(WAIT_S), "no CONNACK"
        return got[0]
    finally:
        c.disconnect()
        c.loop_stop()


# ---------------------------------------------------------------- the rendered files

def test_spec7_the_bridge_carries_each_topic_in_its_direction_with_qos_1(tmp_path):
    out = tmp_path / "out"
    render(out, tmp_path / "secrets", "central.example:8883")
    conf = (out / "conf.d" / "bridge.conf").read_text()
    topics = sorted(line.split()[1:] for line in conf.splitlines() if line.startswith("topic "))
    up = ["+/events/#", "+/status", "+/muster", "+/allowlist/resync", "+/key"]
    down = ["allowlist/changes", "+/allowlist/snapshot", "visits/signoff", "central/heartbeat", "+/muster/request",
            "+/replay"]
    assert topics == sorted([[f"{BASE}/{t}", "out", "1"] for t in up] + [[f"{BASE}/{t}", "in", "1"] for t in down]
                            + [[f"{BASE}/mode", "both", "1"]])
    lines = set(conf.splitlines())
    assert {"bridge_protocol_version mqttv50", "cleansession false", "local_cleansession false",
            "remote_clientid bridge-test", "notification_topic acs/test/bridge/state", "notifications true",
            "notifications_local_only false", "address central.example:8883"} <= lines
    assert "#bridge_cafile /etc/mosquitto/ca_certificates/central-ca.pem" in lines  # TLS: there, commented


def test_spec7_passwords_come_from_files_are_kept_and_never_printed(tmp_path):
    out, secrets = tmp_path / "out", tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "gate-1.password").write_text("chosen-by-the-operator\n")
    r = render(out, secrets, "127.0.0.1:1883")
    made = {p.name: p.read_text().strip() for p in secrets.iterdir()}
    assert made["gate-1.password"] == "chosen-by-the-operator"
    assert set(made) == {"gate-1.password", "gate-2.password", "central.password", "bridge-test.password"}
    made_here = [p for p in secrets.iterdir() if p.name != "gate-1.password"]
    for p in [*made_here, out / "passwd", out / "central" / "passwd", out / "conf.d" / "bridge.conf"]:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
    for pw in made.values():
        assert pw not in r.stdout + r.stderr
        assert pw not in (out / "passwd").read_text() + (out / "acl").read_text()
    assert f"remote_password {made['bridge-test.password']}" in (out / "conf.d" / "bridge.conf").read_text()
    again = render(out, secrets, "127.0.0.1:1883")
    assert {p.name: p.read_text().strip() for p in secrets.iterdir()} == made  # a second render keeps them
    assert "a new password" not in again.stdout
    (secrets / "gate-2.password").write_text("two words\n")
    bad = gatekeeper("site-broker", "--site", SITE, "--gate", "gate-2", "--central", "127.0.0.1:1883", "--out",
                     str(out), "--secrets", str(secrets))
    assert bad.returncode == 1 and "gate-2.password: one word" in bad.stderr and "two" not in bad.stderr


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("mosquitto"), reason="mosquitto drops root to its user")
def test_spec7_the_rendered_config_runs_as_mosquitto_does_on_a_site_server(procs):
    """The whole rendered config, as mosquitto runs it: started as root, it reads the password file and the
    ACL after becoming the `mosquitto` user, which must be able to."""
    from simulators.mosquitto import MOSQUITTO, _candidate_port
    try:
        user = pwd.getpwnam("mosquitto")
    except KeyError:
        pytest.skip("no mosquitto user")
    d = Path(tempfile.mkdtemp(prefix="site-broker-"))  # pytest's folders are root's alone
    d.chmod(0o755)
    proc = None
    try:
        (d / "data").mkdir()
        os.chown(d / "data", user.pw_uid, user.pw_gid)
        port = _candidate_port()
        r = gatekeeper("site-broker", "--site", SITE, "--gate", "gate-1", "--central", "127.0.0.1:1", "--out",
                       str(d / "conf"), "--listen", f"127.0.0.1:{port}", "--data-dir", str(d / "data"))
        assert r.returncode == 0, r.stderr
        (d / "conf").chmod(0o755)
        proc = subprocess.Popen([MOSQUITTO, "-c", str(d / "conf" / "mosquitto.conf")], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        password = (d / "conf" / "secrets" / "gate-1.password").read_text().strip()

        def gate_connects():
            assert proc.poll() is None, f"mosquitto exited {proc.returncode}: {proc.stdout.read()}"
            try:
                Peer(port, f"{BASE}/mode", username="gate-1", password=password).close()
                return True
            except (ConnectionRefusedError, socket.timeout):
                return False
        wait_until(gate_connects, what="gate-1 logged in on the rendered site broker")
    finally:
        if proc is not None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
        shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("args, why", [
    (["--gate", "gate/1"], "--gate 'gate/1'"),
    (["--gate", "g+"], "--gate 'g+'"),
    (["--gate", "central"], "named twice"),
    (["--gate", "g1", "--cert", "c.pem"], "--cert and --key go together"),
])
def test_site_broker_refuses_bad_input_and_writes_nothing(tmp_path, args, why):
    out = tmp_path / "out"
    r = gatekeeper("site-broker", "--site", SITE, "--central", "127.0.0.1:1883", "--out", str(out), *args)
    assert r.returncode == 1 and why in r.stderr
    assert not out.exists()


def test_the_test_broker_takes_users_and_an_acl(tmp_path):
    """simulators.mosquitto.Broker's own users and ACL: a wrong password is refused, a read not allowed is
    not delivered."""
    from simulators.mosquitto import Broker
    b = Broker(tmp_path / "b", anonymous=False, users={"reader": "r-pw", "writer": "w-pw"},
               acl="user reader\ntopic read a/ok\nuser writer\ntopic write a/#\n").start()
    try:
        assert "r-pw" not in b.passwd.read_text()  # hashed in place
        reader = Peer(b.port, "a/#", username="reader", password="r-pw")
        writer = Peer(b.port, "none", username="writer", password="w-pw")
        try:
            writer.publish("a/secret", "no")
            writer.publish("a/ok", "yes")
            reader.wait(lambda m: any(t == "a/ok" for t, _, _ in m), what="the allowed topic")
            assert [t for t, _, _ in reader.messages] == ["a/ok"]
        finally:
            reader.close()
            writer.close()
        assert connack(b.port, "reader", "wrong") == "Not authorized"
        assert connack(b.port, "reader", "r-pw") == "Success"
    finally:
        b.stop()


# ---------------------------------------------------------------- the ACL, on the running site broker

def test_spec7_acl_a_gate_cannot_speak_for_central_nor_another_gate_nor_read_duress(chain):
    gate_topics = [f"{BASE}/+/events/#", f"{BASE}/allowlist/changes", f"{BASE}/gate-1/allowlist/snapshot",
                   f"{BASE}/gate-1/replay", f"{BASE}/gate-1/muster/request", f"{BASE}/+/status",
                   f"{BASE}/gate-1/events/alarm.duress"]  # asked for by name: still nothing (P34)
    everything = f"{BASE}/#"
    gate1 = chain.peer(chain.site, "gate-1", everything)  # a paho client with gate-1's credentials
    gate2 = chain.peer(chain.site, "gate-2", gate_topics)
    central_here = chain.peer(chain.site, "central", everything)
    central_there = chain.peer(chain.central, "central", everything)
    peers = (gate1, gate2, central_here, central_there)
    try:
        forged = [f"{BASE}/allowlist/changes", f"{BASE}/gate-1/allowlist/snapshot", f"{BASE}/visits/signoff",
                  f"{BASE}/central/heartbeat", f"{BASE}/gate-1/muster/request", f"{BASE}/gate-1/replay",
                  f"{BASE}/gate-2/status", f"{BASE}/gate-2/events/access.granted"]
        for topic in forged:
            gate1.publish(topic, {"forged": topic})
        gate1.publish(f"{BASE}/gate-1/events/alarm.duress", {"duress": 1})
        # one client's messages reach each subscriber in order: once this is in, anything before it would be
        gate1.publish(f"{BASE}/gate-1/events/access.granted", {"marker": 1})

        def marker(p: Peer):
            p.wait(lambda m: any(t == f"{BASE}/gate-1/events/access.granted" for t, _, _ in m), what="the marker")

        for p in peers:
            marker(p)
            assert not [t for t, body, _ in p.messages if b"forged" in body], "a forged message got through"
        for p in (gate1, gate2):  # P34: only the central identity reads a duress alarm
            assert not [t for t, _, _ in p.messages if t.endswith("/alarm.duress")]
        for p in (central_here, central_there):
            assert [t for t, _, _ in p.messages if t == f"{BASE}/gate-1/events/alarm.duress"]
        # the central identity does publish them, and a gate gets what is meant for it
        central_there.publish(f"{BASE}/allowlist/changes", batch(0, 1, upserts=[record("badge:01", "h-1")]))
        central_there.publish(f"{BASE}/gate-1/allowlist/snapshot", {"real": "snapshot"})
        gate2.wait(lambda m: any(t == f"{BASE}/allowlist/changes" for t, _, _ in m), what="the real batch")
        gate1.wait(lambda m: any(t.endswith("/gate-1/allowlist/snapshot") for t, _, _ in m), what="gate-1's snapshot")
        central_here.publish(f"{BASE}/gate-2/allowlist/snapshot", {"real": "snapshot"})
        central_here.publish(f"{BASE}/gate-2/events/access.granted", {"marker": 2})  # gate-2 reads it: in order
        gate2.wait(lambda m: any(b'"marker": 2' in p for _, p, _ in m), what="the second marker")
        assert not [t for t, _, _ in gate2.messages if t.endswith("/gate-1/allowlist/snapshot")], \
            "gate-2 read gate-1's snapshot"
        assert not [t for t, _, _ in gate1.messages if t.endswith("/gate-2/allowlist/snapshot")]
    finally:
        for p in peers:
            p.close()


# ---------------------------------------------------------------- the chain with real gates

def test_spec7_every_event_crosses_the_bridge_and_a_central_outage_loses_nothing(tmp_path, procs, chain):
    events = tmp_path / "central-events.jsonl"
    start_central(procs, chain, events)
    g1 = start_gate(tmp_path, procs, chain.site, "gate-1", mqtt_extra=chain.mqtt_extra("gate-1"))
    g2 = start_gate(tmp_path, procs, chain.site, "gate-2", private_key=g1.site.private_key,
                    mqtt_extra=chain.mqtt_extra("gate-2"))
    local = chain.peer(chain.site, "gate-1", f"{BASE}/bridge/state")
    try:
        for g in (g1, g2):
            g.scan("main-in", STAFF)
            g.scan("main-in", "0BADBAD0")
        for name, g in (("gate-1", g1), ("gate-2", g2)):
            central_has_every_event(events, g, name)
        local.wait(lambda m: bridge_state(local)[-1:] == [b"1"], what="the bridge up")

        chain.central.stop()  # the central tier is gone; the site goes on
        local.wait(lambda m: bridge_state(local)[-1:] == [b"0"], what="the bridge down, on the site broker")
        for i in range(15):
            for g in (g1, g2):
                g.scan("main-in", f"{i:08X}")
        chain.central.start()  # same port, same store: the bridge and the central simulator come back

        for name, g in (("gate-1", g1), ("gate-2", g2)):
            central_has_every_event(events, g, name)
        late = chain.peer(chain.central, "central", f"{BASE}/bridge/state")  # a newcomer: the retained state
        try:
            late.wait(lambda m: bridge_state(late)[-1:] == [b"1"] and m[-1][2], what="a retained 1 at central")
        finally:
            late.close()
    finally:
        local.close()


def test_spec7_central_sees_the_bridge_state_0_when_the_site_broker_dies_then_1(chain):
    watcher = chain.peer(chain.central, "central", f"{BASE}/bridge/state")
    try:
        watcher.wait(lambda m: bridge_state(watcher)[-1:] == [b"1"], what="the bridge up")
        chain.site.stop(signal.SIGKILL)  # no goodbye: the central broker speaks the bridge's last will
        watcher.wait(lambda m: bridge_state(watcher)[-1:] == [b"0"], what="the bridge's will at central")
        late = chain.peer(chain.central, "central", f"{BASE}/bridge/state")
        try:
            late.wait(lambda m: m and m[-1][1] == b"0" and m[-1][2], what="a retained 0 at central")
        finally:
            late.close()
        chain.site.start()
        watcher.wait(lambda m: bridge_state(watcher)[-1:] == [b"1"], what="the bridge up again")
    finally:
        watcher.close()


def test_spec7_with_central_away_the_gates_of_a_site_share_presence_and_lockdown(tmp_path, procs, chain):
    g1 = start_gate(tmp_path, procs, chain.site, "gate-1", mqtt_extra=chain.mqtt_extra("gate-1"), api=True)
    g2 = start_gate(tmp_path, procs, chain.site, "gate-2", private_key=g1.site.private_key,
                    mqtt_extra=chain.mqtt_extra("gate-2"))
    local = chain.peer(chain.site, "gate-2", f"{BASE}/bridge/state")
    try:
        chain.central.stop()
        local.wait(lambda m: bridge_state(local)[-1:] == [b"0"], what="the bridge down")
        text = g1.site.visitor_pass("h-9", visit="v-88")  # P7: presence, through the site broker alone
        _, etype, _ = g1.scan("main-in", text)
        assert etype == "access.granted"
        wait_until(lambda: _presence(g2, "h-9") == "site/lobby", what="gate-2 hearing of the entry at gate-1")
        _, etype, data = g2.scan("main-in", text)
        assert (etype, data["reason"]) == ("access.denied", "antipassback")

        token = g1.site.token("supervisor")  # P15: a site lockdown at gate-1 reaches gate-2
        g1.site.wait_api()
        r = httpx.post(g1.site.api_url + "/mode", json={"mode": "lockdown", "scope": "site", "reason": "drill"},
                       headers={"Authorization": f"Bearer {token}"}, timeout=WAIT_S)
        assert r.status_code == 200, r.text
        g2.journal.next("mode.changed", mode="lockdown")
        _, etype, data = g2.scan("main-in", STAFF)
        assert (etype, data["reason"]) == ("access.denied", "lockdown")

        chain.central.start()  # the central system learns the site mode once it is back
        watcher = chain.peer(chain.central, "central", f"{BASE}/mode")
        try:
            watcher.wait(lambda m: any(json.loads(p).get("mode") == "lockdown" for _, p, _ in m if p),
                         what="the site's lockdown at central")
        finally:
            watcher.close()
    finally:
        local.close()


def test_spec7_the_bridge_speaks_mutual_tls_to_the_central_broker(tmp_path, pki):  # noqa: F811
    from simulators.mosquitto import Broker
    out, secrets = tmp_path / "site-broker", tmp_path / "secrets"
    tls = ["--tls-ca", str(pki["ca"]), "--cert", str(pki["gate"]), "--key", str(pki["gate_key"])]
    render(out, secrets, "127.0.0.1:1", *tls)
    central = Broker(tmp_path / "central", anonymous=False, listener_extra=(
        f"cafile {pki['ca']}\ncertfile {pki['server']}\nkeyfile {pki['server_key']}\nrequire_certificate true\n"),
        extra=f"password_file {out}/central/passwd\nacl_file {out}/central/acl\n")
    site = Broker(tmp_path / "site", include_dir=out / "conf.d")
    watcher = None
    try:
        central.start()
        render(out, secrets, central.url, *tls)
        assert f"bridge_certfile {pki['gate']}" in (out / "conf.d" / "bridge.conf").read_text()
        site.start()
        watcher = Peer(central.port, f"{BASE}/#", username="central",
                       password=(secrets / "central.password").read_text().strip(),
                       tls=(str(pki["ca"]), str(pki["gate"]), str(pki["gate_key"])))
        watcher.wait(lambda m: bridge_state(watcher)[-1:] == [b"1"], what="the bridge up over TLS")
        gate = Peer(site.port, f"{BASE}/none", username="gate-1",
                    password=(secrets / "gate-1.password").read_text().strip())
        try:
            gate.publish(f"{BASE}/gate-1/events/access.granted", {"over": "tls"})
        finally:
            gate.close()
        watcher.wait(lambda m: any(t.endswith("/gate-1/events/access.granted") for t, _, _ in m),
                     what="an event across the TLS bridge")
    finally:
        if watcher is not None:
            watcher.close()
        site.stop()
        central.stop()


def test_spec7_site_broker_killed_9_mid_burst_then_replay_fills_the_gap_at_central(tmp_path, procs, chain):
    events = tmp_path / "central-events.jsonl"
    start_central(procs, chain, events)
    g1 = start_gate(tmp_path, procs, chain.site, "gate-1", mqtt_extra=chain.mqtt_extra("gate-1"))
    for i in range(200):
        g1.readers["main-in"].send(f"{i:08X}")
    wait_until(lambda: JournalWatch(g1.site.db).last_seq() >= 50, what="a burst under way")
    chain.site.stop(signal.SIGKILL)
    chain.site.start()
    central_has_every_event(events, g1, "gate-1")


def test_spec7_a_site_mode_set_while_central_was_away_stays_retained_on_the_site_broker(tmp_path, procs, chain):
    g1 = start_gate(tmp_path, procs, chain.site, "gate-1", mqtt_extra=chain.mqtt_extra("gate-1"), api=True)
    central = chain.peer(chain.central, "central", f"{BASE}/bridge/state")
    try:
        central.publish(f"{BASE}/mode", {"mode": "normal", "actor": "central", "reason": "set by central",
                                         "time": "2026-01-01T00:00:00Z", "version": 1}, retain=True)
        chain.central.stop()
        token = g1.site.token("supervisor")
        g1.site.wait_api()
        r = httpx.post(g1.site.api_url + "/mode", json={"mode": "lockdown", "scope": "site", "reason": "drill"},
                       headers={"Authorization": f"Bearer {token}"}, timeout=WAIT_S)
        assert r.status_code == 200, r.text
        chain.central.start()
        central.wait(lambda m: bridge_state(central)[-1:] == [b"1"] and len(bridge_state(central)) > 1,
                     what="the bridge back")
        late = chain.peer(chain.site, "gate-1", f"{BASE}/mode")  # what a gate starting now would read
        try:
            late.wait(lambda m: m and json.loads(m[-1][1])["mode"] == "lockdown", what="the newer mode retained")
        finally:
            late.close()
    finally:
        central.close()
