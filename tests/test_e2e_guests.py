"""P29, P30, P36, P37 end to end: the daemon, the door I/O and badge reader simulators, a mosquitto and a central
peer as real processes; the lock read back over Modbus, events as the central system receives them, the API as a
guard and a supervisor call it."""
from __future__ import annotations

import json
import time

import httpx
import pytest

from mqttkit import event
from sitekit import DAY, iso, make_site, wait_until
from test_e2e_gate import Gate, running_with_central

pytestmark = pytest.mark.e2e

STAFF = "04A1B2C3"
SUPERVISOR = "04112233"
SLOW = "0E0E0E0E"  # extended access
VIP = "0B1B0B1B"  # private, a special-tier VIP
WATCHED = "0A1E2700"
CONTRACTOR = "0C0FFEE0"


@pytest.fixture
def site(tmp_path, procs, broker):
    s = make_site(tmp_path / "site", broker_port=broker.port, api=True)
    # P30: main unlocks 0.5 s for everyone, 4 s for extended access; P36: the overstay watch looks often
    s.edit_door("main", pulse_s=0.5, extended_pulse_s=4)
    s.config.write_text(s.config.read_text().replace("[policy]\n", "[policy]\noverstay_check_s = 0.2\n", 1))
    now = time.time()
    r = s.import_lines([
        {"credential": f"badge:{STAFF}", "holder": "h-1", "category": "staff", "areas": ["site"], "name": "Li Lei"},
        {"credential": f"badge:{SUPERVISOR}", "holder": "h-2", "category": "staff", "areas": ["site"],
         "roles": ["supervisor"]},
        {"credential": f"badge:{SLOW}", "holder": "h-slow", "category": "staff", "areas": ["site"],
         "extended_access": True},
        {"credential": f"badge:{VIP}", "holder": "h-vip", "category": "vip", "tier": "special", "areas": ["site"],
         "private": True, "name": "Ms Private"},
        {"credential": f"badge:{WATCHED}", "holder": "h-w", "category": "staff", "areas": ["site"]},
        {"credential": f"badge:{CONTRACTOR}", "holder": "h-3", "category": "contractor", "areas": ["site"],
         "valid_from": iso(now - DAY), "valid_until": iso(now + DAY)},
        {"blocklist": {"holder": "h-w", "reason": "former employee", "action": "alert"}},
    ])
    assert r.returncode == 0, r.stderr
    yield from running_with_central(s, procs, broker.port)


def unlocked_for(g: Gate, badge: str) -> float:
    """Seconds the main door's coil stayed on after a grant, read back from the I/O module."""
    wait_until(lambda: g.locked(0), what="main locked before the scan")
    _, etype, _ = g.scan("main-in", badge)
    assert etype == "access.granted"
    wait_until(lambda: not g.locked(0), what="unlocked by the grant")
    t0 = time.monotonic()
    wait_until(lambda: g.locked(0), what="locked again at the end of the pulse")
    return time.monotonic() - t0


def test_p30_extended_access_holds_the_modbus_lock_coil_for_the_extended_pulse(site):
    g, _ = site
    assert unlocked_for(g, SLOW) >= 3.5  # extended_pulse_s = 4
    g.scan("main-out", SLOW)  # leave, so the next scan of the same kind is an entry again
    assert unlocked_for(g, STAFF) < 3.0  # pulse_s = 0.5 (a generous bound: the machine may be busy)


def test_p37_a_watched_holder_is_granted_and_the_central_system_gets_a_high_watchlist_alarm(site):
    g, central = site
    _, etype, data = g.scan("main-in", WATCHED)
    assert (etype, data["holder"]) == ("access.granted", "h-w")
    alarm = event(central, "alarm.raised", alarm="watchlist")
    assert (alarm["data"]["priority"], alarm["data"]["reason"], alarm["data"]["holder"], alarm["subject"]) == \
        ("high", "former employee", "h-w", "main")


def test_p36_a_visitor_past_the_pass_end_is_published_as_visit_overstay(site):
    g, central = site
    text = g.site.visitor_pass("h-9", valid_until=time.time() + 2)
    _, etype, _ = g.scan("main-in", text)
    assert etype == "access.granted"
    e = event(central, "visit.overstay", holder="h-9")
    assert (e["data"]["host"], e["data"]["area"], e["data"]["door"], e["data"]["category"]) == \
        ("h-1", "site/lobby", "main", "visitor")
    url = g.site.api_url
    token = g.site.token("guard")
    listed = httpx.get(url + "/overstays", headers={"Authorization": f"Bearer {token}"}, timeout=10).json()
    assert [o["holder"] for o in listed] == ["h-9"] and listed[0]["event_seq"] == e["seq"]
    assert len([1 for t, _, _ in central.messages if t.endswith("/visit.overstay")]) == 1  # once


def test_p29_a_guard_sees_a_private_guest_as_one_a_supervisor_sees_everything(site):
    g, central = site
    _, etype, _ = g.scan("main-in", VIP)
    assert etype == "access.granted"
    g.scan("main-in", STAFF)
    url = g.site.api_url
    guard = {"Authorization": f"Bearer {g.site.token('guard', 'Wang Fang')}"}
    boss = {"Authorization": f"Bearer {g.site.token('supervisor', 'Zhao Min')}"}

    def get(path, who):
        r = httpx.get(url + path, headers=who, timeout=10)
        assert r.status_code == 200, r.text
        return r.json()

    # the muster: a private guest with their area, no name, by an alias
    [vip] = [p for p in get("/occupancy", guard)["people"] if p["private"]]
    assert vip["holder"].startswith("private-") and vip["name"] is None and vip["area"] == "site/lobby"
    assert {p["holder"] for p in get("/occupancy", guard)["people"]} >= {"h-1"}
    full = {p["holder"]: p for p in get("/occupancy", boss)["people"]}
    assert full["h-vip"]["name"] == "Ms Private" and full["h-vip"]["private"] is True
    # the journal: the grant is there, not who it was
    page = get("/events?after_seq=0&limit=1000", guard)
    raw = json.dumps(page)
    assert "h-vip" not in raw and "Ms Private" not in raw and f"badge:{VIP}" not in raw
    assert any(e["type"] == "access.granted" and e["data"].get("private") for e in page)
    assert any(e["data"].get("holder") == "h-1" for e in page)  # others are as they were
    assert any(e["data"].get("holder") == "h-vip" for e in get("/events?after_seq=0&limit=1000", boss))
    # the live feed too
    with httpx.stream("GET", url + "/events/stream?after_seq=0", headers=guard, timeout=10) as s:
        seen = []
        for line in s.iter_lines():
            if line.startswith("data: "):
                seen.append(json.loads(line[6:]))
            if len(seen) >= len(page):
                break
    assert "h-vip" not in json.dumps(seen) and any(e["data"].get("private") for e in seen)
    # people: marked, unnamed for a guard
    assert get("/people?holder=h-vip", guard)["h-vip"] == {"holder": "h-vip", "name": None, "company": None,
                                                           "category": "vip", "private": True}
    assert get("/people?holder=h-vip", boss)["h-vip"]["name"] == "Ms Private"
    # the central system sees everything
    assert event(central, "access.granted", holder="h-vip")["data"]["credential_ref"] == f"badge:{VIP}"
    # in a muster the guard checks the private guest off by the alias
    r = httpx.post(url + "/mode", json={"mode": "fire", "scope": "gate", "reason": "test"},
                   headers={**boss, "X-Requested-With": "test"}, timeout=10)
    assert r.status_code == 200, r.text
    [vip] = [p for p in get("/occupancy", guard)["people"] if p["private"]]
    r = httpx.post(url + f"/muster/{vip['holder']}/safe", json={}, headers={**guard, "X-Requested-With": "t"},
                   timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["holder"] == vip["holder"] and "h-vip" not in r.text
    [vip] = [p for p in get("/occupancy", guard)["people"] if p["private"]]
    assert vip["safe"]["by"] == "Wang Fang"
    assert get("/occupancy", boss)["unaccounted"] == get("/occupancy", guard)["unaccounted"]
    marked = event(central, "muster.marked_safe")
    assert marked["data"]["holder"] == "h-vip"  # the journal and the central system know who


def test_p29_p30_p37_the_new_fields_travel_in_a_change_batch_and_a_snapshot(site, broker):
    from mqttkit import batch, record
    from test_people import central_of
    g, _ = site
    central = central_of(broker)
    try:
        central.publish("acs/test/allowlist/changes", batch(0, 1, upserts=[
            record("badge:0D0D0D0D", "h-d", "vip", tier="special", private=True, extended_access=True)],
            blocklist_add=[{"holder": "h-e", "reason": "keep an eye", "action": "alert"},
                           {"holder": "h-f", "reason": "banned"}]))
        wait_until(lambda: g.site.query("SELECT value FROM meta WHERE key='allowlist_version'") == ("1",),
                   what="the batch applied")
        assert g.site.query("SELECT private, extended_access FROM credentials WHERE holder='h-d'") == (1, 1)
        assert g.site.query("SELECT action FROM blocklist WHERE value='h-e'") == ("alert",)
        assert g.site.query("SELECT action FROM blocklist WHERE value='h-f'") == ("deny",)
        central.publish("acs/test/gate-1/allowlist/snapshot", {
            "version": 5, "chunk": 0, "chunks": 1, "revoke": [], "keys": [],
            "blocklist": [{"holder": "h-g", "reason": "watch", "action": "alert"}],
            "upserts": [record("badge:0D0D0D0E", "h-s", private=True)]})
        wait_until(lambda: g.site.query("SELECT value FROM meta WHERE key='allowlist_version'") == ("5",),
                   what="the snapshot swapped in")
        assert g.site.query("SELECT private, extended_access FROM credentials WHERE holder='h-s'") == (1, 0)
        assert g.site.query("SELECT kind, value, reason, action FROM blocklist") == ("holder", "h-g", "watch", "alert")
    finally:
        central.close()
