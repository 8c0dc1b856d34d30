"""Private guests, extended access, overstays and the watch list (P29, P30, P36, P37): the pure parts, rule by rule."""
from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime

import pytest

from edge.api.private import Aliases, hidden, redact_data, redact_entries
from edge.config import DoorSection
from edge.core.model import Direction, DoorView, Facts, Mode
from edge.core.overstay import deadline
from edge.core.policy import decide
from edge.hardware.doors import DoorState, extended_times, supervise
from edge.store.journal import Entry
from edge.store.records import AllowRecord, BlockEntry
from test_policy import CONTRACTOR, HOUR, LOBBY_IN, LOBBY_OUT, NOW, OFFICE_IN, SETTINGS, STAFF, TZ, VIP, VISITOR

# -- P37: the watch list -------------------------------------------------------------------------------------
# (case, credential, door, facts, granted, reason, watchlist alarm)
P37 = [
    ("a watched visitor is granted as usual, and alerts", VISITOR, LOBBY_IN, {"watchlisted": True}, True, "ok", True),
    ("a watched staff member too", STAFF, OFFICE_IN, {"watchlisted": True}, True, "ok", True),
    ("a watched visitor refused for another reason still alerts", VISITOR, DoorView("w", "site/production", Direction.IN),
     {"watchlisted": True}, False, "area_not_permitted", True),
    ("leaving is not an entry: no alert", VISITOR, LOBBY_OUT, {"watchlisted": True, "signed_off": True}, True, "ok", False),
    ("deny wins over alert (P6)", VISITOR, LOBBY_IN, {"watchlisted": True, "blocklisted": True}, False, "blocklisted", False),
    ("in lockdown the decision is the lockdown's", VISITOR, LOBBY_IN, {"watchlisted": True, "mode": Mode.LOCKDOWN},
     False, "lockdown", True),
    ("not on the list: nothing", VISITOR, LOBBY_IN, {}, True, "ok", False),
]


@pytest.mark.parametrize("case, cred, door, facts, granted, reason, alert", P37, ids=[c[0] for c in P37])
def test_p37_a_watch_list_entry_decides_as_usual_and_flags_the_alarm(case, cred, door, facts, granted, reason, alert):
    d = decide(cred, door, NOW, Facts(**facts), SETTINGS)
    assert (d.granted, d.reason, d.watchlist) == (granted, reason, alert)


@pytest.mark.parametrize("entry, row", [
    ({"holder": "h-1", "reason": "r"}, ("holder", "h-1", "r", "deny")),
    ({"holder": "h-1", "reason": "r", "action": "deny"}, ("holder", "h-1", "r", "deny")),
    ({"id_hash": "a" * 64, "action": "alert"}, ("id_hash", "a" * 64, None, "alert")),
])
def test_p37_a_blocklist_entry_denies_by_default_and_may_alert(entry, row):
    assert BlockEntry.model_validate(entry).row() == row


def test_p37_an_unknown_action_is_refused():
    with pytest.raises(ValueError, match="action"):
        BlockEntry.model_validate({"holder": "h-1", "action": "warn"})


# -- P29: what a guard sees ----------------------------------------------------------------------------------
@pytest.mark.parametrize("role, hides", [("guard", True), ("supervisor", False), ("central", False), (None, True)])
def test_p29_only_supervisors_and_the_central_system_see_private_guests(role, hides):
    assert hidden(role) is hides


def test_p29_an_event_about_a_private_guest_loses_who_and_where_they_went():
    data = {"door": "main", "direction": "in", "reason": "ok", "holder": "h-vip", "credential_ref": "pass:aa",
            "category": "vip", "tier": "special", "to_area": "site/lobby", "visit": "v-2", "host": "h-9"}
    out = redact_data(data)
    assert out["holder"] is None and out["private"] is True
    assert not {"credential_ref", "tier", "to_area", "visit", "host"} & set(out)
    assert (out["door"], out["reason"]) == ("main", "ok")  # what happened at the door, not to whom


def test_p29_a_page_of_events_is_redacted_for_private_holders_only():
    def entry(seq, data):
        return Entry(seq, f"e-{seq}", "2026-11-30T12:00:00.000Z", "access.granted", json.dumps(data), "h")
    page = [entry(1, {"holder": "h-vip", "door": "main"}), entry(2, {"holder": "h-1", "door": "main"}),
            entry(3, {"door": "main"})]
    out = redact_entries(page, {"h-vip"})
    assert [json.loads(e.data).get("holder") for e in out] == [None, "h-1", None]
    assert json.loads(out[0].data)["private"] is True and out[1] is page[1] and out[2] is page[2]


def test_p29_a_muster_alias_maps_back_to_its_holder_only():
    a = Aliases()
    alias = a.of("h-vip")
    assert alias.startswith("private-") and "h-vip" not in alias and a.of("h-vip") == alias
    assert a.resolve(alias, ["h-1", "h-vip"]) == "h-vip"
    assert a.resolve(alias, ["h-1"]) is None
    assert Aliases().of("h-vip") != alias  # keyed per start


@pytest.mark.parametrize("field", ["private", "extended_access"])
def test_p29_p30_record_flags_default_off_and_are_stored(field):
    base = {"credential": "badge:04A1B2C3", "holder": "h-1", "category": "vip", "tier": "special", "areas": ["site"]}
    assert getattr(AllowRecord.model_validate(base), field) is False
    r = AllowRecord.model_validate({**base, field: True})
    from edge.store.staging import CREDENTIAL_FIELDS
    assert getattr(r, field) is True and r.row()[[c for c, _ in CREDENTIAL_FIELDS].index(field)] == 1


# -- P30: the door's extended times --------------------------------------------------------------------------
def door(**kw) -> DoorSection:
    return DoorSection.model_validate({"name": "main", "area": "site/lobby", "io": "io1", "lock_coil": 0,
                                       "contact_input": 0, "pulse_s": 3, "held_open_s": 30, **kw})


@pytest.mark.parametrize("kw, factor, times", [
    ({}, 3.0, (9.0, 90.0)),
    ({}, 2.0, (6.0, 60.0)),
    ({"extended_pulse_s": 20}, 3.0, (20.0, 90.0)),
    ({"extended_pulse_s": 20, "extended_held_open_s": 300}, 3.0, (20.0, 300.0)),
])
def test_p30_extended_times_are_the_doors_own_or_its_times_by_the_factor(kw, factor, times):
    assert extended_times(door(**kw), factor) == times


def _opened_state(extended: bool) -> DoorState:
    d = door(held_open_s=10)
    st = DoorState(d, extended_pulse_s=9.0, extended_held_s=30.0)
    supervise(st, False, None, 0.0, False)  # first read: shut
    assert st.authorize(1.0, extended=extended) == (9.0 if extended else 3.0)
    supervise(st, True, None, 2.0, False)  # opened within the pulse: not forced
    return st


# (extended, seconds open, held_open reported)
P30 = [(False, 11.0, True), (True, 11.0, False), (True, 29.0, False), (True, 33.0, True)]


@pytest.mark.parametrize("extended, open_s, reported", P30)
def test_p30_an_extended_grants_opening_has_the_extended_held_open_limit(extended, open_s, reported):
    st = _opened_state(extended)
    step = supervise(st, True, None, 2.0 + open_s, False)
    held = [data for etype, data in step.events if etype == "door.held_open"]
    assert bool(held) is reported
    if held:
        assert held[0]["limit_s"] == (30.0 if extended else 10.0)


def test_p30_the_next_ordinary_opening_has_the_ordinary_limit_again():
    st = _opened_state(True)
    supervise(st, False, None, 5.0, False)  # shut
    st.authorize(6.0)
    supervise(st, True, None, 7.0, False)
    assert [e for e, _ in supervise(st, True, None, 18.0, False).events] == ["door.held_open"]


# -- P36: when a holder overstays ----------------------------------------------------------------------------
VISITING = SETTINGS.schedules["visiting_hours"]  # 08:00-21:30


def at(hh: int, mm: int = 0) -> float:
    return datetime(2026, 11, 25, hh, mm, tzinfo=TZ).timestamp()


# (case, credential, entered, walk-in, deadline)
P36 = [
    ("a pass ends at its expiry", VISITOR, NOW, False, VISITOR.valid_until),
    ("a contractor's permit at its end", CONTRACTOR, NOW, False, CONTRACTOR.valid_until),
    ("a walk-in at the end of visiting hours when sooner", replace(VISITOR, valid_until=at(23, 59)), at(10), True, at(21, 30)),
    ("a walk-in at its pass's end when sooner", replace(VISITOR, valid_until=at(12)), at(10), True, at(12)),
    ("a pass that never ends is not watched", replace(CONTRACTOR, valid_until=None), NOW, False, None),
    ("a walk-in without an end: visiting hours", replace(VISITOR, valid_until=None), at(10), True, at(21, 30)),
]


@pytest.mark.parametrize("case, cred, entered, walkin, expect", P36, ids=[c[0] for c in P36])
def test_p36_the_deadline_is_the_pass_or_permit_end_or_visiting_hours_for_walk_ins(case, cred, entered, walkin, expect):
    assert deadline(cred, entered, walkin, VISITING, TZ) == expect


def test_p36_a_vip_is_not_a_category_the_watch_keeps():
    from edge.core.overstay import WATCHED
    assert VIP.category not in WATCHED and {"visitor", "contractor"} == WATCHED
