"""P27 end to end: the daemon, the Modbus door I/O and badge reader simulators, a mosquitto and a central peer as
real processes. A visitor card leaves through a collector lane once the collector captured it (the lane read back
over Modbus), and through a plain door once a guard took it (`exit.held` over MQTT, then the API)."""
from __future__ import annotations


import httpx
import pytest

from mqttkit import event
from sitekit import NO_PORT, make_site, wait_until
from test_e2e_gate import Gate, running_with_central

pytestmark = pytest.mark.e2e

CARD = "0CA4D000"
REF = f"badge:{CARD}"
LANE = """
[[doors]]
name = "lane1"
kind = "turnstile"
area = "site/lobby"
perimeter = true
io = "io1"
pass_in_coil = 10
pass_out_coil = 11
passage_in_input = 20
passage_out_input = 21
collector = true
collector_input = 22
pulse_s = 1
passage_timeout_s = 5

[[readers]]
name = "lane-out"
url = "socket://127.0.0.1:{port}"
door = "lane1"
direction = "out"
"""


@pytest.fixture
def site(tmp_path, procs, broker):
    s = make_site(tmp_path / "site", broker_port=broker.port, api=True)
    s.config.write_text(s.config.read_text() + LANE.format(port=NO_PORT))
    s.reader_ports["lane-out"] = NO_PORT  # start_hardware starts its reader too, and sets its port
    r = s.import_lines([
        {"credential": "badge:04A1B2C3", "holder": "h-1", "category": "staff", "areas": ["site"]},
        {"credential": REF, "holder": "h-card", "category": "visitor", "areas": ["site/lobby"], "host": "h-1",
         "temporary": True},
    ])
    assert r.returncode == 0, r.stderr
    yield from running_with_central(s, procs, broker.port)


def post(g: Gate, path: str, body: dict | None, role: str) -> httpx.Response:
    token = g.site.token(role, "Wang Fang" if role == "guard" else "Zhao Min")
    return httpx.post(g.site.api_url + path, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=10)


def inside_and_signed_off(g: Gate) -> None:
    _, etype, _ = g.scan("main-in", CARD)
    assert etype == "access.granted"
    assert post(g, f"/visits/{REF}/signoff", None, "supervisor").status_code == 200  # P9 is not the point here
    g.journal.next("visit.signed_off")


def test_p27_a_collector_lane_opens_once_the_collector_captured_the_card(site):
    g, central = site
    inside_and_signed_off(g)
    before = g.unlocks(11)
    _, etype, held = g.scan("lane-out", CARD)
    assert (etype, held["reason"], held["collector"]) == ("exit.held", "card_return_required", True)
    g.door_io.send("status")  # a round trip to the simulator: any pulse the scan caused would be in by now
    g.door_io.wait_for("door_io coils")
    assert g.unlocks(11) == before  # nothing opens before the card is in the collector
    g.door_io.send("collect lane1")
    _, _, ret = g.journal.next("card.returned")
    assert (ret["credential_ref"], ret["door"], ret["taken_by"]) == (REF, "lane1", "collector")
    wait_until(lambda: g.unlocks(11) == before + 1, what="the lane released outwards once, read back over Modbus")
    g.door_io.send("pass lane1 out")
    _, _, p = g.journal.next("access.passage")
    assert (p["credential_ref"], p["direction"]) == (REF, "out")
    e = event(central, "visit.checked_out", visit=REF)  # the other gates consume it by this
    assert e["data"]["door"] == "lane1"
    _, etype, refused = g.scan("main-in", CARD)
    assert (etype, refused["reason"]) == ("access.denied", "pass_consumed")


def test_p27_elsewhere_the_exit_is_held_and_a_guard_marking_the_card_returned_opens_it_once(site):
    g, central = site
    inside_and_signed_off(g)
    g.settle()
    before = g.unlocks(0)
    _, etype, _ = g.scan("main-out", CARD)
    assert etype == "exit.held"
    held = event(central, "exit.held", credential_ref=REF)
    assert (held["data"]["reason"], held["data"]["collector"], held["subject"]) == ("card_return_required", False, "main")
    listed = httpx.get(g.site.api_url + "/exits/held", timeout=10,
                       headers={"Authorization": f"Bearer {g.site.token('guard')}"}).json()
    assert [(x["credential_ref"], x["reason"], x["collector"]) for x in listed] == [(REF, "card_return_required", False)]
    assert g.unlocks(0) == before
    assert post(g, f"/cards/{REF}/returned", {"reason": "x"}, "guard").status_code == 422  # a reason says why
    r = post(g, f"/cards/{REF}/returned", {"reason": "card in the drawer"}, "guard")
    assert r.status_code == 200 and r.json() == {"credential_ref": REF, "door": "main", "opened": True}
    ret = event(central, "card.returned", credential_ref=REF)
    assert (ret["data"]["taken_by"], ret["data"]["actor"], ret["data"]["actor_role"], ret["data"]["reason"]) == \
        ("guard", "Wang Fang", "guard", "card in the drawer")
    wait_until(lambda: g.unlocks(0) == before + 1, what="the held exit opens once")
    again = post(g, f"/cards/{REF}/returned", {"reason": "card in the drawer"}, "guard")
    assert again.status_code == 404 and again.json()["code"] == "no_card_held"
    assert post(g, "/cards/badge:zz/returned", {"reason": "card in the drawer"}, "guard").status_code == 422
    _, etype, refused = g.scan("main-in", CARD)
    assert (etype, refused["reason"]) == ("access.denied", "pass_consumed")
    assert g.unlocks(0) == before + 1  # once
