"""P35 occupancy limits: the pure rule, the config check, and the gate's counts (parties, reservations, nested
areas, exits, corrections that outlive a restart, presence another process or a peer moved)."""
from __future__ import annotations

import json
import sqlite3
import time

import pytest

from edge.config import load_config
from edge.core.gate import Gate
from edge.core.model import Direction, DoorView, Facts, Mode
from edge.core.policy import decide
from edge.errors import Refused
from edge.passes.keyring import build_keyring
from edge.store import Store
from sitekit import NO_PORT, gatekeeper, in_process_gate, make_site
from test_policy import CONTRACTOR, LOBBY_OUT, NOW, SETTINGS, STAFF, SUPERVISOR, VISITOR

LAB_IN = DoorView("office", "site/office", Direction.IN)
LAB_OUT = DoorView("office", "site/office", Direction.OUT)

# (case, credential, door, facts, granted, reason): area_full comes after every other entry rule
P35_TABLE = [
    ("room left: granted", STAFF, LAB_IN, Facts(), True, "ok"),
    ("full: refused", STAFF, LAB_IN, Facts(area_full=True), False, "area_full"),
    ("full: a supervisor too", SUPERVISOR, LAB_IN, Facts(area_full=True), False, "area_full"),
    ("full and revoked: revoked first", STAFF, LAB_IN, Facts(area_full=True, revoked=True), False, "revoked"),
    ("full and blocklisted: blocklisted first", STAFF, LAB_IN, Facts(area_full=True, blocklisted=True), False,
     "blocklisted"),
    ("full and not permitted: the area first", CONTRACTOR, LAB_IN, Facts(area_full=True), False,
     "area_not_permitted"),
    ("full in lockdown: lockdown first", STAFF, LAB_IN, Facts(area_full=True, mode=Mode.LOCKDOWN), False, "lockdown"),
    ("full and inside already: antipassback first", VISITOR, LAB_IN,
     Facts(area_full=True, presence="site/office"), False, "antipassback"),
    ("exit from a full area: always free", STAFF, LAB_OUT, Facts(area_full=True, presence="site/office"), True, "ok"),
    ("perimeter exit, full: free", VISITOR, LOBBY_OUT, Facts(area_full=True, presence="site/lobby", signed_off=True),
     True, "ok"),
]


@pytest.mark.parametrize("case, cred, door, facts, granted, reason", P35_TABLE, ids=[r[0] for r in P35_TABLE])
def test_p35_area_full_is_the_last_entry_refusal_and_never_an_exits(case, cred, door, facts, granted, reason):
    d = decide(cred, door, NOW, facts, SETTINGS)
    assert (d.granted, d.reason) == (granted, reason), case


# -- the site: site/office holds 3, site/office/clean (inside it) 1 ----------------------------------------
LIMITS = 'max_occupancy = {"site/office" = 3, "site/office/clean" = 1}'
MORE = f"""
[[doors]]
name = "clean"
area = "site/office/clean"
io = "io1"
lock_coil = 3
pulse_s = 0.3

[[readers]]
name = "office-out"
url = "socket://127.0.0.1:{NO_PORT}"
door = "office"
direction = "out"

[[readers]]
name = "clean-in"
url = "socket://127.0.0.1:{NO_PORT}"
door = "clean"
direction = "in"

[[readers]]
name = "clean-out"
url = "socket://127.0.0.1:{NO_PORT}"
door = "clean"
direction = "out"
"""
BADGES = [f"badge:0E00000{i}" for i in range(6)]


def limited_site(d, limits: str = LIMITS, more: str = MORE, people: bool = True, **kw):
    site = make_site(d, **kw)
    text = site.config.read_text().replace(
        '"site/production/workshop-1"]', '"site/production/workshop-1", "site/office/clean"]')
    text = text.replace('escort_required = ["site/production"]', f'escort_required = ["site/production"]\n{limits}')
    site.config.write_text(text + more)
    for n in ("office-out", "clean-in", "clean-out"):
        site.reader_ports[n] = NO_PORT
    assert not people or site.import_lines([{"credential": b, "holder": f"h-{i}", "category": "staff", "areas": ["site"]}
                              for i, b in enumerate(BADGES)]).returncode == 0
    return site


@pytest.fixture
def site(tmp_path):
    return limited_site(tmp_path / "site")


def counts(g: Gate) -> dict[str, tuple[int, int]]:
    return {a["area"]: (a["count"], a["reserved"]) for a in g.occupancy.areas()}


def test_p35_a_pass_party_counts_whole_the_last_place_then_area_full_and_an_exit_frees_one(site):
    now = time.time()
    party = site.issue(holder="h-v", category="visitor", areas=["site/office"], valid_from=now - 60,
                       valid_until=now + 3600, host="h-0", party=2)
    with in_process_gate(site) as g:
        assert g.present("office-in", "pass", party, now).decision.reason == "ok"
        assert counts(g)["site/office"] == (2, 0)
        assert g.present("office-in", "badge", BADGES[0], now).decision.reason == "ok"  # the last place
        out = g.present("office-in", "badge", BADGES[1], now)
        assert (out.opens, out.decision.reason) == (False, "area_full")
        assert [e.type for e in out.entries] == ["access.denied"]
        assert g.present("office-out", "badge", BADGES[0], now + 1).decision.reason == "ok"  # exits are free
        assert counts(g)["site/office"] == (2, 0)
        assert g.present("office-in", "badge", BADGES[1], now + 2).decision.reason == "ok"
        assert g.present("office-out", "badge", BADGES[1], now + 3).opens
        assert g.present("office-in", "badge", BADGES[2], now + 4).opens  # 3 of 3 again
        assert g.present("office-out", "pass", party, now + 5).opens  # the party leaves: 1 of 3
        assert counts(g)["site/office"] == (1, 0)


def test_p35_a_party_larger_than_the_places_left_is_refused(site):
    now = time.time()
    party = site.issue(holder="h-v", category="visitor", areas=["site/office"], valid_from=now - 60,
                       valid_until=now + 3600, host="h-0", party=3)
    with in_process_gate(site) as g:
        assert g.present("office-in", "badge", BADGES[0], now).opens
        assert g.present("office-in", "pass", party, now).decision.reason == "area_full"  # 1 + 3 > 3
        assert counts(g)["site/office"] == (1, 0)


def test_p35_nested_an_entry_deeper_counts_toward_every_limit_above_once(site):
    now = time.time()
    with in_process_gate(site) as g:
        assert g.present("office-in", "badge", BADGES[0], now).opens
        assert g.present("clean-in", "badge", BADGES[0], now + 1).opens  # already in site/office: still 1 there
        assert counts(g) == {"site/office": (1, 0), "site/office/clean": (1, 0)}
        assert g.present("clean-in", "badge", BADGES[1], now + 2).decision.reason == "area_full"  # clean holds 1
        # straight into the clean room (presence elsewhere): it counts toward site/office too
        assert g.present("clean-out", "badge", BADGES[0], now + 3).opens  # back to site/office
        assert g.present("clean-in", "badge", BADGES[1], now + 4).opens
        assert counts(g) == {"site/office": (2, 0), "site/office/clean": (1, 0)}
        assert g.present("office-in", "badge", BADGES[2], now + 5).opens
        assert g.present("office-in", "badge", BADGES[3], now + 6).decision.reason == "area_full"  # 3 of 3
        assert g.present("clean-out", "badge", BADGES[1], now + 7).opens  # into site/office: no place freed there
        assert g.present("office-in", "badge", BADGES[3], now + 8).decision.reason == "area_full"
        # the office is full, and one of its people goes deeper: already counted there, so in they go
        assert g.present("clean-in", "badge", BADGES[1], now + 9).decision.reason == "ok"
        assert counts(g) == {"site/office": (3, 0), "site/office/clean": (1, 0)}


def test_p35_exits_are_never_refused_even_above_the_limit(site):
    now = time.time()
    with in_process_gate(site) as g:
        assert g.present("office-in", "badge", BADGES[0], now).opens
        g.correct_occupancy("site/office", 9, "p-sup", "supervisor", "a class walked in behind the teacher")
        assert g.present("office-out", "badge", BADGES[0], now + 1).decision.reason == "ok"
        assert g.present("office-in", "badge", BADGES[1], now + 2).decision.reason == "area_full"


def test_p35_a_correction_is_journaled_and_outlives_a_restart(site):
    now = time.time()
    with in_process_gate(site) as g:
        assert g.present("office-in", "badge", BADGES[0], now).opens
        got = g.correct_occupancy("site/office", 3, "p-sup", "supervisor", "counted at the door")
        assert (got["count"], got["previous"], got["max_occupancy"]) == (3, 1, 3)
        e = [x for x in g.journal.entries() if x.type == "occupancy.corrected"]
        assert len(e) == 1 and e[0].seq == got["event_seq"]
        assert json.loads(e[0].data) == {"area": "site/office", "count": 3, "previous": 1, "max_occupancy": 3,
                                         "actor": "p-sup", "actor_role": "supervisor", "reason": "counted at the door"}
        from simulators.contract import Contract  # the event as published is in docs/asyncapi.yaml
        source = "acs/test/gate-1"
        assert Contract().check(f"{source}/events/occupancy.corrected",
                                e[0].envelope_json(source, g.store.epoch).encode()) == []
        with pytest.raises(Refused) as r:
            g.correct_occupancy("site/lobby", 1, "p-sup", "supervisor", "no limit there")
        assert (r.value.status, r.value.reason) == (404, "no_occupancy_limit")
        with pytest.raises(Refused) as r:
            g.correct_occupancy("site/nowhere", 1, "p-sup", "supervisor", "no such area")
        assert (r.value.status, r.value.reason) == (404, "no_such_area")
    with in_process_gate(site) as g:  # a restart
        assert counts(g)["site/office"] == (3, 0)
        assert g.present("office-in", "badge", BADGES[1], now + 1).decision.reason == "area_full"
        assert g.present("office-out", "badge", BADGES[0], now + 2).opens  # the one presence knew leaves
        assert counts(g)["site/office"] == (2, 0)
        assert g.present("office-in", "badge", BADGES[1], now + 3).opens


def test_p35_a_lowered_count_never_hides_people_who_come_in_later(site):
    """Corrected below what presence says (two left unseen), then those two badge out after all: the count
    stays at zero, and the next people in are counted in full."""
    now = time.time()
    with in_process_gate(site) as g:
        for i in range(2):
            assert g.present("office-in", "badge", BADGES[i], now + i).opens
        g.correct_occupancy("site/office", 0, "p-sup", "supervisor", "the room is empty")
        for i in range(2):
            assert g.present("office-out", "badge", BADGES[i], now + 5 + i).opens
        assert counts(g)["site/office"] == (0, 0)
        for i in range(2, 5):
            assert g.present("office-in", "badge", BADGES[i], now + 10 + i).opens
        assert g.present("office-in", "badge", BADGES[5], now + 20).decision.reason == "area_full"
    with in_process_gate(site) as g:  # the floor was stored with the move
        assert counts(g)["site/office"] == (3, 0)


def test_p35_presence_another_process_or_a_peer_moved_fills_the_area(site):
    now = time.time()
    with in_process_gate(site) as g:
        other = sqlite3.connect(site.db)  # another process (a tool, a restore) writes presence
        with other:
            other.executemany("INSERT INTO presence(credential, holder, category, area, since, party) "
                              "VALUES(?,?,?,?,?,?)", [("badge:AA", "h-a", "staff", "site/office", now, 2),
                                                      ("badge:BB", "h-b", "staff", "site/lobby", now, 5)])
        other.close()
        assert g.present("office-in", "badge", BADGES[0], now).opens  # the scan sees 2 of 3 and takes the last
        assert counts(g)["site/office"] == (3, 0)
        assert g.present("office-in", "badge", BADGES[1], now).decision.reason == "area_full"
        # what a peer's access.granted does here (edge/link/central.py): presence moves, the count follows
        g.store.move_presence("badge:AA", "h-a", "staff", None, 2, now + 1)
        assert counts(g)["site/office"] == (1, 0)
        g.store.move_presence("badge:BB", "h-b", "staff", "site/office/clean", 5, now + 2)
        assert counts(g) == {"site/office": (6, 0), "site/office/clean": (5, 0)}


def test_p35_places_taken_while_the_database_refuses_writes_hold_until_the_writes_are_replayed(site):
    """SPEC §6: the grants' presence moves are held back, their places are not: the limit holds at once."""
    now = time.time()
    with in_process_gate(site) as g:
        g.store.conn.execute("PRAGMA query_only = ON")
        for i in range(3):
            out = g.present("office-in", "badge", BADGES[i], now + i)
            assert out.opens and out.entries == ()  # held
        assert counts(g)["site/office"] == (0, 3)  # reserved: presence waits for the database
        assert g.present("office-in", "badge", BADGES[3], now + 4).decision.reason == "area_full"
        g.store.conn.execute("PRAGMA query_only = OFF")
        assert g.holdback.flush(g.store.tx)
        assert counts(g)["site/office"] == (3, 0)
        assert g.present("office-in", "badge", BADGES[3], now + 5).decision.reason == "area_full"


LANE_LIMIT = 'max_occupancy = {"site/lobby" = 1}'


def test_p35_a_lane_grant_reserves_its_place_until_its_passage_or_its_undo(tmp_path):
    from test_e2e_turnstile import LANE
    site = limited_site(tmp_path / "site", LANE_LIMIT, LANE.format(port=NO_PORT))
    cfg, base = load_config(site.config)
    store = Store(site.db)
    try:
        g = Gate(cfg, store, build_keyring(cfg, base, store))
        now = time.time()
        assert g.present("lane-in", "badge", BADGES[0], now).opens
        assert counts(g)["site/lobby"] == (0, 1)  # reserved at once: nobody has walked yet
        assert g.present("main-in", "badge", BADGES[1], now).decision.reason == "area_full"
        assert g.present("lane-in", "badge", BADGES[1], now).decision.reason == "area_full"
        entries = g.expire_passages(now + cfg.doors[-1].passage_timeout_s + 1)  # nobody walked: undone
        assert [e.type for e in entries] == ["access.undone"]
        assert counts(g)["site/lobby"] == (0, 0)
        assert g.present("lane-in", "badge", BADGES[1], now + 5).opens
        g.passage("lane1", Direction.IN, now + 6)  # walked: the reservation is presence now
        assert counts(g)["site/lobby"] == (1, 0)
        assert g.present("main-in", "badge", BADGES[2], now + 7).decision.reason == "area_full"
    finally:
        store.close()


# -- --check -------------------------------------------------------------------------------------------
def _check(site) -> str:
    r = gatekeeper("run", "--config", str(site.config), "--check")
    return "" if r.returncode == 0 else r.stdout + r.stderr


def test_p35_check_accepts_limits_whose_doors_all_see_exits(site):
    assert _check(site) == ""


def test_p35_check_refuses_a_limited_area_with_a_door_that_sees_no_exit(tmp_path):
    site = limited_site(tmp_path / "a", more=MORE.replace('direction = "out"\n', 'direction = "in"\n', 1)
                        .replace('name = "office-out"', 'name = "office-in-2"'), people=False)
    said = _check(site)
    assert "door 'office' leads into 'site/office', which has a max_occupancy" in said, said
    site = limited_site(tmp_path / "b", limits='max_occupancy = {"site/attic" = 3}', people=False)
    assert "'site/attic' is not in areas.tree" in _check(site)
    site = limited_site(tmp_path / "c", limits='max_occupancy = {"site/office" = 0}', people=False)
    assert "max_occupancy" in _check(site)


def test_p35_check_counts_a_turnstile_as_seeing_its_exits(tmp_path):
    from test_e2e_turnstile import LANE
    site = limited_site(tmp_path / "site", LANE_LIMIT, LANE.format(port=NO_PORT))
    assert _check(site) == ""


@pytest.mark.parametrize("limit, admitted", [(1, False), (2, True)])
def test_p35_p10_the_escorted_after_a_staff_grant_need_a_place_left_by_it(tmp_path, limit, admitted):
    """The visitor waiting for an escort is decided again once the staff member is granted: with that member's
    place already taken, so the last place is never given twice."""
    site = limited_site(tmp_path / "site", f'max_occupancy = {{"site/office/clean" = {limit}}}')
    text = site.config.read_text().replace('escort_required = ["site/production"]',
                                           'escort_required = ["site/production", "site/office/clean"]')
    site.config.write_text(text)
    now = time.time()
    visitor = site.issue(holder="h-v", category="visitor", areas=["site/office"], valid_from=now - 60,
                         valid_until=now + 3600, host="h-0")
    with in_process_gate(site) as g:
        assert g.present("office-in", "pass", visitor, now).opens
        assert g.present("office-in", "badge", BADGES[0], now).opens
        assert g.present("clean-in", "pass", visitor, now + 1).decision.reason == "escort_required"
        out = g.present("clean-in", "badge", BADGES[0], now + 2)
        assert out.opens
        granted = [json.loads(e.data)["holder"] for e in out.entries if e.type == "access.granted"]
        assert granted == (["h-0", "h-v"] if admitted else ["h-0"])
        assert counts(g)["site/office/clean"] == (2 if admitted else 1, 0)
