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
