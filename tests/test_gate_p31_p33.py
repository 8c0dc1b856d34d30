"""P31 and P33 at the gate: real config, real SQLite, what each decision leaves behind; restarts on the same file."""
from __future__ import annotations

import json
import time
from contextlib import contextmanager

import pytest

from sitekit import NO_PORT, gatekeeper, in_process_gate, make_site
from test_e2e_turnstile import LANE

STAFF, STAFF_2ND_CARD, SUPERVISOR = "badge:04A1B2C3", "badge:04A1B2C4", "badge:04112233"
CON_1, CON_2 = "badge:C0C0C0C1", "badge:C0C0C0C2"

DOORS = f"""
[[doors]]
name = "canteen"
area = "site/canteen"
io = "io1"
lock_coil = 3
pulse_s = 0.3
antipassback = "timed"
antipassback_s = 60

[[doors]]
name = "vault"
area = "site/vault"
io = "io1"
lock_coil = 4
pulse_s = 0.3

[[doors]]
name = "cage"
area = "site/production/cage"
io = "io1"
lock_coil = 5
pulse_s = 0.3

[[readers]]
name = "canteen-in"
url = "socket://127.0.0.1:{NO_PORT}"
door = "canteen"
direction = "in"

[[readers]]
name = "vault-in"
url = "socket://127.0.0.1:{NO_PORT}"
door = "vault"
direction = "in"

[[readers]]
name = "vault-out"
url = "socket://127.0.0.1:{NO_PORT}"
door = "vault"
direction = "out"

[[readers]]
name = "cage-in"
url = "socket://127.0.0.1:{NO_PORT}"
door = "cage"
direction = "in"
"""


def two_person_site(path, lane: bool = False, **kw):
    """The test site with a timed canteen door (60 s), a two-person vault and a two-person cage in the
    escort-required production area; with `lane`, the lobby's turnstile lane is timed too. `kw`: make_site's."""
    s = make_site(path, **kw)
    text = s.config.read_text().replace('tree = ["site", ', 'tree = ["site", "site/canteen", "site/vault", '
                                        '"site/production/cage", ', 1)
    text = text.replace('escort_required = ["site/production"]',
                        'escort_required = ["site/production"]\ntwo_person = ["site/vault", "site/production/cage"]')
    text += DOORS + (LANE.format(port=NO_PORT).replace('passage_timeout_s = 2', 'passage_timeout_s = 2\n'
                                                       'antipassback = "timed"') if lane else "")
    s.config.write_text(text)
    r = s.import_lines([
        {"credential": STAFF, "holder": "h-1", "category": "staff", "areas": ["site"]},
        {"credential": STAFF_2ND_CARD, "holder": "h-1", "category": "staff", "areas": ["site"]},
        {"credential": SUPERVISOR, "holder": "h-2", "category": "staff", "areas": ["site"], "roles": ["supervisor"]},
        {"credential": CON_1, "holder": "h-c1", "category": "contractor", "areas": ["site"]},
        {"credential": CON_2, "holder": "h-c2", "category": "contractor", "areas": ["site"]},
    ])
    assert r.returncode == 0, r.stderr
    return s


@pytest.fixture
def site(tmp_path):
    return two_person_site(tmp_path / "site")


@contextmanager
def gate_on(site, now: float):
    with in_process_gate(site, clock=lambda: now) as g:
        yield g


def scan(g, reader, badge, now):
    return g.present(reader, "badge", badge, now)


def data(entry) -> dict:
    return json.loads(entry.data)


# -- P31 ------------------------------------------------------------------------------------------------------
def test_p31_re_entry_within_the_time_is_refused_and_a_restart_keeps_it(site):
    now = time.time()
    with gate_on(site, now) as g:
        first = scan(g, "canteen-in", STAFF, now)
        assert first.opens and "to_area" not in data(first.entries[0])  # peers move no presence for it
        assert STAFF not in g.store.presence  # a timed door records no presence (P7)
        again = scan(g, "canteen-in", STAFF, now + 10)
        assert (again.opens, again.decision.reason) == (False, "antipassback")
        assert scan(g, "canteen-in", SUPERVISOR, now + 10).opens  # someone else is not held back
    with gate_on(site, now + 20) as g:  # a restart on the same file
        assert g.present("canteen-in", "badge", STAFF, now + 20).decision.reason == "antipassback"
        assert scan(g, "canteen-in", STAFF, now + 61).opens
        assert scan(g, "canteen-in", STAFF_2ND_CARD, now + 62).opens  # the credential counts, not the holder


def test_p31_rows_past_their_time_go_as_new_entries_come(site):
    now = time.time()
    with gate_on(site, now) as g:
        scan(g, "canteen-in", STAFF, now)
        scan(g, "canteen-in", SUPERVISOR, now + 30)
        rows = lambda: {r[0] for r in g.store.conn.execute("SELECT credential FROM timed_entries")}  # noqa: E731
        assert rows() == {STAFF, SUPERVISOR}
        scan(g, "canteen-in", CON_1, now + 70)
        assert rows() == {SUPERVISOR, CON_1}
        assert set(g.last_entries.at["canteen"]) == {SUPERVISOR, CON_1}


def test_p31_a_timed_door_leaves_presence_elsewhere_alone(site):
    """Entering the canteen from the lobby: the lobby presence stays, so leaving by the main door still finds it."""
    now = time.time()
    with gate_on(site, now) as g:
        assert scan(g, "main-in", CON_1, now).opens
        assert g.store.presence[CON_1] == "site/lobby"
        assert scan(g, "canteen-in", CON_1, now + 1).opens
        assert g.store.presence[CON_1] == "site/lobby"


def test_p31_a_grant_nobody_walked_through_is_no_entry(tmp_path):
    site = two_person_site(tmp_path / "site", lane=True)
    now = time.time()
    with gate_on(site, now) as g:
        assert scan(g, "lane-in", STAFF, now).opens
        assert scan(g, "lane-in", STAFF, now + 1).decision.reason == "antipassback"
        undone = g.expire_passages(now + 3)  # the lane's passage_timeout_s is 2
        assert [e.type for e in undone] == ["access.undone"]
        assert g.store.conn.execute("SELECT count(*) FROM timed_entries").fetchone()[0] == 0
        assert scan(g, "lane-in", STAFF, now + 4).opens
        entries, more = g.passage("lane1", g.readers["lane-in"].direction, now + 5)
        assert "to_area" not in data(entries[0]) and STAFF not in g.store.presence  # no presence at a timed lane
    with gate_on(site, now + 6) as g:
        assert g.present("lane-in", "badge", STAFF, now + 6).decision.reason == "antipassback"


def test_p31_the_time_holds_while_the_database_refuses_writes(site):
    now = time.time()
    with gate_on(site, now) as g:
        g.store.conn.execute("PRAGMA query_only = ON")
        assert scan(g, "canteen-in", STAFF, now).opens
        assert scan(g, "canteen-in", STAFF, now + 5).decision.reason == "antipassback"
        g.store.conn.execute("PRAGMA query_only = OFF")
        assert g.holdback.flush()
        assert g.store.conn.execute("SELECT at FROM timed_entries WHERE credential=?", (STAFF,)).fetchone() == (now,)


# -- P33 ------------------------------------------------------------------------------------------------------
def test_p33_a_pair_is_admitted_with_one_opening(site):
    now = time.time()
    with gate_on(site, now) as g:
        first = scan(g, "vault-in", STAFF, now)
        assert (first.opens, first.decision.reason) == (False, "second_person_required")
        assert [e.type for e in first.entries] == ["access.denied"]
        second = scan(g, "vault-in", SUPERVISOR, now + 5)
        assert second.opens  # the one opening: the first's grant rides on it
        assert [e.type for e in second.entries] == ["access.granted", "access.granted"]
        mine, theirs = data(second.entries[0]), data(second.entries[1])
        assert (mine["holder"], mine["partner_ref"], mine["flags"]) == ("h-2", STAFF, [])
        assert (theirs["holder"], theirs["partner_ref"], theirs["flags"]) == ("h-1", SUPERVISOR, ["two_person_first"])
        assert g.store.presence[STAFF] == g.store.presence[SUPERVISOR] == "site/vault"
        third = scan(g, "vault-in", CON_1, now + 6)  # the pair is used up: a third needs a pair of their own
        assert third.decision.reason == "second_person_required"


def test_p33_the_same_holder_with_two_cards_is_no_pair(site):
    now = time.time()
    with gate_on(site, now) as g:
        assert scan(g, "vault-in", STAFF, now).decision.reason == "second_person_required"
        out = scan(g, "vault-in", STAFF_2ND_CARD, now + 2)
        assert (out.opens, out.decision.reason) == (False, "second_person_required")
        assert scan(g, "vault-in", STAFF, now + 3).decision.reason == "second_person_required"


def test_p33_the_second_after_the_window_waits_for_a_pair_of_their_own(site):
    now = time.time()
    with gate_on(site, now) as g:
        scan(g, "vault-in", STAFF, now)
        late = scan(g, "vault-in", SUPERVISOR, now + 31)  # the default window is 30 s
        assert (late.opens, late.decision.reason) == (False, "second_person_required")
        out = scan(g, "vault-in", CON_1, now + 40)
        assert out.opens and [data(e)["holder"] for e in out.entries] == ["h-c1", "h-2"]


def test_p33_a_first_revoked_meanwhile_is_no_pair(site):
    now = time.time()
    with gate_on(site, now) as g:
        scan(g, "vault-in", CON_1, now)
        assert site.import_lines([{"revoke": {"credential": CON_1}}]).returncode == 0
        out = scan(g, "vault-in", STAFF, now + 5)
        assert (out.opens, out.decision.reason) == (False, "second_person_required")


def test_p33_leaving_a_two_person_area_is_free(site):
    now = time.time()
    with gate_on(site, now) as g:
        assert scan(g, "vault-out", STAFF, now).opens


def test_p33_with_an_escort_area_the_pair_includes_staff(site):
    now = time.time()
    with gate_on(site, now) as g:
        assert scan(g, "cage-in", CON_1, now).decision.reason == "escort_required"
        assert scan(g, "cage-in", CON_2, now + 1).decision.reason == "escort_required"  # two contractors: no pair
        out = scan(g, "cage-in", STAFF, now + 2)
        assert out.opens
        mine, theirs = (data(e) for e in out.entries)
        assert (mine["holder"], mine["partner_ref"]) == ("h-1", CON_1)
        assert (theirs["holder"], theirs["escort_by"], theirs["flags"]) == ("h-c1", STAFF, ["two_person_first"])
        out = scan(g, "cage-in", SUPERVISOR, now + 3)  # the other contractor, with a staff member of their own
        assert out.opens and [data(e)["holder"] for e in out.entries] == ["h-2", "h-c2"]


def test_p33_staff_first_then_a_contractor_is_escorted_by_the_pair(site):
    now = time.time()
    with gate_on(site, now) as g:
        assert scan(g, "cage-in", SUPERVISOR, now).decision.reason == "second_person_required"
        out = scan(g, "cage-in", CON_1, now + 4)
        assert out.opens
        mine, theirs = (data(e) for e in out.entries)
        assert (mine["holder"], mine["escort_by"], mine["partner_ref"]) == ("h-c1", SUPERVISOR, SUPERVISOR)
        assert (theirs["holder"], theirs["flags"]) == ("h-2", ["two_person_first"])


# -- config ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("change, expected", [
    (('antipassback_s = 60', 'antipassback_s = 0'), "doors[2].antipassback_s: Input should be greater than 0"),
    (('antipassback = "timed"\n', ''), "antipassback_s is the time of a timed anti-passback (P31)"),
    (('two_person = ["site/vault"', 'two_person = ["site/safe"'), "areas.two_person: 'site/safe' is not in the tree"),
    (('name = "vault"\narea = "site/vault"', 'name = "vault"\narea = "site/vault"\nkind = "turnstile"\n'
      'pass_in_coil = 30\npass_out_coil = 31\npassage_in_input = 30\npassage_out_input = 31'),
     "doors[3].kind: 'site/vault' is a two-person area (P33)"),
    (('[policy]', '[policy]\ntwo_person_window_s = 0'), "policy.two_person_window_s: Input should be greater than 0"),
])
def test_p31_p33_check_refuses_a_bad_config_naming_the_key(site, change, expected):
    text = site.config.read_text()
    assert change[0] in text
    site.config.write_text(text.replace(change[0], change[1], 1))
    r = gatekeeper("run", "--config", str(site.config), "--check")
    assert r.returncode == 2 and expected in r.stderr, r.stderr


def test_p31_p33_check_takes_the_new_keys(site):
    r = gatekeeper("run", "--config", str(site.config), "--check")
    assert r.returncode == 0, r.stderr
