"""P21 guard tours: the pure logic (edge/core/tours.py), table-driven, and the gate's tour desk over a real
store (edge/desks/tours.py): who counts, what is journaled, what survives a restart, a supervisor's change."""
from __future__ import annotations

import json
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from edge.core.tours import Night, Route, RoundState, tap, tick, view

UTC = ZoneInfo("UTC")
SH = ZoneInfo("Asia/Shanghai")
ROUTE = Route("north", ("cp-1", "cp-2", "cp-3"), "22:00", "06:00", 6, 15, 45)
NIGHT = date(2026, 11, 30)
T0 = datetime(2026, 11, 30, 22, 0, tzinfo=UTC).timestamp()  # the first round's time
MIN = 60.0


def _fresh() -> Night:
    return Night.plan(ROUTE, NIGHT, UTC)


def _walk(night: Night, taps: list[tuple[str, float]]) -> list[tuple[str, dict]]:
    out = []
    for cp, t in taps:
        out += tap(night, ROUTE, cp, "h-guard", "badge:0A0B0C0D", t)
    return out


def _alarms(events) -> list[tuple[str, str]]:
    return [(d["alarm"], d["checkpoint"]) for t, d in events if t == "alarm.raised"]


def test_p21_default_night_is_six_rounds_from_22_to_06_in_the_site_zone():
    route = Route("north", ("cp-1",))
    times = route.times(NIGHT, SH)
    local = [datetime.fromtimestamp(t, SH).strftime("%H:%M") for t in times]
    assert local == ["22:00", "23:20", "00:40", "02:00", "03:20", "04:40"]
    assert datetime.fromtimestamp(times[2], SH).date() == date(2026, 12, 1)  # past midnight: the next day


@pytest.mark.parametrize("clock, night", [
    ("2026-11-30T12:00", "2026-11-30"),  # the day before: tonight is the coming night
    ("2026-11-30T23:00", "2026-11-30"),  # under way
    ("2026-12-01T05:30", "2026-11-30"),  # its last round (04:40) may still end (window 15 + limit 45)
    ("2026-12-01T05:41", "2026-12-01"),  # all over: the next night
])
def test_p21_tonight_is_the_night_under_way_else_the_next(clock, night):
    now = datetime.fromisoformat(clock).replace(tzinfo=UTC).timestamp()
    assert ROUTE.night_of(now, UTC).isoformat() == night


# (taps as (checkpoint, minutes after the round's time), the round's state after, the alarms raised, the types)
WALKS = [
    ("on time, in order", [("cp-1", 2), ("cp-2", 10), ("cp-3", 20)], RoundState.COMPLETED, [],
     ["tour.started", "tour.checkpoint", "tour.checkpoint", "tour.checkpoint", "tour.completed"]),
    ("early within the window", [("cp-1", -10), ("cp-2", 0), ("cp-3", 5)], RoundState.COMPLETED, [], None),
    ("one skipped", [("cp-1", 2), ("cp-3", 10)], RoundState.RUNNING, [("tour_out_of_order", "cp-3")], None),
    ("out of order, then back", [("cp-1", 2), ("cp-3", 5), ("cp-2", 8)], RoundState.COMPLETED,
     [("tour_out_of_order", "cp-3"), ("tour_out_of_order", "cp-2")], None),
    ("started at the wrong checkpoint", [("cp-2", 1), ("cp-3", 5)], RoundState.RUNNING,
     [("tour_out_of_order", "cp-2")], None),
    ("started at the wrong checkpoint, then the first", [("cp-2", 1), ("cp-3", 5), ("cp-1", 9)], RoundState.COMPLETED,
     [("tour_out_of_order", "cp-2"), ("tour_out_of_order", "cp-1")], None),
    ("a repeated tap is harmless", [("cp-1", 1), ("cp-1", 2), ("cp-2", 3)], RoundState.RUNNING, [],
     ["tour.started", "tour.checkpoint", "tour.checkpoint", "tour.checkpoint"]),
    ("outside every window counts for no round", [("cp-1", 16), ("cp-1", -16)], RoundState.PLANNED, [], []),
]


@pytest.mark.parametrize("name, walk, state, alarms, types", WALKS, ids=[w[0] for w in WALKS])
def test_p21_a_round_walked(name, walk, state, alarms, types):
    night = _fresh()
    events = _walk(night, [(cp, T0 + m * MIN) for cp, m in walk])
    assert night.rounds[0].state is state
    assert _alarms(events) == alarms
    if types is not None:
        assert [t for t, _ in events] == types
    for t, d in events:  # every event names the tour and the round it counted for
        assert (d["tour"], d["round"]) == ("north", 1), (t, d)


def test_p21_a_skip_names_what_was_expected_and_what_was_passed():
    night = _fresh()
    events = _walk(night, [("cp-1", T0), ("cp-3", T0 + 5 * MIN)])
    alarm = next(d for t, d in events if t == "alarm.raised")
    assert alarm["expected_checkpoint"] == "cp-2" and alarm["skipped"] == ["cp-2"]
    assert not any(t == "tour.completed" for t, _ in events)  # not every checkpoint was tapped
    assert _alarms(tick(night, ROUTE, T0 + 46 * MIN)) == [("tour_late", "cp-2")]  # awaited at the one passed over
    done = _walk(night, [("cp-2", T0 + 50 * MIN)])
    assert [(d["late"], d["out_of_order"]) for t, d in done if t == "tour.completed"] == [(True, 2)]


# (what happened by when, the minutes after the round's time the clock is looked at, the alarms)
TICKS = [
    ("nobody came", [], 15.5, [("tour_missed", "cp-1")], RoundState.MISSED),
    ("nobody came, window still open", [], 14.5, [], RoundState.PLANNED),
    ("over its limit", [("cp-1", 5), ("cp-2", 20)], 5 + 45.5, [("tour_late", "cp-3")], RoundState.RUNNING),
    ("within its limit", [("cp-1", 5), ("cp-2", 20)], 5 + 44.5, [], RoundState.RUNNING),
    ("done before its limit", [("cp-1", 5), ("cp-2", 20), ("cp-3", 40)], 5 + 46, [], RoundState.COMPLETED),
]


@pytest.mark.parametrize("name, walk, at, alarms, state", TICKS, ids=[t[0] for t in TICKS])
def test_p21_time_alone(name, walk, at, alarms, state):
    night = _fresh()
    _walk(night, [(cp, T0 + m * MIN) for cp, m in walk])
    events = tick(night, ROUTE, T0 + at * MIN)
    assert _alarms(events) == alarms
    assert night.rounds[0].state is state
    assert tick(night, ROUTE, T0 + at * MIN + 1) == []  # raised once


def test_p21_a_late_round_still_completes_and_says_so():
    night = _fresh()
    _walk(night, [("cp-1", T0), ("cp-2", T0 + 10 * MIN)])
    assert _alarms(tick(night, ROUTE, T0 + 46 * MIN)) == [("tour_late", "cp-3")]
    done = _walk(night, [("cp-3", T0 + 50 * MIN)])
    assert [d["late"] for t, d in done if t == "tour.completed"] == [True]


def test_p21_the_next_round_starting_leaves_an_unfinished_one_incomplete():
    night = _fresh()
    _walk(night, [("cp-1", T0), ("cp-2", T0 + 10 * MIN)])
    second = night.rounds[1].due
    events = _walk(night, [("cp-1", second)])
    assert night.rounds[0].state is RoundState.INCOMPLETE and night.rounds[1].state is RoundState.RUNNING
    assert [d["round"] for t, d in events if t == "tour.started"] == [2]


def test_p21_a_night_survives_its_json_and_shows_a_timeline():
    night = _fresh()
    _walk(night, [("cp-1", T0), ("cp-3", T0 + 5 * MIN), ("cp-2", T0 + 7 * MIN)])
    again = Night.from_json(json.loads(json.dumps(night.to_json())))
    assert again == night
    v = view(again, ROUTE, T0 + 6 * MIN)
    first = v["rounds"][0]
    assert first["state"] == "completed" and [e["order"] for e in first["timeline"]] == ["in_order", "out_of_order",
                                                                                  "out_of_order"]
    assert v["rounds"][1]["state"] == "planned" and len(v["rounds"]) == 6


def test_p21_rounds_over_before_tracking_began_are_untracked_not_missed():
    night = Night.plan(ROUTE, NIGHT, UTC, since=T0 + 30 * MIN)  # a first start at 22:30: round 1 is over
    assert [r.state for r in night.rounds[:3]] == [RoundState.UNTRACKED, RoundState.PLANNED, RoundState.PLANNED]
    assert _alarms(tick(night, ROUTE, T0 + 30 * MIN)) == []


def test_p21_a_route_change_replans_only_rounds_not_begun():
    night = _fresh()
    _walk(night, [("cp-1", T0)])
    new = Route("north", ("cp-3", "cp-1"), "23:00", "06:00", 6, 15, 30)
    night.replan(new, UTC, T0 + 5 * MIN)
    assert night.rounds[0].checkpoints == ("cp-1", "cp-2", "cp-3") and night.rounds[0].state is RoundState.RUNNING
    later = night.rounds[1:]
    assert later and all(r.checkpoints == ("cp-3", "cp-1") for r in later)
    assert datetime.fromtimestamp(later[0].due, UTC).strftime("%H:%M") == "23:00"
    assert [r.index for r in night.rounds] == list(range(1, len(night.rounds) + 1))


# ---------------------------------------------------------------- the gate's tour desk, over a real store

from edge.config import ConfigError, load_config  # noqa: E402
from edge.core.gate import Gate  # noqa: E402
from edge.desks.tours import Tours  # noqa: E402
from edge.errors import Refused  # noqa: E402
from edge.passes.keyring import build_keyring  # noqa: E402
from edge.store import Store  # noqa: E402
from sitekit import make_site  # noqa: E402

GUARD, CLERK, BANNED_GUARD = "badge:0A0B0C0D", "badge:0C1E2C0D", "badge:0BADBAD0"
TOURS_TOML = """
[[readers]]
name = "cp-{n}"
url = "socket://127.0.0.1:1"
checkpoint = true
"""


@pytest.fixture
def site(tmp_path):
    s = make_site(tmp_path / "site")
    text = s.config.read_text().replace('timezone = "Asia/Shanghai"', 'timezone = "UTC"')
    text += "".join(TOURS_TOML.format(n=n) for n in (1, 2, 3))
    text += '\n[[tours]]\nname = "north"\ncheckpoints = ["cp-1", "cp-2", "cp-3"]\n'
    s.config.write_text(text)
    r = s.import_lines([
        {"credential": GUARD, "holder": "h-guard", "category": "staff", "areas": ["site"], "roles": ["guard"]},
        {"credential": CLERK, "holder": "h-clerk", "category": "staff", "areas": ["site"]},
        {"credential": BANNED_GUARD, "holder": "h-gone", "category": "staff", "areas": ["site"], "roles": ["guard"]},
        {"revoke": {"credential": BANNED_GUARD}},
    ])
    assert r.returncode == 0, r.stderr
    return s


def _open(site):
    cfg, base = load_config(site.config)
    store = Store(site.db)
    gate = Gate(cfg, store, build_keyring(cfg, base, store), clock=lambda: T0)
    return store, gate, Tours(cfg, gate)


@pytest.fixture
def desk(site):
    store, gate, tours = _open(site)
    yield tours
    store.close()


def _types(entries) -> list[str]:
    return [e.type for e in entries]


def test_p21_a_checkpoint_reader_is_no_door_of_the_gate(desk):
    assert not {"cp-1", "cp-2", "cp-3"} & set(desk.gate.readers)  # never decided on: no door, no presence
    assert desk.checkpoints == {"cp-1", "cp-2", "cp-3"}


@pytest.mark.parametrize("badge, reason", [
    (CLERK, "not_a_guard"),  # staff, but not a guard: P21 counts guards only
    (BANNED_GUARD, "revoked"),
    ("badge:DEADBEEF01", "unknown_credential"),
])
def test_p21_only_a_guard_counts(desk, badge, reason):
    counted, entries = desk.tap("cp-1", "badge", badge, T0)
    assert not counted and _types(entries) == ["tour.checkpoint"]
    data = json.loads(entries[0].data)
    assert (data["counted"], data["reason"], data["tour"]) == (False, reason, None)
    assert desk.tonight(T0)[0]["rounds"][0]["state"] == "open"  # the round did not start
    assert desk.store.conn.execute("SELECT COUNT(*) FROM presence").fetchone()[0] == 0


def test_p21_a_guard_outside_any_round_is_journaled_not_counted(desk):
    counted, entries = desk.tap("cp-1", "badge", GUARD, T0 - 3 * 3600)
    assert not counted and json.loads(entries[0].data)["reason"] == "no_round"


def test_p21_a_round_resumes_where_it_was_after_a_restart(site):
    store, gate, tours = _open(site)
    counted, entries = tours.tap("cp-1", "badge", GUARD, T0 + MIN)
    assert counted and _types(entries) == ["tour.started", "tour.checkpoint"]
    store.close()
    store, gate, tours = _open(site)  # the daemon restarted
    try:
        _, entries = tours.tap("cp-2", "badge", GUARD, T0 + 5 * MIN)
        _, entries2 = tours.tap("cp-3", "badge", GUARD, T0 + 9 * MIN)
        assert _types(entries) == ["tour.checkpoint"] and _types(entries2) == ["tour.checkpoint", "tour.completed"]
    finally:
        store.close()


def test_p21_the_clock_raises_tour_missed_once_journaled(desk):
    assert desk.tick(T0) == []  # tracking the night from before its first round
    entries = desk.tick(T0 + 16 * MIN)
    assert [(e.type, json.loads(e.data)["alarm"]) for e in entries] == [("alarm.raised", "tour_missed")]
    assert desk.tick(T0 + 17 * MIN) == []
    # an alarm a guard must acknowledge (P17): the alarms table takes it from the journal
    assert [a["data"]["alarm"] for a in desk.gate.alarms.open()] == ["tour_missed"]


def test_p21_a_route_change_is_journaled_with_the_supervisor_and_outlives_a_restart(site):
    store, gate, tours = _open(site)
    try:
        with pytest.raises(Refused) as e:
            tours.change("north", ["cp-1", "main-in"], "22:00", 30, "works", "s-1", "supervisor", T0)
        assert (e.value.status, e.value.field) == (422, "checkpoints")
        with pytest.raises(Refused) as e:
            tours.change("south", ["cp-1"], "22:00", 30, "works", "s-1", "supervisor", T0)
        assert e.value.status == 404
        out = tours.change("north", ["cp-3", "cp-1"], "23:00", 30, "cp-2 blocked", "s-1", "supervisor", T0)
        assert out["checkpoints"] == ["cp-3", "cp-1"] and out["event_seq"]
        row = store.conn.execute("SELECT type, data FROM journal WHERE seq=?", (out["event_seq"],)).fetchone()
        assert row[0] == "tour.changed"
        data = json.loads(row[1])
        assert (data["actor"], data["actor_role"], data["reason"]) == ("s-1", "supervisor", "cp-2 blocked")
        assert data["previous"] == {"checkpoints": ["cp-1", "cp-2", "cp-3"], "start": "22:00", "limit_min": 45}
    finally:
        store.close()
    store, gate, tours = _open(site)
    try:
        assert tours.routes["north"].checkpoints == ("cp-3", "cp-1")
        assert tours.tonight(T0)[0]["rounds"][0]["checkpoints"] == ["cp-3", "cp-1"]
    finally:
        store.close()
    # the config's own route changed since: the config is the route again
    site.config.write_text(site.config.read_text().replace('checkpoints = ["cp-1", "cp-2", "cp-3"]',
                                                           'checkpoints = ["cp-2", "cp-3"]'))
    store, gate, tours = _open(site)
    try:
        assert tours.routes["north"].checkpoints == ("cp-2", "cp-3")
    finally:
        store.close()


@pytest.mark.parametrize("edit, problem", [
    (lambda t: t.replace('checkpoints = ["cp-1", "cp-2", "cp-3"]', 'checkpoints = ["cp-1", "main-in"]'),
     "'main-in' is a reader without checkpoint = true"),
    (lambda t: t.replace('checkpoints = ["cp-1", "cp-2", "cp-3"]', 'checkpoints = ["cp-1", "cp-9"]'),
     "'cp-9' is not a readers name"),
    (lambda t: t.replace('checkpoints = ["cp-1", "cp-2", "cp-3"]', 'checkpoints = ["cp-1", "cp-1"]'),
     "a checkpoint appears twice"),
    (lambda t: t + 'rounds = 48\nwindow_min = 15\n', "start windows would overlap"),
    (lambda t: t.replace('name = "cp-1"\nurl = "socket://127.0.0.1:1"\ncheckpoint = true',
                         'name = "cp-1"\nurl = "socket://127.0.0.1:1"\ncheckpoint = true\ndoor = "main"'),
     "a checkpoint reader opens no door"),
])
def test_p21_config_names_what_is_wrong(site, edit, problem):
    site.config.write_text(edit(site.config.read_text()))
    with pytest.raises(ConfigError) as e:
        load_config(site.config)
    assert problem in str(e.value), str(e.value)
