"""P32 interlock (mantrap): the pure decision, the request-to-exit rule, the gate's facts and override, the config."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest

from edge.config import DoorSection
from edge.core.model import Direction, DoorView, Mode, Rejected
from edge.hardware.doors import UNLOCK_REX, DoorState, supervise
from edge.hardware.interlock import Interlock
from sitekit import gatekeeper, in_process_gate, make_site
from test_policy import CONTRACTOR, LOBBY_IN, LOBBY_OUT, NOW, OFFICE_IN, STAFF, SUPERVISOR, VISITOR, WORKSHOP_IN, run

BADGE = "badge:04A1B2C3"
LOCKED = {"interlocked": True}
HELD_VISITOR = replace(VISITOR, ref="pass:99", visit="v-9")

# (case, credential, door, facts, expected granted, expected reason)
P32_TABLE = [
    ("a clear mantrap admits", STAFF, OFFICE_IN, {}, True, "ok"),
    ("another door open refuses an entry", STAFF, OFFICE_IN, LOCKED, False, "interlock"),
    ("another door open refuses an exit too", STAFF, LOBBY_OUT, LOCKED, False, "interlock"),
    ("a signed-off visitor's exit is refused, and nothing is consumed", VISITOR, LOBBY_OUT,
     {**LOCKED, "signed_off": True}, False, "interlock"),
    ("an unknown badge is refused for what it is first", Rejected("unknown_credential", "badge:DEAD", "badge"),
     OFFICE_IN, LOCKED, False, "unknown_credential"),
    ("an unknown badge at an exit too", Rejected("unknown_credential", "badge:DEAD", "badge"), LOBBY_OUT, LOCKED,
     False, "unknown_credential"),
    ("a malformed record at an exit", replace(STAFF, category="salesman"), LOBBY_OUT, LOCKED, False, "malformed"),
    ("a consumed pass at an exit is pass_consumed", VISITOR, LOBBY_OUT, {**LOCKED, "consumed": True}, False,
     "pass_consumed"),
    ("a held exit stays held (P9), not interlock-refused", HELD_VISITOR, LOBBY_OUT, LOCKED, False,
     "host_signoff_missing"),
    ("a visitor card's exit stays held (P27)", replace(STAFF, category="visitor", temporary=True), LOBBY_OUT,
     {**LOCKED, "signed_off": True},
     False, "card_return_required"),
    ("blocklisted first", STAFF, OFFICE_IN, {**LOCKED, "blocklisted": True}, False, "blocklisted"),
    ("a door outside the credential first", VISITOR, WORKSHOP_IN, LOCKED, False, "area_not_permitted"),
    ("hard anti-passback first", VISITOR, LOBBY_IN, {**LOCKED, "presence": "site/lobby"}, False, "antipassback"),
    ("escort first", CONTRACTOR, replace(WORKSHOP_IN, area="site/production"), LOCKED, False, "escort_required"),
    ("a lockdown refuses as lockdown first", STAFF, OFFICE_IN, {**LOCKED, "mode": Mode.LOCKDOWN}, False, "lockdown"),
    ("a lockdown changes nothing for a supervisor", SUPERVISOR, OFFICE_IN, {**LOCKED, "mode": Mode.LOCKDOWN}, False,
     "interlock"),
    ("fire mode lifts it for an entry", STAFF, OFFICE_IN, {**LOCKED, "mode": Mode.FIRE}, True, "ok"),
    ("fire mode lifts it for an exit", STAFF, LOBBY_OUT, {**LOCKED, "mode": Mode.FIRE}, True, "fire_mode"),
    ("a drill keeps it at an entry", STAFF, OFFICE_IN, {**LOCKED, "mode": Mode.DRILL}, False, "interlock"),
    ("a drill keeps it at an exit", STAFF, LOBBY_OUT, {**LOCKED, "mode": Mode.DRILL}, False, "interlock"),
]


@pytest.mark.parametrize("case,cred,door,facts,granted,reason", P32_TABLE, ids=[r[0] for r in P32_TABLE])
def test_p32_interlock_decision(case, cred, door, facts, granted, reason):
    d = run(cred, door, NOW, **facts)
    assert (d.granted, d.reason) == (granted, reason), case
    assert not d.consumes or not facts.get("interlocked")  # a refused exit consumes nothing


# -- the request-to-exit button (edge/hardware/doors.py) ------------------------------------------------------
DOOR = DoorSection(name="inner", area="site/office", io="io1", lock_coil=1, contact_input=2, rex_input=3,
                   pulse_s=3, held_open_s=30, interlock="trap")


def _door() -> DoorState:
    d = DoorState(DOOR)
    supervise(d, False, False, 0.0, False)  # first read: closed
    return d


def test_p32_request_to_exit_unlocks_nothing_while_the_mantrap_is_not_clear():
    d = _door()
    s = supervise(d, False, True, 10.0, False, interlocked=True)
    assert s.actions == [] and d.authorized_until == 0.0
    s = supervise(d, True, True, 10.5, False, interlocked=True)  # pushed open anyway: a forced door
    assert [e for e, _ in s.events] == ["door.forced"]


def test_p32_request_to_exit_pressed_again_once_the_mantrap_is_clear_unlocks():
    d = _door()
    supervise(d, False, True, 10.0, False, interlocked=True)
    supervise(d, False, False, 10.2, False, interlocked=False)  # let go
    s = supervise(d, False, True, 10.4, False, interlocked=False)
    assert s.actions == [UNLOCK_REX]


def test_p32_a_freed_door_in_fire_mode_ignores_the_interlock():
    d = DoorState(DOOR.model_copy(update={"fail_mode": "fail_safe"}))
    supervise(d, False, False, 0.0, True)  # freed
    s = supervise(d, True, True, 1.0, True, interlocked=True)
    assert [e for e, _ in s.events] == ["door.opened"]


# -- the gate: facts gathered through the hardware seam, the claim at grant time, the override ---------------
class Mantrap:
    """The two doors as the hardware layer reports them: contact states and unlocks, as DoorStates."""

    def __init__(self, doors: list[DoorSection]):
        self.lock = Interlock(doors)
        self.states = {d.name: DoorState(d) for d in doors}
        for name, st in self.states.items():
            supervise(st, False, False, 0.0, False)  # read closed
            self.lock.busy[name] = lambda now, st=st: st.open is not False or now < st.authorized_until
            self.lock.claims[name] = lambda now, st=st: st.authorize(now)

    def set_open(self, name: str, is_open: bool, now: float = 1.0) -> None:
        supervise(self.states[name], is_open, False, now, False)


@pytest.fixture
def trap(tmp_path):
    site = make_site(tmp_path / "site")
    site.edit_door("main", interlock="lobby-trap")
    site.edit_door("office", interlock="lobby-trap")
    assert site.import_lines([
        {"credential": "badge:04A1B2C3", "holder": "h-1", "category": "staff", "areas": ["site"]},
    ]).returncode == 0
    with in_process_gate(site) as g:
        m = Mantrap([d for d in g.cfg.doors])
        clock = [100.0]
        g.interlock = lambda door: m.lock.blocking(door, clock[0])
        g.interlock_claim = lambda door: m.lock.claim(door, clock[0])
        yield g, m, clock


def test_p32_gate_refuses_at_one_door_while_the_other_reads_open(trap):
    g, m, clock = trap
    m.set_open("main", True)
    out = g.present("office-in", "badge", BADGE)
    assert (out.decision.granted, out.decision.reason) == (False, "interlock")
    assert [e.type for e in out.entries] == ["access.denied"] and json.loads(out.entries[0].data)["reason"] == "interlock"
    assert m.states["office"].authorized_until == 0.0  # a refusal claims nothing
    m.set_open("main", False, 2.0)
    out = g.present("office-in", "badge", BADGE)
    assert out.decision.granted


def test_p32_two_grants_in_one_instant_the_second_is_refused(trap):
    g, m, clock = trap
    first = g.present("main-in", "badge", BADGE)
    second = g.present("office-in", "badge", BADGE)  # no coil written yet: the first's claim counts
    assert first.decision.granted and (second.decision.granted, second.decision.reason) == (False, "interlock")
    clock[0] += 10  # main's pulse ended unopened
    assert g.present("office-in", "badge", BADGE).decision.granted


def test_p32_the_guard_override_opens_and_raises_interlock_bypassed(trap):
    g, m, clock = trap
    assert g.interlock_override("office", "p-guard", "guard") is None  # clear: nothing bypassed
    clock[0] += 10
    m.set_open("main", True)
    e = g.interlock_override("office", "p-guard", "guard")
    assert e.type == "alarm.raised" and json.loads(e.data) == {"alarm": "interlock_bypassed", "priority": "high",
                                                   "door": "office", "actor": "p-guard", "actor_role": "guard",
                                                   "open_doors": ["main"]}
    m.set_open("main", False, 2.0)
    # the override's opening counts: main is now held shut by office's unlock
    assert (g.present("main-in", "badge", BADGE).decision.reason) == "interlock"


def test_p32_fire_mode_lifts_the_interlock_a_drill_does_not(trap):
    g, m, clock = trap
    m.set_open("main", True)
    g.modes.request(Mode.DRILL, "p-sup", "supervisor", "drill", "gate")
    assert g.present("office-in", "badge", BADGE).decision.reason == "interlock"
    g.modes.request(Mode.NORMAL, "p-sup", "supervisor", "drill over", "gate")
    g.modes.inputs(True, None)  # the fire panel
    assert g.mode is Mode.FIRE
    out = g.present("office-in", "badge", BADGE)
    assert out.decision.granted
    assert g.interlock_override("main", "p-guard", "guard") is None  # nothing bypassed in a fire


def test_p32_a_door_in_no_group_is_never_interlocked():
    lock = Interlock([DOOR, DOOR.model_copy(update={"name": "other", "lock_coil": 5, "contact_input": 6}),
                      DOOR.model_copy(update={"name": "free", "interlock": None})])
    lock.busy.update({"inner": lambda now: True, "other": lambda now: True})
    assert lock.blocking("free") == () and lock.blocking("inner") == ("other",)


# -- the config: `gatekeeper run --check` ---------------------------------------------------------------------
@pytest.mark.parametrize("office, cut, expected", [
    (False, "", "doors[0].interlock: interlock group 'lobby-trap' (P32) has one door"),
    (True, "contact_input = 2\n", "a door of interlock group 'lobby-trap' (P32) is a door with contact_input"),
])
def test_p32_check_refuses_a_group_that_cannot_work(tmp_path, office, cut, expected):
    site = make_site(tmp_path / "site")
    site.edit_door("main", interlock="lobby-trap")
    if office:
        site.edit_door("office", interlock="lobby-trap")
    text = site.config.read_text()
    assert cut in text
    site.config.write_text(text.replace(cut, "", 1))
    r = gatekeeper("run", "--config", str(site.config), "--check")
    assert r.returncode == 2 and expected in r.stderr, r.stderr


def test_p32_check_accepts_a_mantrap_of_this_gate(tmp_path):
    site = make_site(tmp_path / "site")
    site.edit_door("main", interlock="lobby-trap")
    site.edit_door("office", interlock="lobby-trap")
    r = gatekeeper("run", "--config", str(site.config), "--check")
    assert r.returncode == 0, r.stderr


# -- the hardware layer: what makes a door of a mantrap "busy" (edge/hardware/outputs.py) ---------------------
@pytest.fixture
def outputs(tmp_path):
    import asyncio

    from edge.config import load_config
    from edge.hardware.devices import DeviceBoard
    from edge.hardware.outputs import Outputs
    from test_model_gate import FakeModule
    site = make_site(tmp_path / "site")
    site.edit_door("main", interlock="lobby-trap", pulse_s=0.05)
    site.edit_door("office", interlock="lobby-trap", pulse_s=0.05)
    cfg, _ = load_config(site.config)
    loop = asyncio.new_event_loop()
    outs = Outputs(cfg, DeviceBoard(lambda *a: None), lambda v: None)
    mod = outs.modules["io1"]
    mod.io = FakeModule()
    yield outs, mod, loop.run_until_complete
    loop.close()


def test_p32_a_door_not_yet_read_or_on_a_silent_module_keeps_the_other_shut(outputs):
    outs, mod, run = outputs
    assert outs.interlock.blocking("office") == ("main",)  # never read: not known closed
    run(mod._poll())
    assert outs.interlock.blocking("office") == ()
    mod.io.connected = False
    assert outs.interlock.blocking("office") == ("main",)


def test_p32_a_decided_unlock_counts_until_its_pulse_and_the_pulse_until_the_relock(outputs):
    import asyncio
    outs, mod, run = outputs
    run(mod._poll())
    outs.interlock.claim("main")
    assert outs.interlock.blocking("office") == ("main",)  # decided, nothing driven yet
    run(outs.pulse("main"))
    assert mod.io.coils[0] and outs.interlock.blocking("office") == ("main",)
    run(asyncio.sleep(0.15))  # the pulse ends unopened: relocked
    assert not mod.io.coils[0] and outs.interlock.blocking("office") == ()


def test_p32_an_unlock_that_cannot_be_driven_holds_nothing_shut(outputs):
    outs, mod, run = outputs
    run(mod._poll())
    outs.interlock.claim("main")
    mod.io.connected = False
    assert not run(outs.pulse("main"))
    mod.io.connected = True
    assert outs.interlock.blocking("office") == ()
