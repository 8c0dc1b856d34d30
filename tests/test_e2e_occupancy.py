"""P35 with the daemon, its simulators and its API: the last place taken, the next badge refused `area_full` with
the lock left alone (read back from the I/O module), an exit freeing a place; the counts in the muster list and
/metrics; a supervisor's correction through the API, journaled."""
from __future__ import annotations

import httpx
import pytest

from sitekit import WAIT_S, metric, wait_until
from test_e2e_gate import Gate, call, running_with_api
from test_occupancy import BADGES, limited_site

pytestmark = pytest.mark.e2e

OFFICE_COIL, MAIN_COIL = 1, 0


@pytest.fixture(scope="module")
def api(tmp_path_factory, module_procs):
    yield from running_with_api(limited_site(tmp_path_factory.mktemp("site"), api=True), module_procs)


def hexof(ref: str) -> str:
    return ref.removeprefix("badge:")


def areas(client, token) -> dict[str, dict]:
    r = call(client, "GET", "/occupancy", token)
    assert r.status_code == 200, r.text
    return {a["area"]: a for a in r.json()["areas"]}


def test_p35_the_last_place_then_area_full_with_the_lock_left_alone_then_an_exit_frees_a_place(api):
    g, client, tokens = api
    for b in BADGES[:3]:
        g.settle()
        before = g.unlocks(OFFICE_COIL)
        _, etype, data = g.scan("office-in", hexof(b), credential_ref=b)
        assert (etype, data["reason"]) == ("access.granted", "ok")
        wait_until(lambda: g.unlocks(OFFICE_COIL) == before + 1, what="the office door unlocked once")
    office = areas(client, tokens["guard"])["site/office"]
    assert (office["count"], office["reserved"], office["max_occupancy"]) == (3, 0, 3)
    g.settle()
    before = g.unlocks(OFFICE_COIL)
    _, etype, data = g.scan("office-in", hexof(BADGES[3]), credential_ref=BADGES[3])
    assert (etype, data["reason"]) == ("access.denied", "area_full")
    # decisions are handled one at a time, a grant's pulse before the next: once a grant at the main door is
    # journaled and pulsed, a pulse the refusal might have caused would already show
    probe = g.unlocks(MAIN_COIL)
    assert g.scan("main-in", hexof(BADGES[5]), credential_ref=BADGES[5])[1] == "access.granted"
    wait_until(lambda: g.unlocks(MAIN_COIL) > probe, what="the probe's unlock")
    assert g.unlocks(OFFICE_COIL) == before and g.locked(OFFICE_COIL)
    _, etype, data = g.scan("office-out", hexof(BADGES[0]), credential_ref=BADGES[0])
    assert (etype, data["reason"]) == ("access.granted", "ok")  # exits are free
    assert areas(client, tokens["guard"])["site/office"]["count"] == 2
    g.settle()
    before = g.unlocks(OFFICE_COIL)
    _, etype, data = g.scan("office-in", hexof(BADGES[3]), credential_ref=BADGES[3])
    assert (etype, data["reason"]) == ("access.granted", "ok")
    wait_until(lambda: g.unlocks(OFFICE_COIL) == before + 1, what="the office door unlocked for the freed place")
    text = client.get("/metrics").text
    assert metric(text, "gatekeeper_area_occupancy", area="site/office") == 3
    assert metric(text, "gatekeeper_area_max_occupancy", area="site/office") == 3
    assert metric(text, "gatekeeper_area_max_occupancy", area="site/office/clean") == 1
    assert metric(text, "gatekeeper_area_occupancy", area="site/lobby") is None  # no limit, not counted


def test_p35_a_supervisor_corrects_a_count_through_the_api_journaled_and_a_guard_may_not(api):
    g, client, tokens = api
    path = "/areas/site/office/clean/occupancy"
    body = {"count": 1, "reason": "someone stayed in after the fire drill"}
    r = call(client, "POST", path, tokens["guard"], body)
    assert r.status_code == 403, r.text
    r = call(client, "POST", path, tokens["supervisor"], {"count": -1, "reason": body["reason"]})
    assert r.status_code == 422 and "count" in r.text, r.text
    r = call(client, "POST", path, tokens["supervisor"], {"count": 1})
    assert r.status_code == 422 and "reason" in r.text, r.text
    r = call(client, "POST", "/areas/site/lobby/occupancy", tokens["supervisor"], body)
    assert (r.status_code, r.json().get("code")) == (404, "no_occupancy_limit"), r.text
    r = call(client, "POST", "/areas/site/attic/occupancy", tokens["supervisor"], body)
    assert (r.status_code, r.json().get("code")) == (404, "no_such_area"), r.text
    before = areas(client, tokens["guard"])["site/office/clean"]["count"]
    r = call(client, "POST", "/areas/site%2Foffice%2Fclean/occupancy", tokens["supervisor"], body)
    assert r.status_code == 200, r.text
    got = r.json()
    assert (got["area"], got["count"], got["previous"], got["max_occupancy"]) == ("site/office/clean", 1, before, 1)
    seq, _, data = g.journal.next("occupancy.corrected", area="site/office/clean")
    assert seq == got["event_seq"]
    assert data == {"area": "site/office/clean", "count": 1, "previous": before, "max_occupancy": 1,
                    "actor": "p-supervisor", "actor_role": "supervisor", "reason": body["reason"]}
    assert areas(client, tokens["guard"])["site/office/clean"]["count"] == 1
    # the correction holds: the clean room is full for the next one
    _, etype, data = g.scan("clean-in", hexof(BADGES[1]), credential_ref=BADGES[1])
    assert (etype, data["reason"]) == ("access.denied", "area_full")


def test_p35_p7_two_gates_share_the_count_gate_2_refuses_after_gate_1_filled_the_area_and_applies_its_correction(
        tmp_path, procs, broker):
    gates = []
    for name in ("gate-1", "gate-2"):
        site = limited_site(tmp_path / name, broker_port=broker.port, gate=name, api=name == "gate-1",
                            private_key=gates[0].site.private_key if gates else None)
        g = Gate(site, procs)
        g.start_hardware()
        g.start_daemon()
        gates.append(g)
    g1, g2 = gates
    supervisor = g1.site.token("supervisor")
    for b in BADGES[:3]:
        assert g1.scan("office-in", hexof(b), credential_ref=b)[1] == "access.granted"

    def in_office(g) -> int:
        return g.site.query("SELECT coalesce(sum(party), 0) FROM presence WHERE area LIKE 'site/office%'")[0]
    wait_until(lambda: in_office(g2) == 3, what="gate-2 hearing of gate-1's three entries")
    _, etype, data = g2.scan("office-in", hexof(BADGES[3]), credential_ref=BADGES[3])
    assert (etype, data["reason"]) == ("access.denied", "area_full")
    g1.site.wait_api()
    with httpx.Client(base_url=g1.site.api_url, timeout=WAIT_S) as client:
        r = call(client, "POST", "/areas/site/office/occupancy", supervisor,
                 {"count": 2, "reason": "one left through the fire door"})
        assert r.status_code == 200, r.text

    def adjusted(g):
        row = g.site.query("SELECT adjust FROM occupancy_offsets WHERE area='site/office'")
        return row[0] if row else None
    wait_until(lambda: adjusted(g2) == -1, what="gate-2 applying gate-1's correction")
    _, etype, data = g2.scan("office-in", hexof(BADGES[3]), credential_ref=BADGES[3])
    assert (etype, data["reason"]) == ("access.granted", "ok")
    for g in gates:
        g.io.close()
