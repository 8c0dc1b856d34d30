"""P32 end to end: a two-door mantrap (main, the lobby's door, and office behind it) on the Modbus door I/O
simulator, the daemon, a broker and the local API; the locks read back over Modbus, the central system's view
over MQTT."""
from __future__ import annotations

import json

import httpx
import pytest
from pymodbus.client import ModbusTcpClient

from demo.procs import listen_port
from mqttkit import Peer
from sitekit import make_site, wait_until
from test_e2e_gate import STAFF, STAFF_AND_SUPERVISOR, Gate

pytestmark = pytest.mark.e2e

MAIN, OFFICE = 0, 1  # lock coils
OFFICE_REX = 3


class Mantrap(Gate):
    def start_hardware(self):
        """As Gate's, with doors that stay open 3 s when walked through: time to badge at the other door."""
        self.door_io = self.procs.start("door_io", "-m", "simulators.door_io", "--site", str(self.site.config),
                                        "--module", "io1", "--port", "0", "--open-s", "3", stdin=True)
        self.site.set_io_port(listen_port(self.door_io.wait_for("door_io listening")))
        for name in list(self.site.reader_ports):
            self.start_reader(name)
        self.io = ModbusTcpClient("127.0.0.1", port=self.site.io_port, timeout=10)
        assert self.io.connect()


@pytest.fixture
def gate(tmp_path, procs, broker):
    site = make_site(tmp_path / "site", broker_port=broker.port, api=True)
    site.edit_door("main", interlock="lobby-trap", pulse_s=5, fail_mode="fail_safe")
    site.edit_door("office", interlock="lobby-trap", pulse_s=5, fail_mode="fail_safe", rex_input=OFFICE_REX)
    assert site.import_lines(STAFF_AND_SUPERVISOR).returncode == 0
    g = Mantrap(site, procs)
    g.start_hardware()
    g.start_daemon()
    g.daemon.wait_for("io module io1 ready", already=True)  # both contacts read closed
    site.wait_api()
    g.watcher = Peer(broker.port, "acs/test/gate-1/events/#")
    yield g
    g.watcher.close()
    g.io.close()


def _prop_open(g, door: str) -> None:
    g.door_io.send(f"open {door}")
    g.journal.next(("door.forced", "door.opened"), door=door)  # the poll has read it open


def _shut(g, door: str) -> None:
    g.door_io.send(f"close {door}")
    g.journal.next("door.closed", door=door)


def test_p32_a_badge_at_one_door_while_the_other_reads_open_is_refused_and_its_coil_never_energized(gate):
    g = gate
    _prop_open(g, "main")
    _, etype, data = g.scan("office-in", STAFF)
    assert (etype, data["reason"], data["door"]) == ("access.denied", "interlock", "office")
    _prop_open(g, "office")  # either direction: now the one at main's exit reader is refused too
    _shut(g, "main")
    _, etype, data = g.scan("main-out", STAFF)
    assert (etype, data["reason"]) == ("access.denied", "interlock")
    assert g.unlocks(OFFICE) == 0 and g.unlocks(MAIN) == 0 and g.locked(OFFICE) and g.locked(MAIN)
    _shut(g, "office")
    _, etype, _ = g.scan("office-in", STAFF)  # the mantrap is clear: it opens
    assert etype == "access.granted"
    wait_until(lambda: g.unlocks(OFFICE) == 1, what="the office door unlocked once the mantrap was clear")
    assert g.unlocks(MAIN) == 0


def test_p32_someone_walks_through_the_mantrap_one_door_at_a_time(gate):
    g = gate
    g.door_io.send("mantrap main office")
    g.door_io.wait_for("door_io mantrap waiting at main")
    _, etype, _ = g.scan("main-in", STAFF)
    assert etype == "access.granted"
    g.journal.next("door.opened", door="main")
    _, etype, data = g.scan("office-in", STAFF)  # main still open behind them
    assert (etype, data["reason"]) == ("access.denied", "interlock")
    assert g.unlocks(OFFICE) == 0
    g.journal.next("door.closed", door="main")
    wait_until(lambda: g.locked(MAIN), what="main relocked as it shut")
    _, etype, _ = g.scan("office-in", STAFF)
    assert etype == "access.granted"
    g.journal.next("door.opened", door="office")
    g.door_io.wait_for("door_io mantrap done: main then office")
    assert g.unlocks(MAIN) == 1 and g.unlocks(OFFICE) == 1
    assert not [d for _, t, d in g.journal.rows() if t == "door.forced"]


def test_p32_request_to_exit_unlocks_nothing_while_the_other_door_is_open(gate):
    g = gate
    _prop_open(g, "main")
    g.door_io.send(f"input {OFFICE_REX} on")
    g.daemon.wait_for("door office: request to exit ignored")
    g.door_io.send(f"input {OFFICE_REX} off")
    assert g.unlocks(OFFICE) == 0
    _shut(g, "main")
    g.door_io.send(f"input {OFFICE_REX} on")  # pressed again, the mantrap clear
    wait_until(lambda: g.unlocks(OFFICE) == 1, what="the button unlocks once main is shut")
    g.door_io.send(f"input {OFFICE_REX} off")


def test_p32_the_guard_override_opens_and_raises_interlock_bypassed(gate):
    g = gate
    _prop_open(g, "main")
    token = g.site.token("guard", "p-guard")
    r = httpx.post(g.site.api_url + "/doors/office/open", json={"reason": "stretcher through the mantrap"},
                   headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert r.status_code == 200 and r.json() == {"door": "office", "opened": True}, r.text
    wait_until(lambda: g.unlocks(OFFICE) == 1, what="the override unlocked office")
    _, _, data = g.journal.next("alarm.raised", alarm="interlock_bypassed")
    assert data == {"alarm": "interlock_bypassed", "priority": "high", "door": "office", "actor": "p-guard",
                    "actor_role": "guard", "open_doors": ["main"]}

    def published(m):
        for t, p, _ in m:
            if t.endswith("/events/alarm.raised") and json.loads(p)["data"].get("alarm") == "interlock_bypassed":
                return json.loads(p)
        return None
    e = g.watcher.wait(published, what="interlock_bypassed published to the central system")
    assert e["data"]["open_doors"] == ["main"]


def test_p32_fire_mode_frees_both_doors_of_the_mantrap(gate):
    g = gate
    _prop_open(g, "main")
    g.door_io.send("fire on")
    _, _, mode = g.journal.next("mode.changed")
    assert mode["mode"] == "fire"
    wait_until(lambda: not g.locked(MAIN) and not g.locked(OFFICE), what="both doors freed at once")
    _, etype, data = g.scan("office-in", STAFF)  # the interlock is lifted: granted, nothing to unlock
    assert (etype, data["reason"]) == ("access.granted", "ok")


def test_p32_a_held_exit_stays_held_and_the_guards_release_opens_it_raising_interlock_bypassed(gate):
    g = gate
    _prop_open(g, "office")
    text = g.site.visitor_pass("h-77", visit="v-77")
    _, etype, data = g.scan("main-out", text)  # P9 first: held for the host, not refused for the mantrap
    assert (etype, data["reason"]) == ("exit.held", "host_signoff_missing")
    token = g.site.token("guard", "p-guard")
    r = httpx.post(g.site.api_url + "/visits/v-77/release", json={"reason": "host confirmed by phone", "host_confirmed": True},
                   headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert r.status_code == 200 and r.json()["opened"] is True, r.text
    wait_until(lambda: g.unlocks(MAIN) == 1, what="the release unlocked main")
    _, _, data = g.journal.next("alarm.raised", alarm="interlock_bypassed")
    assert (data["door"], data["actor"], data["open_doors"]) == ("main", "p-guard", ["office"])
