"""End to end: simulators and the daemon as real processes; what a guard at the door would see.

The lock is read back over Modbus from the door I/O simulator: each lock coil has a holding register at
the same address counting its unlocks, so a pulse that already ended still shows.
"""
from __future__ import annotations

import time

import pytest
from pymodbus.client import ModbusTcpClient

from demo.procs import listen_port
from mqttkit import Peer
from sitekit import DAY, JournalWatch, iso, make_site, wait_until
from unitsandbox import confined

pytestmark = pytest.mark.e2e

STAFF = "04A1B2C3"
SUPERVISOR = "04112233"
# a staff member and a supervisor, everywhere on site: what a test of modes and doors imports first
STAFF_AND_SUPERVISOR = [
    {"credential": f"badge:{STAFF}", "holder": "h-1", "category": "staff", "areas": ["site"]},
    {"credential": f"badge:{SUPERVISOR}", "holder": "h-2", "category": "staff", "areas": ["site"],
     "roles": ["supervisor"]},
]
CONTRACTOR_EXPIRED = "0C0FFEE0"
CONTRACTOR_HOLIDAY = "0C0FFEE1"
BANNED = "0BADBAD0"
UNKNOWN = "DEADBEEF01"


class Gate:
    """The running site: readers to scan at, the journal to watch, the I/O module to read back."""

    def __init__(self, site, procs):
        self.site = site
        self.procs = procs
        self.readers = {}
        self.journal = JournalWatch(site.db)
        self.io = None
        self.daemon = None
        self.held = {}  # reader name -> its port, held while the reader is away (see start_reader)

    def start_hardware(self):
        """The door I/O module and every reader of `site.reader_ports`, each on a port it bound itself (port 0,
        then reported); the config is rewritten with those ports before any daemon reads it."""
        self.door_io = self.procs.start("door_io", "-m", "simulators.door_io", "--site", str(self.site.config),
                                        "--module", "io1", "--port", "0", stdin=True)
        self.site.set_io_port(listen_port(self.door_io.wait_for("door_io listening")))
        for name in list(self.site.reader_ports):
            self.start_reader(name)
        self.io = ModbusTcpClient("127.0.0.1", port=self.site.io_port, timeout=10)  # a reply, not a wait: ends at once
        assert self.io.connect()

    def start_reader(self, name: str):
        """The badge reader simulator `name`: the first time on a port of its own (0, reported), which is then
        held for it, so that after it stopped or was killed (a reader that vanishes) it comes back on the same
        port, the one the config names, and no other process can have taken that port meanwhile."""
        port = self.held[name].port if name in self.held else 0
        r = self.procs.start(name, "-m", "simulators.badge_reader", "--listen", f"127.0.0.1:{port}", "--reuse-port",
                             stdin=True)
        got = listen_port(r.wait_for("badge_reader listening"))
        if name not in self.held:
            self.held[name] = self.procs.hold(got)
            self.site.set_reader_port(name, got)
        self.readers[name] = r
        return r

    def start_daemon(self, user: str | None = None):
        # under the shipped unit's system-call filter: a call it forbids fails a test, not a site's start
        self.daemon = self.procs.start("daemon", *confined("-m", "edge.cli", "run", "--config", str(self.site.config),
                                                           user=user))
        self.site.daemon = self.daemon  # where its API listens is in its output
        self.daemon.wait_for("gatekeeper ready")
        for r in self.readers.values():
            r.wait_for("badge_reader connected")

    def scan(self, reader: str, text: str, **match):
        self.readers[reader].send(text)
        return self.journal.next(("access.granted", "access.denied", "exit.held"), **match)

    def settle(self) -> None:
        """Wait until every pulse ended: a grant during a pulse extends it, which the unlock counter
        cannot see, so counting starts from locked doors."""
        wait_until(lambda: self.locked(0) and self.locked(1), what="every door locked again")

    def unlocks(self, coil: int) -> int:
        return self.io.read_holding_registers(coil, count=1, device_id=1).registers[0]

    def locked(self, coil: int) -> bool:
        return not self.io.read_coils(coil, count=1, device_id=1).bits[0]


def running(site, procs) -> Gate:
    """The site's hardware simulators and its daemon running, the I/O module's first state read."""
    g = Gate(site, procs)
    g.start_hardware()
    g.start_daemon()
    g.daemon.wait_for("io module io1 ready", already=True)
    return g


def running_for_console(site, procs):
    """For a console fixture: the gate running; yields (gate, a guard's token, a supervisor's token), each named
    as a person, then closes the test's connection to the I/O module."""
    g = running(site, procs)
    try:
        yield g, site.token("guard", "Wang Fang"), site.token("supervisor", "Zhao Min")
    finally:
        g.io.close()


def running_with_api(site, procs):
    """For a fixture: the gate running and an API client; yields (gate, client, tokens by role), then closes them."""
    import httpx
    from sitekit import WAIT_S
    tokens = {role: site.token(role) for role in ("guard", "supervisor")}
    g = running(site, procs)
    client = httpx.Client(base_url=site.api_url, timeout=WAIT_S)
    site.wait_api()
    try:
        yield g, client, tokens
    finally:
        client.close()
        g.io.close()


def call(client, method, path, token, body=None):
    """One API request with a bearer token."""
    return client.request(method, path, json=body, headers={"Authorization": f"Bearer {token}"})


def running_with_central(site, procs, broker_port: int):
    """For a fixture: the site's hardware and daemon running, with a central peer on the gate's events;
    yields (gate, central), then closes both."""
    central = Peer(broker_port, "acs/test/gate-1/events/#")
    g = running(site, procs)
    try:
        yield g, central
    finally:
        g.io.close()
        central.close()


def staffed_gate(site, procs) -> Gate:
    """A site whose allow-list holds one staff badge, its hardware simulators and its daemon, running."""
    assert site.import_lines([{"credential": f"badge:{STAFF}", "holder": "h-1", "category": "staff",
                               "areas": ["site"]}]).returncode == 0
    g = Gate(site, procs)
    g.start_hardware()
    g.start_daemon()
    return g


@pytest.fixture(scope="module")
def gate(tmp_path_factory, module_procs):
    site = make_site(tmp_path_factory.mktemp("site"))
    now = time.time()
    r = site.import_lines([
        {"credential": f"badge:{STAFF}", "holder": "h-1", "category": "staff", "areas": ["site"]},
        {"credential": f"badge:{SUPERVISOR}", "holder": "h-2", "category": "staff", "areas": ["site"],
         "roles": ["supervisor"]},
        {"credential": f"badge:{CONTRACTOR_EXPIRED}", "holder": "h-3", "category": "contractor",
         "areas": ["site"], "valid_from": iso(now - 30 * DAY), "valid_until": iso(now - DAY)},
        {"credential": f"badge:{CONTRACTOR_HOLIDAY}", "holder": "h-4", "category": "contractor",
         "areas": ["site"], "valid_from": iso(now - DAY), "valid_until": iso(now + DAY), "schedule": "holiday"},
        {"credential": f"badge:{BANNED}", "holder": "h-5", "category": "visitor", "areas": ["site"],
         "valid_from": iso(now - DAY), "valid_until": iso(now + DAY)},
        {"blocklist": {"holder": "h-5", "reason": "incident"}},
    ])
    assert r.returncode == 0, r.stderr
    g = Gate(site, module_procs)
    g.start_hardware()
    g.start_daemon()
    yield g
    g.io.close()


def test_p2_granted_badge_pulses_the_lock_then_relocks(gate):
    gate.settle()
    before = gate.unlocks(0)
    _, etype, data = gate.scan("main-in", STAFF)
    assert (etype, data["reason"], data["holder"], data["door"]) == ("access.granted", "ok", "h-1", "main")
    wait_until(lambda: gate.unlocks(0) == before + 1, what="main door unlocked once")
    wait_until(lambda: gate.locked(0), what="main door locked again after its pulse")
    gate.scan("main-out", STAFF)  # leave again so later tests start outside
    wait_until(lambda: gate.unlocks(0) == before + 2, what="exit opens the same door")


def _denied_without_pulse(gate, reader, text, coil, reason, **match):
    """A refusal names its reason and leaves the lock alone. Decisions are handled one at a time, a
    grant's pulse before the next decision; so once a staff badge at the other door is journaled, any
    pulse the refusal might have caused would already show on the module."""
    gate.settle()
    before = gate.unlocks(coil)
    _, etype, data = gate.scan(reader, text, **match)
    assert (etype, data["reason"]) == ("access.denied", reason)
    probe_reader, probe_coil = ("office-in", 1) if coil == 0 else ("main-in", 0)
    probe_before = gate.unlocks(probe_coil)
    _, etype2, _ = gate.scan(probe_reader, STAFF)
    assert etype2 == "access.granted"
    wait_until(lambda: gate.unlocks(probe_coil) > probe_before, what="the staff grant's unlock")
    assert gate.unlocks(coil) == before
    if probe_reader == "main-in":
        gate.scan("main-out", STAFF)
    return data


def test_p2_unknown_badge_is_refused_and_the_door_stays_locked(gate):
    data = _denied_without_pulse(gate, "main-in", UNKNOWN, 0, "unknown_credential")
    assert data["credential_ref"] == f"badge:{UNKNOWN}" and data["holder"] is None


def test_p2_garbage_on_the_line_is_malformed_and_the_gate_keeps_deciding(gate):
    _denied_without_pulse(gate, "main-in", "hello there", 0, "malformed")


def test_p3_expired_contractor_is_refused(gate):
    _denied_without_pulse(gate, "main-in", CONTRACTOR_EXPIRED, 0, "expired")


def test_p4_visitor_pass_at_the_wrong_door_is_refused(gate):
    text = gate.site.visitor_pass("h-6")
    data = _denied_without_pulse(gate, "office-in", text, 1, "area_not_permitted")
    assert data["credential_kind"] == "pass" and data["holder"] == "h-6"


def test_p5_outside_its_schedule_is_refused(gate):
    _denied_without_pulse(gate, "main-in", CONTRACTOR_HOLIDAY, 0, "outside_schedule")


def test_p6_blocklisted_is_refused_with_a_high_priority_alarm(gate):
    data = _denied_without_pulse(gate, "main-in", BANNED, 0, "blocklisted")
    assert data["holder"] == "h-5"
    rows = gate.journal.rows()
    assert any(t == "alarm.raised" and d.get("alarm") == "blocklisted" and d["holder"] == "h-5" for _, t, d in rows)


def test_p2_tampered_pass_is_bad_signature(gate):
    from edge.passes.base45 import decode, encode
    text = gate.site.visitor_pass("h-7")
    raw = bytearray(decode(text[4:]))
    raw[-1] ^= 0x01  # the last byte of the signature: still a well-formed COSE message
    data = _denied_without_pulse(gate, "main-in", "GK1:" + encode(bytes(raw)), 0, "bad_signature")
    assert data["credential_ref"] is None and data["holder"] is None  # nothing unverified is trusted


def test_p7_second_entry_is_refused_by_antipassback(gate):
    text = gate.site.visitor_pass("h-8")
    _, etype, data = gate.scan("main-in", text)
    assert (etype, data["reason"]) == ("access.granted", "ok")
    _denied_without_pulse(gate, "main-in", text, 0, "antipassback")


def test_p9_visitor_exit_is_held_without_signoff_and_nothing_opens(gate):
    text = gate.site.visitor_pass("h-9")
    gate.scan("main-in", text, holder="h-9")
    gate.settle()
    before = gate.unlocks(0)
    _, etype, data = gate.scan("main-out", text)
    assert (etype, data["reason"]) == ("exit.held", "host_signoff_missing")
    gate.scan("main-in", STAFF)
    wait_until(lambda: gate.unlocks(0) == before + 1)
    assert gate.unlocks(0) == before + 1
    gate.scan("main-out", STAFF)


def test_p15_lockdown_input_refuses_entry_except_supervisors(gate):
    gate.settle()
    before = gate.unlocks(0)
    gate.door_io.send("input 101 on")
    _, _, data = gate.journal.next("mode.changed")
    assert (data["mode"], data["actor"], data["actor_role"]) == ("lockdown", "lockdown_input", None)
    _, etype, data = gate.scan("main-in", STAFF)
    assert (etype, data["reason"]) == ("access.denied", "lockdown")
    _, etype, data = gate.scan("main-in", SUPERVISOR)
    assert (etype, data["reason"]) == ("access.granted", "ok")
    wait_until(lambda: gate.unlocks(0) == before + 1, what="the supervisor's unlock")
    _, etype, data = gate.scan("main-out", SUPERVISOR)  # egress stays free
    assert etype == "access.granted"
    gate.door_io.send("input 101 off")
    _, _, data = gate.journal.next("mode.changed")
    assert data["mode"] == "normal"
    _, etype, _ = gate.scan("main-in", STAFF)
    assert etype == "access.granted"
    gate.scan("main-out", STAFF)


def test_p19_events_command_prints_the_journal_as_envelopes(gate):
    from sitekit import gatekeeper
    import json
    r = gatekeeper("events", "--config", str(gate.site.config))
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in r.stdout.splitlines()]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    e = next(e for e in events if e["type"] == "access.granted")
    assert e["specversion"] == "1.0" and e["source"] == "acs/test/gate-1" and e["time"].endswith("Z")
    assert e["data"]["holder"] and len({x["id"] for x in events}) == len(events)
    assert gatekeeper("events", "--config", str(gate.site.config), "--verify").returncode == 0


def _hours_excluding_now(tz: str = "Asia/Shanghai") -> tuple[str, str]:
    """A one-hour visiting window at least two hours away from now, not crossing midnight."""
    from datetime import datetime
    from zoneinfo import ZoneInfo
    t = datetime.now(ZoneInfo(tz))
    minute = t.hour * 60 + t.minute
    start = minute + 120 if minute + 180 <= 1440 else minute - 180
    return f"{start // 60:02d}:{start % 60:02d}", f"{(start + 60) // 60:02d}:{(start + 60) % 60:02d}"


def test_p5_visitor_outside_visiting_hours_is_refused(tmp_path, procs):
    site = make_site(tmp_path / "site")
    start, end = _hours_excluding_now()
    text = site.config.read_text().replace('start = "00:00"\nend = "24:00"', f'start = "{start}"\nend = "{end}"')
    site.config.write_text(text)
    g = staffed_gate(site, procs)
    try:
        visitor = site.visitor_pass("h-6")
        data = _denied_without_pulse(g, "main-in", visitor, 0, "outside_schedule")
        assert data["holder"] == "h-6"
        _, etype, _ = g.scan("main-in", STAFF)  # staff are not bound by visiting hours
        assert etype == "access.granted"
    finally:
        g.io.close()
