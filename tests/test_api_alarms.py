"""Through the API of a running daemon: alarms a guard acknowledges (P17, P19), whoever journaled them, and
the muster a guard checks people off at in fire mode (P16)."""
from __future__ import annotations

import pytest

from sitekit import make_site, wait_until
from test_e2e_gate import STAFF, call, running_with_api

pytestmark = pytest.mark.e2e

OTHER = "04A1B2C5"


@pytest.fixture(scope="module")
def api(tmp_path_factory, module_procs):
    site = make_site(tmp_path_factory.mktemp("site"), api=True)
    assert site.import_lines([
        {"credential": f"badge:{STAFF}", "holder": "h-1", "category": "staff", "areas": ["site"]},
        {"credential": f"badge:{OTHER}", "holder": "h-2", "category": "staff", "areas": ["site"]},
    ]).returncode == 0
    # the doors' first state read before the tests: what follows is news
    yield from running_with_api(site, module_procs)


def open_alarms(client, token) -> dict[int, dict]:
    r = call(client, "GET", "/alarms", token)
    assert r.status_code == 200, r.text
    return {a["seq"]: a for a in r.json()}


def test_p17_p19_a_forced_door_is_listed_acknowledged_by_a_guard_with_who_and_leaves_the_list(api):
    g, client, tokens = api
    g.door_io.send("input 0 on")  # pushed open with no grant
    seq, _, _ = g.journal.next("door.forced", door="main")
    g.door_io.send("input 0 off")
    alarm = open_alarms(client, tokens["guard"])[seq]
    assert (alarm["type"], alarm["priority"], alarm["data"]["door"]) == ("door.forced", "high", "main")
    assert alarm["time"].endswith("Z")
    r = call(client, "POST", f"/alarms/{seq}/ack", tokens["guard"], {"note": "wind, door closed again"})
    assert r.status_code == 200, r.text
    ack = r.json()
    assert (ack["seq"], ack["acknowledged_by"]) == (seq, "p-guard") and ack["acknowledged_at"].endswith("Z")
    event_seq, _, data = g.journal.next("alarm.acknowledged", alarm_seq=seq)
    assert event_seq == ack["event_seq"]
    assert data == {"alarm_seq": seq, "alarm_type": "door.forced", "door": "main", "actor": "p-guard",
                    "actor_role": "guard", "note": "wind, door closed again"}
    assert seq not in open_alarms(client, tokens["supervisor"])  # gone from every console
    r = call(client, "POST", f"/alarms/{seq}/ack", tokens["supervisor"])
    assert r.status_code == 409 and "p-guard" in r.json()["detail"] and ack["acknowledged_at"] in r.json()["detail"]
    assert call(client, "POST", f"/alarms/{event_seq}/ack", tokens["guard"]).status_code == 404  # not an alarm
    assert call(client, "POST", f"/alarms/{seq}/ack", tokens["guard"], {"note": "x" * 201}).status_code == 422


def test_p1_p19_an_alarm_journaled_by_an_import_is_listed_for_the_guards(api):
    g, client, tokens = api
    assert g.site.import_lines([{"credential": "badge:0B0B0B0B", "holder": "h-6", "category": "salesman",
                                 "areas": ["site"]}]).returncode == 0  # another process writes the journal
    seq, _, _ = g.journal.next("alarm.raised", alarm="unknown_category")
    alarm = open_alarms(client, tokens["guard"])[seq]
    assert alarm["data"]["credentials"] == ["badge:0B0B0B0B"] and alarm["priority"] == "normal"
    assert call(client, "POST", f"/alarms/{seq}/ack", tokens["guard"]).status_code == 200  # no body: no note
    _, _, data = g.journal.next("alarm.acknowledged", alarm_seq=seq)
    assert (data["alarm"], data["note"]) == ("unknown_category", None)


def occupancy(client, token) -> dict:
    return call(client, "GET", "/occupancy", token).json()


def test_p16_guards_mark_people_safe_in_fire_mode_until_they_leave_or_the_fire_mode_ends(api):
    g, client, tokens = api
    guard, sup = tokens["guard"], tokens["supervisor"]
    r = call(client, "POST", "/muster/h-1/safe", guard)
    assert r.status_code == 409 and "nobody is mustering" in r.json()["detail"]
    for badge in (STAFF, OTHER):
        _, etype, _ = g.scan("main-in", badge)
        assert etype == "access.granted"
    assert call(client, "POST", "/mode", sup, {"mode": "fire", "reason": "evacuation"}).status_code == 200
    g.journal.next("mode.changed", mode="fire")
    o = occupancy(client, guard)
    assert (o["count"], o["unaccounted"]) == (2, 2) and [p["safe"] for p in o["people"]] == [None, None]
    assert call(client, "POST", "/muster/h-9/safe", guard).status_code == 404  # not_on_site
    r = call(client, "POST", "/muster/h-1/safe", guard, {"reason": "seen at assembly point B"})
    assert r.status_code == 200, r.text
    marked = r.json()
    assert (marked["holder"], marked["area"], marked["safe"]["by"], marked["new"]) == ("h-1", "site/lobby",
                                                                                        "p-guard", True)
    seq, _, data = g.journal.next("muster.marked_safe", holder="h-1")
    assert seq == marked["event_seq"]
    assert data == {"holder": "h-1", "area": "site/lobby", "actor": "p-guard", "actor_role": "guard",
                    "reason": "seen at assembly point B"}
    again = call(client, "POST", "/muster/h-1/safe", sup)
    assert again.status_code == 200 and again.json()["new"] is False and again.json()["event_seq"] == seq
    o = occupancy(client, guard)
    safe = {p["holder"]: p["safe"] for p in o["people"]}
    assert (o["count"], o["unaccounted"]) == (2, 1) and safe["h-1"]["by"] == "p-guard" and safe["h-2"] is None
    _, etype, _ = g.scan("main-out", OTHER)  # out through the freed door: the muster count falls
    assert etype == "access.granted"
    o = occupancy(client, guard)
    assert (o["count"], o["unaccounted"]) == (1, 0)
    g.scan("main-out", STAFF)
    g.scan("main-in", STAFF)  # back in: the mark went with the badge-out
    o = occupancy(client, guard)
    assert (o["count"], o["unaccounted"]) == (1, 1) and o["people"][0]["safe"] is None
    assert not [d for s, t, d in g.journal.rows(seq) if t == "muster.marked_safe"]  # no second event
    assert call(client, "POST", "/muster/h-1/safe", guard).json()["new"] is True
    assert occupancy(client, guard)["unaccounted"] == 0
    assert call(client, "POST", "/mode", sup, {"mode": "normal", "reason": "all clear"}).status_code == 200
    g.journal.next("mode.changed", mode="normal")
    o = occupancy(client, guard)
    assert (o["count"], o["unaccounted"]) == (1, 1) and o["people"][0]["safe"] is None
    assert g.site.query("SELECT count(*) FROM muster_safe")[0] == 0  # cleared, not only hidden
    assert call(client, "POST", "/muster/h-1/safe", guard).status_code == 409
    g.scan("main-out", STAFF)


def test_status_names_the_sites_time_zone(api):
    _, client, tokens = api
    assert call(client, "GET", "/status", tokens["guard"]).json()["timezone"] == "Asia/Shanghai"
