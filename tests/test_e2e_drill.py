"""P28 end to end: the daemon, the Modbus door I/O simulator with the fire panel's trouble input, a broker and
the local API; the locks read back over Modbus, what the central system sees read over MQTT."""
from __future__ import annotations

import json

import httpx
import pytest

from mqttkit import Peer
from sitekit import make_site
from test_e2e_gate import STAFF, STAFF_AND_SUPERVISOR, Gate

pytestmark = pytest.mark.e2e

TROUBLE = 102


def _post(site, path: str, body: dict, token: str) -> httpx.Response:
    return httpx.post(site.api_url + path, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=10)


def _last(m, suffix: str) -> dict | None:
    bodies = [json.loads(p) for t, p, _ in m if t.endswith(suffix) and p]
    return bodies[-1] if bodies else None


def _event(m, etype: str, **match) -> dict | None:
    for t, p, _ in m:
        if t.endswith(f"/events/{etype}"):
            e = json.loads(p)
            if all(e["data"].get(k) == v for k, v in match.items()):
                return e
    return None


@pytest.fixture
def gate(tmp_path, procs, broker):
    site = make_site(tmp_path / "site", broker_port=broker.port, api=True)
    site.edit_door("main", fail_mode="fail_safe")  # both doors would be freed by a fire: a drill frees neither
    site.edit_door("office", fail_mode="fail_safe")
    site.config.write_text(site.config.read_text().replace("lockdown_input = 101",
                                                           f"lockdown_input = 101\nfire_trouble_input = {TROUBLE}"))
    assert site.import_lines(STAFF_AND_SUPERVISOR).returncode == 0
    g = Gate(site, procs)
    g.start_hardware()  # the simulator wires the trouble input from the same config
    g.start_daemon()
    g.daemon.wait_for("io module io1 ready", already=True)
    site.wait_api()
    g.watcher = Peer(broker.port, ["acs/test/gate-1/#", "acs/test/mode"])
    yield g
    g.watcher.close()
    g.io.close()


def _poll_seen(g, door: str = "office", contact: int = 2) -> None:
    """A door contact opened and shut after an input change: the poll that saw it read every input after it."""
    g.door_io.send(f"input {contact} on")
    g.journal.next(("door.forced", "door.opened"), door=door)
    g.door_io.send(f"input {contact} off")
    g.journal.next("door.closed", door=door)


def test_p28_fire_trouble_raises_a_device_fault_and_the_fire_state_is_held(gate):
    g, w = gate, gate.watcher
    g.door_io.send("trouble on")
    _, _, fault = g.journal.next("device.fault", device="fire_line")
    assert (fault["kind"], fault["priority"]) == ("fire_panel", "high")
    w.wait(lambda m: _event(m, "device.fault", device="fire_line"), what="the fire line's fault over MQTT")
    w.wait(lambda m: (s := _last(m, "/status")) and s["devices"].get("fire_line") == "down", what="status: down")
    # the panel's fire input goes on while its line is in fault: not believed, nothing freed
    g.door_io.send("fire on")
    _poll_seen(g)
    assert not [d for _, t, d in g.journal.rows() if t == "mode.changed"]
    assert g.locked(0) and g.locked(1) and g.unlocks(0) == 0 and g.unlocks(1) == 0
    g.door_io.send("fire off")
    g.door_io.send("trouble off")
    g.journal.next("device.recovered", device="fire_line")
    w.wait(lambda m: _event(m, "device.recovered", device="fire_line"), what="the recovery over MQTT")
    _poll_seen(g)
    assert not [d for _, t, d in g.journal.rows() if t == "mode.changed"]
    # the line is sound: the panel is believed again
    g.door_io.send("fire on")
    g.journal.next("mode.changed", mode="fire")


def test_p28_drill_over_the_api_publishes_a_drill_muster_and_no_lock_moves(gate):
    g, w, site = gate, gate.watcher, gate.site
    supervisor, guard = site.token("supervisor"), site.token("guard")
    _, etype, _ = g.scan("main-in", STAFF)
    assert etype == "access.granted"
    g.settle()
    before = g.unlocks(0), g.unlocks(1)
    r = _post(site, "/mode", {"mode": "drill", "scope": "site", "reason": "quarterly drill"}, guard)
    assert (r.status_code, r.json()["code"]) == (403, "mode_not_yours")
    r = _post(site, "/mode", {"mode": "drill", "scope": "site", "reason": "quarterly drill"}, supervisor)
    assert r.status_code == 200 and r.json()["mode"] == "drill", r.text
    _, _, changed = g.journal.next("mode.changed", mode="drill")
    assert (changed["scope"], changed["actor_role"]) == ("site", "supervisor")
    muster = w.wait(lambda m: (b := _last(m, "/gate-1/muster")) and b["mode"] == "drill" and b,
                    what="the muster, marked as a drill")
    assert [p["holder"] for p in muster["people"]] == ["h-1"] and muster["count"] == 1
    site_mode = w.wait(lambda m: _last(m, "acs/test/mode"), what="the site's drill")
    assert (site_mode["mode"], site_mode["version"]) == ("drill", changed["version"])
    w.wait(lambda m: (s := _last(m, "/status")) and s["mode"] == "drill", what="status: drill")
    # tracked as in a fire: the guard marks people safe
    r = _post(site, "/muster/h-1/safe", {}, guard)
    assert r.status_code == 200, r.text
    assert _post(site, "/muster/h-1/safe", {}, guard).json()["new"] is False
    # people walk out during the drill: every lock stays locked, read back over Modbus
    for door, contact in (("main", 0), ("office", 2)):
        _poll_seen(g, door, contact)
    assert g.locked(0) and g.locked(1)
    assert (g.unlocks(0), g.unlocks(1)) == before, "a lock was released during the drill"
    # only a supervisor ends it; the retained muster then says it is over
    r = _post(site, "/mode", {"mode": "normal", "scope": "site", "reason": "drill over"}, guard)
    assert r.status_code == 403
    r = _post(site, "/mode", {"mode": "normal", "scope": "site", "reason": "drill over"}, supervisor)
    assert r.status_code == 200 and r.json()["mode"] == "normal"
    w.wait(lambda m: (b := _last(m, "/gate-1/muster")) and b["mode"] == "normal", what="the muster ended")
    assert (g.unlocks(0), g.unlocks(1)) == before
