"""P31 (timed anti-passback) and P33 (two-person rule), as the pure decision sees them: the last entry and the
waiting partners are facts the gate gathers."""
from __future__ import annotations

from dataclasses import replace

import pytest

from edge.core.model import Direction, DoorView, EscortScan, Facts, Mode, Partner
from edge.core.policy import decide
from test_policy import CONTRACTOR, NOW, SETTINGS, STAFF, SUPERVISOR, VISITOR
from test_policy import test_policy_table as check_row

TIMED_IN = DoorView("canteen", "site/office", Direction.IN, antipassback="timed", antipassback_s=300)
TIMED_OUT = replace(TIMED_IN, direction=Direction.OUT)
TIMED_WORKSHOP = DoorView("w", "site/production/workshop-1", Direction.IN, antipassback="timed", escort_required=True)
VAULT_IN = DoorView("vault", "site/vault", Direction.IN, two_person=True)
VAULT_OUT = replace(VAULT_IN, direction=Direction.OUT)
CAGE_IN = DoorView("cage", "site/production/cage", Direction.IN, two_person=True, escort_required=True)

OTHER_STAFF = Partner(SUPERVISOR.ref, SUPERVISOR.holder, True, ("site",), NOW - 5)
SAME_HOLDER = Partner("badge:0F0F0F0F", STAFF.holder, True, ("site",), NOW - 5)
A_CONTRACTOR = Partner("badge:C1C1C1C1", "h-con-2", False, ("site/production",), NOW - 5)
OFFICE_STAFF = Partner("badge:0E0E0E0E", "h-office", True, ("site/office",), NOW - 5)

# (rule id, case, credential, door, now, facts, expected granted, expected reason)
TABLE = [
    ("P31", "first entry", STAFF, TIMED_IN, NOW, {}, True, "ok"),
    ("P31", "again within the time", STAFF, TIMED_IN, NOW, {"last_entry": NOW - 299}, False, "antipassback"),
    ("P31", "binds staff too (no soft mode)", SUPERVISOR, TIMED_IN, NOW, {"last_entry": NOW - 10}, False, "antipassback"),
    ("P31", "binds a visitor", VISITOR, TIMED_IN, NOW, {"last_entry": NOW - 10}, False, "antipassback"),
    ("P31", "at the end of the time", STAFF, TIMED_IN, NOW, {"last_entry": NOW - 300}, True, "ok"),
    ("P31", "the door's own time", STAFF, replace(TIMED_IN, antipassback_s=60), NOW, {"last_entry": NOW - 61}, True, "ok"),
    ("P31", "a clock stepped back a little", STAFF, TIMED_IN, NOW, {"last_entry": NOW + 100}, False, "antipassback"),
    ("P31", "a clock stepped back beyond the time", STAFF, TIMED_IN, NOW, {"last_entry": NOW + 400}, True, "ok"),
    ("P31", "presence inside is not looked at", VISITOR, TIMED_IN, NOW, {"presence": "site/office"}, True, "ok"),
    ("P31", "revoked comes first", VISITOR, TIMED_IN, NOW, {"revoked": True, "last_entry": NOW - 1}, False, "revoked"),
    ("P31", "not permitted comes first", CONTRACTOR, TIMED_IN, NOW, {"last_entry": NOW - 1}, False, "area_not_permitted"),
    ("P31", "before the escort", CONTRACTOR, TIMED_WORKSHOP, NOW, {"last_entry": NOW - 1}, False, "antipassback"),
    ("P31", "leaving is free", VISITOR, TIMED_OUT, NOW, {"last_entry": NOW - 1}, True, "ok"),
    ("P33", "alone", STAFF, VAULT_IN, NOW, {}, False, "second_person_required"),
    ("P33", "a supervisor alone too", SUPERVISOR, VAULT_IN, NOW, {}, False, "second_person_required"),
    ("P33", "with a second holder in the window", STAFF, VAULT_IN, NOW, {"partners": (OTHER_STAFF,)}, True, "ok"),
    ("P33", "a visitor with a second holder", replace(VISITOR, areas=("site",)), VAULT_IN, NOW, {"partners": (OTHER_STAFF,)}, True, "ok"),
    ("P33", "the same holder with a second card", STAFF, VAULT_IN, NOW, {"partners": (SAME_HOLDER,)}, False, "second_person_required"),
    ("P33", "the second came too late", STAFF, VAULT_IN, NOW, {"partners": (replace(OTHER_STAFF, at=NOW - 31),)}, False, "second_person_required"),
    ("P33", "at the end of the window", STAFF, VAULT_IN, NOW, {"partners": (replace(OTHER_STAFF, at=NOW - 30),)}, True, "ok"),
    ("P33", "not permitted comes first", replace(STAFF, areas=("site/office",)), VAULT_IN, NOW, {}, False, "area_not_permitted"),
    ("P33", "lockdown comes first", STAFF, VAULT_IN, NOW, {"mode": Mode.LOCKDOWN}, False, "lockdown"),
    ("P33", "anti-passback comes first", VISITOR, replace(VAULT_IN, area="site/office"), NOW, {"presence": "site/office"}, False, "antipassback"),
    ("P33", "leaving is free", STAFF, VAULT_OUT, NOW, {}, True, "ok"),
    ("P33+P10", "a contractor alone needs the escort first", CONTRACTOR, CAGE_IN, NOW, {}, False, "escort_required"),
    ("P33+P10", "two contractors: no escort in the pair", CONTRACTOR, CAGE_IN, NOW, {"partners": (A_CONTRACTOR,)}, False, "escort_required"),
    ("P33+P10", "a contractor with staff", CONTRACTOR, CAGE_IN, NOW, {"partners": (OTHER_STAFF,)}, True, "ok"),
    ("P33+P10", "staff not permitted there escort no one", CONTRACTOR, CAGE_IN, NOW, {"partners": (OFFICE_STAFF,)}, False, "escort_required"),
    ("P33+P10", "an earlier staff scan is no pair", CONTRACTOR, CAGE_IN, NOW, {"escorts": (EscortScan(STAFF.ref, ("site",), NOW - 5),)}, False, "escort_required"),
    ("P33+P10", "staff with a contractor", STAFF, CAGE_IN, NOW, {"partners": (A_CONTRACTOR,)}, True, "ok"),
    ("P33+P10", "staff alone", STAFF, CAGE_IN, NOW, {}, False, "second_person_required"),
]


P31 = [r for r in TABLE if r[0] == "P31"]
P33 = [r for r in TABLE if r[0].startswith("P33")]


@pytest.mark.parametrize("rule,case,cred,door,now,facts,granted,reason", P31, ids=[r[1] for r in P31])
def test_p31_policy_table(rule, case, cred, door, now, facts, granted, reason):
    check_row(rule, case, cred, door, now, facts, granted, reason)


@pytest.mark.parametrize("rule,case,cred,door,now,facts,granted,reason", P33, ids=[f"{r[0]}-{r[1]}" for r in P33])
def test_p33_policy_table(rule, case, cred, door, now, facts, granted, reason):
    check_row(rule, case, cred, door, now, facts, granted, reason)


def test_p31_an_exit_at_a_timed_door_is_not_marked_presence_unknown():
    """Presence is never recorded there: an exit with none known is no news."""
    assert decide(VISITOR, TIMED_OUT, NOW, Facts(), SETTINGS).flags == ()


def test_p31_soft_antipassback_never_applies_at_a_timed_door():
    d = decide(STAFF, TIMED_IN, NOW, Facts(presence="site/office"), SETTINGS)
    assert (d.granted, d.flags) == (True, ())


def test_p33_a_grant_names_its_partner_and_the_pairs_staff_escorts():
    d = decide(CONTRACTOR, CAGE_IN, NOW, Facts(partners=(A_CONTRACTOR, OTHER_STAFF)), SETTINGS)
    assert (d.granted, d.partner, d.escort_by) == (True, OTHER_STAFF.ref, OTHER_STAFF.ref)
    d = decide(STAFF, VAULT_IN, NOW, Facts(partners=(SAME_HOLDER, OTHER_STAFF)), SETTINGS)
    assert (d.partner, d.escort_by) == (OTHER_STAFF.ref, None)


def test_p33_the_window_is_a_setting():
    late = Facts(partners=(replace(OTHER_STAFF, at=NOW - 50),))
    assert not decide(STAFF, VAULT_IN, NOW, late, SETTINGS).granted
    assert decide(STAFF, VAULT_IN, NOW, late, replace(SETTINGS, two_person_window_s=60)).granted
