"""The gate in one process for P29, P30, P36, P37: real config, real SQLite, real passes; what each leaves behind."""
from __future__ import annotations

import json
import time

import pytest

from edge.config import load_config
from edge.core.gate import Gate
from edge.core.model import Direction
from edge.passes.keyring import build_keyring
from edge.store import Store
from sitekit import DAY, iso, make_site

STAFF = "badge:04A1B2C3"
CONTRACTOR = "badge:0C0FFEE0"
WATCHED = "badge:0A1E2700"
VIP_BADGE = "badge:0B1B0B1B"


@pytest.fixture
def site(tmp_path):
    s = make_site(tmp_path / "site")
    now = time.time()
    r = s.import_lines([
        {"credential": STAFF, "holder": "h-1", "category": "staff", "areas": ["site"]},
        {"credential": CONTRACTOR, "holder": "h-3", "category": "contractor", "areas": ["site"],
         "valid_from": iso(now - DAY), "valid_until": iso(now + 2 * DAY)},
        {"credential": WATCHED, "holder": "h-w", "category": "staff", "areas": ["site"]},
        {"credential": VIP_BADGE, "holder": "h-vip", "category": "vip", "tier": "special", "areas": ["site"],
         "private": True, "extended_access": True, "name": "Ms Private"},
        {"blocklist": {"holder": "h-w", "reason": "former employee, watch", "action": "alert"}},
        {"blocklist": {"holder": "h-5", "reason": "incident"}},
    ])
    assert r.returncode == 0, r.stderr
    return s


@pytest.fixture
def gate(site):
    cfg, base = load_config(site.config)
    store = Store(site.db)
    g = Gate(cfg, store, build_keyring(cfg, base, store))
    yield g
    store.close()


def data(entry) -> dict:
    return json.loads(entry.data)


# -- P37 ---------------------------------------------------------------------------------------------------
def test_p37_a_watched_holder_is_granted_and_a_high_alarm_names_the_entrys_reason(gate):
    out = gate.present("main-in", "badge", WATCHED)
    assert out.opens and [e.type for e in out.entries] == ["alarm.raised", "access.granted"]
    alarm = data(out.entries[0])
    assert (alarm["alarm"], alarm["priority"], alarm["reason"], alarm["holder"], alarm["granted"]) == \
        ("watchlist", "high", "former employee, watch", "h-w", True)
    assert [a["data"]["alarm"] for a in gate.alarms.open()] == ["watchlist"]  # on the guards' list


def test_p37_a_blocklist_entry_without_an_action_still_refuses_p6(site, gate):
    text = site.visitor_pass("h-5")
    out = gate.present("main-in", "pass", text)
    assert not out.opens and out.decision.reason == "blocklisted"
    assert [data(e)["alarm"] for e in out.entries if e.type == "alarm.raised"] == ["blocklisted"]


def test_p37_a_pass_holder_on_the_watch_list_by_id_hash_alerts_too(site, gate):
    idh = "ab" * 32
    assert site.import_lines([{"blocklist": {"id_hash": idh, "reason": "seen before", "action": "alert"}}]).returncode == 0
    out = gate.present("main-in", "pass", site.visitor_pass("h-8", idh=idh[:16]))
    assert out.opens and data(out.entries[0])["reason"] == "seen before"


# -- P30 ---------------------------------------------------------------------------------------------------
def test_p30_a_holder_marked_extended_access_gets_the_extended_opening(site, gate):
    assert gate.extended(gate.credential("badge", VIP_BADGE))
    assert not gate.extended(gate.credential("badge", STAFF))
    # a pass whose holder's allow-list record says so (the holder index, after the decision)
    assert gate.extended(gate.credential("pass", site.visitor_pass("h-vip")))
    assert not gate.extended(gate.credential("pass", site.visitor_pass("h-9")))
    assert not gate.extended(gate.credential("badge", "badge:DEADBEEF"))


# -- P36 ---------------------------------------------------------------------------------------------------
def overstays(entries):
    return [data(e) for e in entries if e.type == "visit.overstay"]


def test_p36_a_visitor_still_on_site_after_the_pass_ends_raises_visit_overstay_once(site, gate):
    now = time.time()
    text = site.visitor_pass("h-9", valid_until=now + 600)
    gate.present("main-in", "pass", text, now)
    assert gate.watch_overstays(now + 599) == []  # not yet
    [raised] = overstays(gate.watch_overstays(now + 601))
    assert (raised["holder"], raised["host"], raised["area"], raised["door"], raised["category"]) == \
        ("h-9", "h-1", "site/lobby", "main", "visitor")
    assert gate.watch_overstays(now + 700) == []  # once
    [listed] = gate.overstays.listed()
    assert listed["holder"] == "h-9" and listed["event_seq"]


def test_p36_the_area_named_is_the_one_last_entered(site, gate):
    now = time.time()
    gate.present("main-in", "badge", CONTRACTOR, now)
    gate.present("office-in", "badge", CONTRACTOR, now + 10)
    [raised] = overstays(gate.watch_overstays(now + 3 * DAY))
    assert (raised["area"], raised["door"], raised["holder"], raised["host"]) == ("site/office", "office", "h-3", None)


def test_p36_nobody_who_left_in_time_is_raised(site, gate):
    now = time.time()
    text = site.visitor_pass("h-9", valid_until=now + 600)
    gate.present("main-in", "pass", text, now)
    gate.sign_off(gate.credential("pass", text).visit_key, "h-1", "h-1", now + 10)
    assert gate.present("main-out", "pass", text, now + 20).opens
    assert gate.watch_overstays(now + 601) == []
    assert gate.store.conn.execute("SELECT count(*) FROM overstays").fetchone()[0] == 0


def test_p36_staff_and_vips_are_never_watched(site, gate):
    now = time.time()
    gate.present("main-in", "badge", STAFF, now)
    gate.present("main-in", "pass", site.visitor_pass("h-v", category="vip", valid_until=now + 60), now)
    assert gate.watch_overstays(now + 10 * DAY) == []


def test_p36_a_later_entry_at_a_peer_gate_takes_the_watch_away(site, gate):
    now = time.time()
    gate.present("main-in", "badge", CONTRACTOR, now)
    gate.watch_overstays(now, due=False)
    with gate.store.tx():
        gate.overstays.dropped(CONTRACTOR, now - 5)  # an older peer entry (a replay) changes nothing
    assert gate.store.conn.execute("SELECT count(*) FROM overstays").fetchone()[0] == 1
    with gate.store.tx():
        gate.overstays.dropped(CONTRACTOR, now + 5)
    assert gate.watch_overstays(now + 3 * DAY) == []


def test_p36_the_scan_writes_nothing_more_the_tick_writes_the_watch(site, gate):
    now = time.time()
    gate.present("main-in", "badge", CONTRACTOR, now)
    assert gate.store.conn.execute("SELECT count(*) FROM overstays").fetchone()[0] == 0  # the scan path: memory only
    gate.watch_overstays(now + 1, due=False)
    assert gate.store.conn.execute("SELECT holder, area FROM overstays").fetchall() == [("h-3", "site/lobby")]


def test_p36_entries_not_yet_written_at_a_crash_are_watched_after_the_restart(site):
    cfg, base = load_config(site.config)
    now = time.time()
    store = Store(site.db)
    g = Gate(cfg, store, build_keyring(cfg, base, store))
    g.watch_overstays(now, due=False)  # the watch is up to date ...
    g.present("main-in", "badge", CONTRACTOR, now)  # ... then two entries, and the process dies before its tick
    g.present("main-in", "badge", STAFF, now)
    store.close()
    store = Store(site.db)
    try:
        g = Gate(cfg, store, build_keyring(cfg, base, store))
        assert store.conn.execute("SELECT holder, door, entered FROM overstays").fetchall() == [("h-3", "main", pytest.approx(now, abs=0.01))]
        [raised] = overstays(g.watch_overstays(now + 3 * DAY))
        assert raised["holder"] == "h-3"
    finally:
        store.close()


def test_p36_a_walk_in_overstays_at_the_end_of_visiting_hours(site, gate):
    from edge.core.overstay import deadline
    now = time.time()
    text = site.visitor_pass("h-w1", valid_until=now + 2 * DAY)
    cred = gate.credential("pass", text)
    with gate.store.tx() as c:  # a walk-in registered at this gate's desk (P13)
        c.execute("INSERT INTO visits(id, holder, pass, pass_ref, name, company, purpose, host, host_confirmation,"
                  " id_hash, id_last4, areas, party, valid_from, valid_until, guard, created)"
                  " VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                  (cred.visit_key, "h-w1", text, cred.ref, "A B", "Co", "meeting", "h-1", "phone", "0" * 64, "1234",
                   "site/lobby", 1, now - 60, now + 2 * DAY, "g-1", now))
    gate.present("main-in", "pass", text, now)
    gate.watch_overstays(now, due=False)
    ends = gate.store.conn.execute("SELECT deadline FROM overstays").fetchone()[0]
    # the test site's visiting hours run to 24:00: the end of today, well before the pass's two days
    assert ends == deadline(cred, now, True, gate.settings.schedules["visiting_hours"], gate.settings.tz) < now + DAY


def test_p36_a_turnstile_lane_watches_from_the_first_passage(tmp_path):
    s = make_site(tmp_path / "lane")
    s.edit_door("main", kind="turnstile", pass_in_coil=5, pass_out_coil=6, passage_in_input=5, passage_out_input=6)
    cfg, base = load_config(s.config)
    store = Store(s.db)
    try:
        g = Gate(cfg, store, build_keyring(cfg, base, store))
        now = time.time()
        g.present("main-in", "pass", s.visitor_pass("h-9", valid_until=now + 60), now)
        assert store.conn.execute("SELECT count(*) FROM overstays").fetchone()[0] == 0  # nobody walked yet
        g.passage("main", Direction.IN, now + 1)
        assert [data(e)["holder"] for e in g.watch_overstays(now + 61)] == ["h-9"]
    finally:
        store.close()


def test_p37_a_walk_in_on_the_watch_list_is_registered_and_the_guards_alerted(tmp_path):
    from datetime import datetime
    from edge.desks.walkin import Desk, id_hash
    from sitekit import ID_SECRET
    s = make_site(tmp_path / "desk", walkin=True)
    idh = id_hash(ID_SECRET.encode(), "E12345678")
    assert s.import_lines([{"credential": STAFF, "holder": "h-1", "category": "staff", "areas": ["site"]},
                           {"blocklist": {"id_hash": idh, "reason": "argued at the desk", "action": "alert"}}]
                          ).returncode == 0
    cfg, base = load_config(s.config)
    store = Store(s.db)
    try:
        g = Gate(cfg, store, build_keyring(cfg, base, store))
        desk = Desk(cfg, base, g)
        ten = datetime.now(g.settings.tz).replace(hour=10, minute=0, second=0, microsecond=0).timestamp()
        visit = desk.register(name="Zhang Wei", company="ACME", id_number="E12345678", purpose="meeting", host="h-1",
                              host_confirmation="phone", areas=None, party=1, guard="g-1", now=ten)
        assert visit["visit"]
        [alarm] = [a["data"] for a in g.alarms.open() if a["data"]["alarm"] == "watchlist"]
        assert (alarm["reason"], alarm["id_hash"], alarm["actor"]) == ("argued at the desk", idh, "g-1")
        from simulators.contract import Contract
        source, c = "acs/test/gate-1", Contract()
        assert not [p for e in g.journal.entries() for p in c.check(f"{source}/events/{e.type}",
                                                                    e.envelope_json(source, store.epoch).encode())]
    finally:
        store.close()
