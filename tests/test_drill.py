"""P28: fire drills and the fire panel's line supervision, on the gate and its outputs directly (the daemon,
the broker and the Modbus module are in test_e2e_drill.py).

A drill is a muster exactly as in fire mode (the list, the marks, its publication), marked as a drill, with
every door, lane and rule as in normal mode. A fire line in fault keeps the last known fire state."""
from __future__ import annotations

import asyncio
import json

import pytest

from edge.config import load_config
from edge.core.gate import Gate
from edge.core.model import Mode
from edge.core.modes import ModeRefused
from edge.errors import Refused
from edge.hardware.devices import DeviceBoard, Health
from edge.hardware.fireline import FIRE_LINE, FireLine
from edge.hardware.outputs import Outputs
from edge.link.central import CentralLink
from edge.link.client import Incoming
from edge.link.restore import ModeRestore
from edge.passes.keyring import build_keyring
from edge.store import Store
from sitekit import NO_PORT, make_site
from test_e2e_turnstile import LANE
from test_model_gate import FakeModule

STAFF = "badge:04A1B2C3"
SUPERVISOR = "badge:04112233"
FIRE, KEY, TROUBLE = 100, 101, 102


class Published:
    """The link's MQTT client, recording what it publishes."""

    def __init__(self):
        self.sent: list[tuple[str, dict]] = []

    def publish(self, topic, payload, qos=0, retain=False):
        self.sent.append((topic, json.loads(payload)))
        return 0

    def ack(self, msg):
        pass

    def muster(self) -> list[dict]:
        return [b for t, b in self.sent if t.endswith("/muster")]


@pytest.fixture
def site(tmp_path):
    s = make_site(tmp_path / "site", broker_port=1)  # [mqtt]: the link handles messages; it never connects
    s.edit_door("main", fail_mode="fail_safe")
    s.edit_door("office", fail_mode="fail_safe")
    text = s.config.read_text().replace("lockdown_input = 101", f"lockdown_input = {KEY}\nfire_trouble_input = {TROUBLE}")
    s.config.write_text(text + LANE.format(port=NO_PORT))
    r = s.import_lines([
        {"credential": STAFF, "holder": "h-1", "category": "staff", "areas": ["site"]},
        {"credential": SUPERVISOR, "holder": "h-2", "category": "staff", "areas": ["site"], "roles": ["supervisor"]},
    ])
    assert r.returncode == 0, r.stderr
    return s


class Rig:
    """The gate with its outputs over a recording module, wired as the daemon wires them."""

    def __init__(self, site):
        self.cfg, base = load_config(site.config)
        self.store = Store(site.db)
        self.gate = Gate(self.cfg, self.store, build_keyring(self.cfg, base, self.store))
        self.board = DeviceBoard(self.gate.record)
        self.fire_line = FireLine(self.board)
        self.outputs = Outputs(self.cfg, self.board, self.on_inputs, self.gate.record, lambda: self.gate.modes.fire,
                               self.on_passage)
        self.module = FakeModule()
        self.io = self.outputs.modules["io1"]
        self.io.io = self.module
        self.loop = asyncio.new_event_loop()
        self.link = CentralLink(self.cfg, base, self.gate, self.board, lambda: None)
        self.client = self.link.client = Published()
        self.link._client_started = True  # publishes go to the recording client
        self.link.restore = ModeRestore(self.gate.modes, self.store, lambda body: None)  # as CentralLink.start
        self.gate.modes.listeners.append(self.link._mode_changed)
        self.run(self.io._lock_all())
        self.poll()

    def on_inputs(self, values):  # edge.daemon.Daemon._on_inputs
        self.gate.modes.inputs(self.fire_line.read(values.get("fire"), values.get("fire_trouble")),
                               values.get("lockdown"))

    async def on_passage(self, door, direction):
        pass

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    def poll(self, **inputs):
        for name, on in inputs.items():
            self.module.inputs[{"fire": FIRE, "key": KEY, "trouble": TROUBLE}[name]] = on
        self.run(self.io._poll())

    def free_outputs(self) -> dict[int, bool]:
        """Every coil on: a door unlocked, a lane let through or wheeling."""
        return {c: v for c, v in self.module.coils.items() if v}

    def journal(self, etype):
        return [(e.seq, json.loads(e.data)) for e in self.gate.journal.entries() if e.type == etype]

    def close(self):
        self.store.close()
        self.loop.close()


@pytest.fixture
def rig(site):
    r = Rig(site)
    yield r
    r.close()


def test_p28_drill_keeps_doors_locked_while_the_muster_is_tracked(rig):
    g = rig.gate
    assert g.present("main-in", "badge", STAFF).decision.granted
    rig.run(asyncio.sleep(0.4))  # the pulse (0.3 s) ends
    rig.poll()
    assert rig.free_outputs() == {}
    with pytest.raises(ModeRefused) as e:  # a guard neither starts nor ends a drill
        g.modes.request(Mode.DRILL, "g-1", "guard", "exercise", "gate")
    assert e.value.code == "mode_not_yours"
    entry = g.modes.request(Mode.DRILL, "s-1", "supervisor", "quarterly drill", "gate")
    assert json.loads(entry.data)["mode"] == "drill"
    for _ in range(3):
        rig.poll()
    assert rig.free_outputs() == {}, "a drill freed a fail-safe door or a lane"
    # the muster, exactly as in fire mode: published at once, marked as a drill, people accounted for
    muster = rig.client.muster()[-1]
    assert (muster["mode"], muster["count"], [p["holder"] for p in muster["people"]]) == ("drill", 1, ["h-1"])
    assert g.mark_safe("h-1", "g-1", "guard", None)["new"]
    assert set(g.accounted()) == {"h-1"}
    # an exit is decided as in normal times, not as an evacuation
    out = g.present("main-out", "badge", STAFF)
    assert (out.decision.granted, out.decision.reason) == (True, "ok")
    with pytest.raises(ModeRefused):
        g.modes.request(Mode.NORMAL, "g-1", "guard", "over", "gate")
    g.modes.request(Mode.NORMAL, "s-1", "supervisor", "drill over", "gate")
    assert g.accounted() == {} and rig.client.muster()[-1]["mode"] == "normal"  # the retained list says it ended
    with pytest.raises(Refused):
        g.mark_safe("h-1", "g-1", "guard", None)


def test_p28_a_real_fire_during_a_drill_frees_the_doors_and_starts_a_new_muster(rig):
    g = rig.gate
    g.present("main-in", "badge", STAFF)
    g.modes.request(Mode.DRILL, "s-1", "supervisor", "drill", "gate")
    g.mark_safe("h-1", "g-1", "guard", None)
    rig.poll(fire=True)
    assert g.mode is Mode.FIRE
    rig.poll()
    assert {0, 1, 12} <= set(rig.free_outputs()), "the fire freed neither the fail-safe doors nor the lane"
    assert g.accounted() == {}, "a mark of the drill counted in the fire"
    assert rig.client.muster()[-1]["mode"] == "fire"
    # and no drill replaces a fire, even once the panel is quiet
    rig.poll(fire=False)
    with pytest.raises(ModeRefused) as e:
        g.modes.request(Mode.DRILL, "s-1", "supervisor", "drill", "gate")
    assert (e.value.status, e.value.code) == (409, "drill_during_fire")


def test_p28_drill_never_frees_a_door_even_with_lanes(rig):
    """A lane, fail-safe doors, a request-to-exit: in a drill nothing is held free and nothing wheels; the
    same wiring in fire mode frees them (the check bites)."""
    g = rig.gate
    g.modes.request(Mode.DRILL, "s-1", "supervisor", "drill", "site")
    for contact in (True, False):  # people walking out through the doors during the drill
        rig.module.inputs[0] = rig.module.inputs[2] = contact
        rig.poll()
        assert not any(st.freed for st in rig.io.states.values())
    assert rig.free_outputs() == {}
    # a grant at the lane releases it for one pass, as in normal mode, not as a free wheel
    g.present("lane-in", "badge", STAFF)
    rig.run(rig.outputs.pulse("lane1", "in"))
    assert rig.free_outputs() == {10: True}
    rig.run(asyncio.sleep(1.1))  # the lane's pulse is 1 s
    assert rig.free_outputs() == {}
    g.modes.request(Mode.NORMAL, "s-1", "supervisor", "drill over", "site")
    g.modes.request(Mode.FIRE, "s-1", "supervisor", "fire reported", "gate")
    rig.poll()
    assert {0, 1, 12} <= set(rig.free_outputs())


def test_p28_fire_trouble_keeps_the_last_fire_state(rig):
    g = rig.gate
    assert rig.board.health[FIRE_LINE] is Health.UP
    rig.poll(trouble=True, fire=True)  # a shorted line reads as fire: not believed
    assert g.mode is Mode.NORMAL and not g.modes.fire_input
    (_, fault), = rig.journal("device.fault")
    assert (fault["device"], fault["kind"], fault["priority"], fault["fire_input"]) == (FIRE_LINE, "fire_panel",
                                                                                       "high", False)
    assert [a["type"] for a in g.alarms.open()] == ["device.fault"]  # the guards see it, high priority
    assert g.alarms.open()[0]["priority"] == "high"
    rig.poll()
    assert len(rig.journal("device.fault")) == 1  # one fault per episode
    rig.poll(trouble=False)  # the line is sound again: the panel says fire, and now it is believed
    assert [d["device"] for _, d in rig.journal("device.recovered")] == [FIRE_LINE]
    assert g.mode is Mode.FIRE
    rig.poll(trouble=True, fire=False)  # a cut line reads as no fire: the fire state is kept
    assert g.modes.fire_input
    with pytest.raises(ModeRefused) as e:
        g.modes.request(Mode.NORMAL, "s-1", "supervisor", "all clear", "gate")
    assert e.value.code == "fire_input_active"
    assert rig.journal("device.fault")[-1][1]["fire_input"] is True
    rig.poll(trouble=False)
    g.modes.request(Mode.NORMAL, "s-1", "supervisor", "all clear", "gate")
    assert g.mode is Mode.NORMAL


def test_p28_fire_trouble_input_needs_the_fire_input(site):
    from edge.config import ConfigError
    text = site.config.read_text().replace("fire_input = 100\n", "")
    site.config.write_text(text)
    with pytest.raises(ConfigError, match="fire_trouble_input"):
        load_config(site.config)


def _site_mode(rig, mode, version, actor="central"):
    body = {"mode": mode, "actor": actor, "reason": "r", "time": "2026-11-30T10:00:00Z", "version": version}
    rig.link._handle(Incoming("acs/test/mode", json.dumps(body).encode(), False, 0, 1))


def test_p28_site_drill_message_is_ordered_by_version_like_other_site_modes(rig):
    g = rig.gate
    _site_mode(rig, "drill", 5)
    assert g.mode is Mode.DRILL and g.modes.state.scope == "site"
    assert rig.client.muster()[-1]["mode"] == "drill"
    rig.poll()
    assert rig.free_outputs() == {}
    _site_mode(rig, "normal", 4)  # a replayed end of an older drill changes nothing
    _site_mode(rig, "normal", 5, actor="a-smaller")  # a tie goes to the larger actor
    assert g.mode is Mode.DRILL
    _site_mode(rig, "normal", 6)
    assert g.mode is Mode.NORMAL
    _site_mode(rig, "drill", 6)  # not above the version in force
    assert g.mode is Mode.NORMAL
    # a drill started here for the site takes one more than the highest version seen
    g.modes.request(Mode.DRILL, "s-1", "supervisor", "drill", "site")
    assert (g.mode, g.modes.state.version) == (Mode.DRILL, 7)
    # the key switch's lockdown outranks a drill, and a site drill does not end it
    rig.poll(key=True)
    assert g.mode is Mode.LOCKDOWN
    _site_mode(rig, "drill", 50)
    assert g.mode is Mode.LOCKDOWN
    # nor does any site message end a fire
    rig.poll(key=False)
    rig.poll(fire=True)
    _site_mode(rig, "drill", 60)
    assert g.mode is Mode.FIRE
    modes = [json.loads(e.data)["mode"] for e in g.journal.entries() if e.type == "mode.changed"]
    assert modes == ["drill", "normal", "drill", "lockdown", "normal", "fire"]
