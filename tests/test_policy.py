"""The decision function, rule by rule (POLICY.md ids), plus properties that must hold for any input."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from edge.core.model import Credential, Direction, DoorView, EscortScan, Facts, Mode, Rejected, Settings
from edge.core.policy import decide
from edge.core.window import RELEASE_EPOCH

TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=TZ).timestamp()  # a Wednesday, inside visiting hours
HOUR = 3600.0
SETTINGS = Settings(skew_s=60, tz=TZ, schedules={"visiting_hours": (frozenset(range(7)), 8 * 60, 21 * 60 + 30),
                                                 "weekdays": (frozenset(range(5)), 9 * 60, 17 * 60)})

STAFF = Credential("badge", "badge:04A1B2C3", "h-staff", "staff", ("site",))
SUPERVISOR = replace(STAFF, ref="badge:0000AAAA", holder="h-sup", roles=frozenset({"supervisor"}))
VISITOR = Credential("pass", "pass:00112233445566778899", "h-vis", "visitor", ("site/lobby", "site/office"),
                     valid_from=NOW - HOUR, valid_until=NOW + HOUR, host="h-staff", visit="v-1")
VIP = replace(VISITOR, ref="pass:aa", holder="h-vip", category="vip", tier="special", party=3, visit="v-2")
CONTRACTOR = Credential("badge", "badge:C0C0C0C0", "h-con", "contractor", ("site/production",),
                        valid_from=NOW - 10 * HOUR, valid_until=NOW + 10 * HOUR)

LOBBY_IN = DoorView("main", "site/lobby", Direction.IN, perimeter=True)
LOBBY_OUT = DoorView("main", "site/lobby", Direction.OUT, perimeter=True)
OFFICE_IN = DoorView("office", "site/office", Direction.IN)
WORKSHOP_IN = DoorView("workshop", "site/production/workshop-1", Direction.IN, escort_required=True)


def run(cred, door=LOBBY_IN, now=NOW, settings=SETTINGS, **facts):
    return decide(cred, door, now, Facts(**facts), settings)


# (rule id, case, credential, door, now, facts, expected granted, expected reason)
TABLE = [
    ("P2", "unknown badge", Rejected("unknown_credential", "badge:DEADBEEF", "badge"), LOBBY_IN, NOW, {}, False, "unknown_credential"),
    ("P2", "forged pass", Rejected("bad_signature", None, "pass"), LOBBY_IN, NOW, {}, False, "bad_signature"),
    ("P2", "garbage", Rejected("malformed"), LOBBY_IN, NOW, {}, False, "malformed"),
    ("P2", "garbage at an exit", Rejected("malformed"), LOBBY_OUT, NOW, {}, False, "malformed"),
    ("P2", "staff badge", STAFF, LOBBY_IN, NOW, {}, True, "ok"),
    ("P1", "record of an unknown category", replace(STAFF, category="salesman"), LOBBY_IN, NOW, {}, False, "malformed"),
    ("P1", "unknown category at an exit", replace(VISITOR, category="salesman"), LOBBY_OUT, NOW, {"signed_off": True}, False, "malformed"),
    ("P1", "unknown category in fire mode", replace(VISITOR, category="salesman"), LOBBY_OUT, NOW, {"mode": Mode.FIRE}, False, "malformed"),
    ("P1", "unknown VIP tier", replace(VIP, tier="gold"), LOBBY_IN, NOW, {}, False, "malformed"),
    ("P3", "before the window", VISITOR, LOBBY_IN, NOW - 2 * HOUR, {}, False, "not_yet_valid"),
    ("P3", "inside the skew before the window", VISITOR, LOBBY_IN, NOW - HOUR - 30, {}, True, "ok"),
    ("P3", "after the window", VISITOR, LOBBY_IN, NOW + 2 * HOUR, {}, False, "expired"),
    ("P3", "at valid_until plus skew", VISITOR, LOBBY_IN, NOW + HOUR + 60, {}, False, "expired"),
    ("P3", "implausible clock refuses a bounded pass", VISITOR, LOBBY_IN, RELEASE_EPOCH - 86400, {}, False, "clock_invalid"),
    ("P3", "implausible clock keeps an open staff badge working", STAFF, LOBBY_IN, RELEASE_EPOCH - 86400, {}, True, "ok"),
    ("P3", "a clock a day off the central system's refuses a bounded pass", VISITOR, LOBBY_IN, NOW, {"clock_far_off": True}, False, "clock_invalid"),
    ("P3", "a clock a day off the central system's keeps an open staff badge working", STAFF, LOBBY_IN, NOW, {"clock_far_off": True}, True, "ok"),
    ("P4", "visitor at a door outside the pass", VISITOR, WORKSHOP_IN, NOW, {}, False, "area_not_permitted"),
    ("P4", "ancestor area admits below", CONTRACTOR, DoorView("w", "site/production/workshop-1", Direction.IN), NOW, {}, True, "ok"),
    ("P4", "child area does not admit the parent", replace(STAFF, areas=("site/office",)), LOBBY_IN, NOW, {}, False, "area_not_permitted"),
    ("P4", "prefix that is not an ancestor", replace(STAFF, areas=("site/off",)), OFFICE_IN, NOW, {}, False, "area_not_permitted"),
    ("P5", "visitor at 22:00", replace(VISITOR, valid_until=None), LOBBY_IN, datetime(2026, 11, 25, 22, 0, tzinfo=TZ).timestamp(), {}, False, "outside_schedule"),
    ("P5", "visitor at 07:59", replace(VISITOR, valid_from=None), LOBBY_IN, datetime(2026, 11, 25, 7, 59, tzinfo=TZ).timestamp(), {}, False, "outside_schedule"),
    ("P5", "staff at 03:00", STAFF, LOBBY_IN, datetime(2026, 11, 25, 3, 0, tzinfo=TZ).timestamp(), {}, True, "ok"),
    ("P5", "VIP follows visiting hours by default", replace(VIP, valid_until=None), LOBBY_IN, datetime(2026, 11, 25, 23, 0, tzinfo=TZ).timestamp(), {}, False, "outside_schedule"),
    ("P5", "per-holder schedule overrides the category", replace(STAFF, schedule="weekdays"), LOBBY_IN, datetime(2026, 11, 28, 10, 0, tzinfo=TZ).timestamp(), {}, False, "outside_schedule"),
    ("P5", "unknown schedule fails closed", replace(STAFF, schedule="nope"), LOBBY_IN, NOW, {}, False, "outside_schedule"),
    ("P6", "blocklisted holder", VISITOR, LOBBY_IN, NOW, {"blocklisted": True}, False, "blocklisted"),
    ("P6", "revoked pass", VISITOR, LOBBY_IN, NOW, {"revoked": True}, False, "revoked"),
    ("P6", "blocklisted person may still leave", VISITOR, LOBBY_OUT, NOW, {"blocklisted": True, "signed_off": True}, True, "ok"),
    ("P7", "visitor already inside", VISITOR, LOBBY_IN, NOW, {"presence": "site/lobby"}, False, "antipassback"),
    ("P7", "visitor inside a deeper area", VISITOR, LOBBY_IN, NOW, {"presence": "site/lobby/desk"}, False, "antipassback"),
    ("P7", "visitor in the lobby enters the office", VISITOR, OFFICE_IN, NOW, {"presence": "site/lobby"}, True, "ok"),
    ("P7", "staff soft by default", STAFF, LOBBY_IN, NOW, {"presence": "site/lobby"}, True, "ok"),
    ("P7", "door set off", VISITOR, replace(LOBBY_IN, antipassback="off"), NOW, {"presence": "site/lobby"}, True, "ok"),
    ("P7", "door set hard binds staff", STAFF, replace(LOBBY_IN, antipassback="hard"), NOW, {"presence": "site/lobby"}, False, "antipassback"),
    ("P8", "consumed pass at entry", VISITOR, LOBBY_IN, NOW, {"consumed": True}, False, "pass_consumed"),
    ("P8", "consumed pass at exit", VISITOR, LOBBY_OUT, NOW, {"consumed": True, "signed_off": True}, False, "pass_consumed"),
    ("P9", "visitor exit without sign-off is held", VISITOR, LOBBY_OUT, NOW, {"presence": "site/lobby"}, False, "host_signoff_missing"),
    ("P9", "visitor exit with sign-off", VISITOR, LOBBY_OUT, NOW, {"presence": "site/lobby", "signed_off": True}, True, "ok"),
    ("P9", "VIP leaves freely", VIP, LOBBY_OUT, NOW, {"presence": "site/lobby"}, True, "ok"),
    ("P9", "contractor leaves freely", CONTRACTOR, LOBBY_OUT, NOW, {}, True, "ok"),
    ("P9", "inner door exit needs no sign-off", VISITOR, DoorView("office", "site/office", Direction.OUT), NOW, {}, True, "ok"),
    ("P9", "expired visitor can still leave (held for sign-off)", VISITOR, LOBBY_OUT, NOW + 5 * HOUR, {}, False, "host_signoff_missing"),
    ("P10", "contractor without escort", CONTRACTOR, WORKSHOP_IN, NOW, {}, False, "escort_required"),
    ("P10", "contractor after a staff scan", CONTRACTOR, WORKSHOP_IN, NOW, {"escorts": (EscortScan("badge:04A1B2C3", ("site",), NOW - 10),)}, True, "ok"),
    ("P10", "staff scan outside the window", CONTRACTOR, WORKSHOP_IN, NOW, {"escorts": (EscortScan("badge:04A1B2C3", ("site",), NOW - 31),)}, False, "escort_required"),
    ("P10", "escort not permitted in the area", CONTRACTOR, WORKSHOP_IN, NOW, {"escorts": (EscortScan("badge:1", ("site/office",), NOW - 1),)}, False, "escort_required"),
    ("P10", "escort capacity used up", CONTRACTOR, WORKSHOP_IN, NOW, {"escorts": (EscortScan("badge:1", ("site",), NOW - 1, used=5),)}, False, "escort_required"),
    ("P10", "pass marked esc needs an escort anywhere", replace(VISITOR, escort=True), OFFICE_IN, NOW, {}, False, "escort_required"),
    ("P10", "staff need no escort", STAFF, WORKSHOP_IN, NOW, {}, True, "ok"),
    ("P15", "lockdown refuses a visitor", VISITOR, LOBBY_IN, NOW, {"mode": Mode.LOCKDOWN}, False, "lockdown"),
    ("P15", "lockdown refuses plain staff", STAFF, LOBBY_IN, NOW, {"mode": Mode.LOCKDOWN}, False, "lockdown"),
    ("P15", "lockdown admits a supervisor", SUPERVISOR, LOBBY_IN, NOW, {"mode": Mode.LOCKDOWN}, True, "ok"),
    ("P15", "egress stays free in lockdown", CONTRACTOR, LOBBY_OUT, NOW, {"mode": Mode.LOCKDOWN}, True, "ok"),
    ("P16", "fire mode lets a visitor out without sign-off", VISITOR, LOBBY_OUT, NOW, {"mode": Mode.FIRE}, True, "fire_mode"),
    ("P23", "stale allow-list refuses a visitor", VISITOR, LOBBY_IN, NOW, {"stale_allowlist": True}, False, "stale_allowlist"),
    ("P23", "stale allow-list refuses a contractor", replace(CONTRACTOR, areas=("site",)), LOBBY_IN, NOW, {"stale_allowlist": True}, False, "stale_allowlist"),
    ("P23", "stale allow-list keeps staff working", STAFF, LOBBY_IN, NOW, {"stale_allowlist": True}, True, "ok"),
    ("P23", "stale allow-list keeps VIPs working", VIP, LOBBY_IN, NOW, {"stale_allowlist": True}, True, "ok"),
]


@pytest.mark.parametrize("rule,case,cred,door,now,facts,granted,reason", TABLE, ids=[f"{r[0]}-{r[1]}" for r in TABLE])
def test_policy_table(rule, case, cred, door, now, facts, granted, reason):
    d = decide(cred, door, now, Facts(**facts), SETTINGS)
    assert (d.granted, d.reason) == (granted, reason)


def test_p7_soft_antipassback_is_marked():
    assert run(STAFF, presence="site/lobby").flags == ("antipassback_soft",)


def test_p7_exit_without_recorded_entry_is_marked_presence_unknown():
    d = run(CONTRACTOR, LOBBY_OUT)
    assert d.granted and "presence_unknown" in d.flags
    assert run(CONTRACTOR, LOBBY_OUT, presence="site/lobby").flags == ()


def test_p8_perimeter_exit_consumes_single_visit_pass_only():
    assert run(VISITOR, LOBBY_OUT, signed_off=True).consumes
    assert run(VIP, LOBBY_OUT).consumes
    assert not run(CONTRACTOR, LOBBY_OUT).consumes  # permits are multi-use
    assert not run(replace(VISITOR, kind="badge", ref="badge:01020304"), LOBBY_OUT, signed_off=True).consumes
    assert not run(VISITOR, DoorView("office", "site/office", Direction.OUT)).consumes


def test_p9_exit_held_without_signoff_is_held_not_denied():
    d = run(VISITOR, LOBBY_OUT)
    assert d.held and not d.granted


def test_p9_off_by_config():
    assert run(VISITOR, LOBBY_OUT, settings=replace(SETTINGS, exit_signoff_required=False)).granted


def test_p10_escorted_grant_names_its_escort():
    d = run(CONTRACTOR, WORKSHOP_IN, escorts=(EscortScan("badge:04A1B2C3", ("site",), NOW - 1),))
    assert d.escort_by == "badge:04A1B2C3"


def test_p12_vip_perimeter_grant_is_an_arrival():
    assert run(VIP).arrival
    assert not run(replace(VIP, areas=("site",)), OFFICE_IN).arrival
    assert not run(VISITOR).arrival


def test_p16_fire_mode_does_not_consume_the_pass():
    assert not run(VISITOR, LOBBY_OUT, mode=Mode.FIRE).consumes


def test_p3_staff_badge_with_window_refused_on_bad_clock():
    bounded = replace(STAFF, valid_until=NOW + HOUR)
    assert run(bounded, now=RELEASE_EPOCH - 1).reason == "clock_invalid"


# ---- properties --------------------------------------------------------------------------------

areas = st.sampled_from(["site", "site/lobby", "site/office", "site/production", "site/production/workshop-1"])
times = st.floats(min_value=RELEASE_EPOCH - 30 * 86400, max_value=RELEASE_EPOCH + 400 * 86400, allow_nan=False)
creds = st.builds(
    Credential,
    kind=st.sampled_from(["badge", "pass"]), ref=st.sampled_from(["badge:01020304", "pass:0011"]),
    holder=st.just("h-1"), category=st.sampled_from(["staff", "vip", "visitor", "contractor"]),
    areas=st.lists(areas, max_size=3).map(tuple),
    valid_from=st.none() | times, valid_until=st.none() | times,
    tier=st.none(), roles=st.sampled_from([frozenset(), frozenset({"supervisor"})]),
    schedule=st.sampled_from([None, "visiting_hours", "weekdays", "always"]), party=st.integers(1, 5),
    escort=st.booleans(),
)
presented = creds | st.builds(Rejected, reason=st.sampled_from(["unknown_credential", "bad_signature", "malformed"]))
doors = st.builds(DoorView, name=st.just("d"), area=areas, direction=st.sampled_from(list(Direction)),
                  perimeter=st.booleans(), antipassback=st.sampled_from(["auto", "hard", "soft", "off"]),
                  escort_required=st.booleans())
facts = st.builds(
    Facts, mode=st.sampled_from(list(Mode)), blocklisted=st.booleans(), revoked=st.booleans(),
    consumed=st.booleans(), signed_off=st.booleans(), presence=st.none() | areas, stale_allowlist=st.booleans(),
    escorts=st.lists(st.builds(EscortScan, ref=st.just("badge:AA"), areas=st.lists(areas, max_size=2).map(tuple),
                               at=times, used=st.integers(0, 6)), max_size=2).map(tuple),
)


@hsettings(max_examples=400, deadline=None)
@given(presented, doors, times, facts)
def test_property_no_entry_grant_without_a_valid_permitted_credential(cred, door, now, f):
    d = decide(cred, door, now, f, SETTINGS)
    if d.granted and door.direction is Direction.IN:
        from edge.core.areas import permits
        from edge.core.window import window_reason
        assert isinstance(cred, Credential)  # verified (P2)
        assert window_reason(cred.valid_from, cred.valid_until, now, SETTINGS.skew_s) is None  # valid now (P3)
        assert permits(cred.areas, door.area)  # permitted for the area (P4)
        assert not f.blocklisted and not f.revoked  # P6
    if isinstance(cred, Rejected):
        assert not d.granted and d.reason == cred.reason


@hsettings(max_examples=200, deadline=None)
@given(presented, doors, times, facts)
def test_property_equal_inputs_give_equal_decisions(cred, door, now, f):
    assert decide(cred, door, now, f, SETTINGS) == decide(replace(cred), replace(door), now, replace(f), SETTINGS)


@hsettings(max_examples=200, deadline=None)
@given(presented, doors, times, facts)
def test_property_exit_refusals_are_only_those_spec_allows(cred, door, now, f):
    if door.direction is Direction.OUT:
        d = decide(cred, door, now, f, SETTINGS)
        if not d.granted:
            assert d.reason in {"unknown_credential", "malformed", "bad_signature", "pass_consumed", "host_signoff_missing"}
