"""The front desk through the API of a running daemon: walk-ins (P13) signed with the gate's own key,
area amendments (P4), the blocklist at registration (P6), the held exit of a walk-in (P9), contractor
permits (P14); and, in one process, the time rules of both."""
from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from PIL import Image
from pyzbar.pyzbar import decode

from edge.config import load_config
from edge.core.gate import Gate as InProcessGate
from edge.passes.keyring import build_keyring
from edge.desks.permits import PermitDesk
from edge.store import Store
from edge.errors import Refused
from edge.desks.walkin import Desk, id_hash
from sitekit import ID_SECRET, make_site
from test_e2e_gate import running_with_api

pytestmark = pytest.mark.e2e

ID_NUMBER = "11010519491231002X"
BLOCKED_ID = "B-0000-1234"
CARD = "0C0C0C0C"
TZ = ZoneInfo("Asia/Shanghai")


@pytest.fixture(scope="module")
def desk(tmp_path_factory, module_procs):
    site = make_site(tmp_path_factory.mktemp("site"), api=True, walkin=True)
    r = site.import_lines([
        {"credential": "badge:04A1B2C3", "holder": "h-1", "category": "staff", "areas": ["site/office"]},
        {"credential": "badge:04A1B2C4", "holder": "h-7", "category": "staff", "roles": ["frontline"],
         "areas": ["site/production/workshop-1"]},
        {"blocklist": {"id_hash": id_hash(ID_SECRET.encode(), BLOCKED_ID), "reason": "theft"}},
    ])
    assert r.returncode == 0, r.stderr
    yield from running_with_api(site, module_procs)



def post(client, path, body, token):
    return client.post(path, json=body, headers={"Authorization": f"Bearer {token}"})


def get(client, path, token):
    return client.get(path, headers={"Authorization": f"Bearer {token}"})


def walkin(host="h-1", **kw):
    """A walk-in body; `repeat`, since the tests here register the same visitor all day."""
    body = {"visitor": {"name": "Li Lei", "company": "Acme", "id_number": ID_NUMBER}, "purpose": "meeting",
            "host": host, "host_confirmation": "phone", "repeat": True}
    body.update(kw)
    return body


def test_p13_a_walkin_pass_admits_the_hosts_areas_and_the_lobby_until_visiting_hours_end(desk):
    g, client, tokens = desk
    r = post(client, "/visits", walkin(), tokens["guard"])
    assert r.status_code == 201, r.text
    v = r.json()
    assert v["areas"] == ["site/office", "site/lobby"] and v["guard"] == "p-guard" and v["id_last4"] == "002X"
    end = datetime.now(TZ).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)  # 24:00 here
    assert datetime.fromisoformat(v["valid_until"]) == end
    _, _, data = g.journal.next("visit.checked_in", visit=v["visit"])
    assert (data["host"], data["host_confirmation"], data["actor"], data["actor_role"]) == \
        ("h-1", "phone", "p-guard", "guard")
    _, etype, data = g.scan("main-in", v["pass"])  # signed by the gate's own key, trusted by the gate
    assert (etype, data["holder"], data["category"]) == ("access.granted", v["holder"], "visitor")
    _, etype, _ = g.scan("office-in", v["pass"])
    assert etype == "access.granted"
    assert get(client, f"/visits/{v['visit']}", tokens["guard"]).json()["entered"] is not None


def test_p22_the_id_number_rests_nowhere_and_leaves_in_no_event(desk):
    g, client, tokens = desk
    v = post(client, "/visits", walkin(), tokens["guard"]).json()
    assert v["id_last4"] == "002X" and ID_NUMBER not in str(v)
    g.journal.next("visit.checked_in", visit=v["visit"])
    events = get(client, "/events?limit=1000", tokens["guard"]).text  # what goes to the central system
    assert ID_NUMBER not in events and id_hash(ID_SECRET.encode(), ID_NUMBER) in events
    for f in g.site.dir.glob("gatekeeper.db*"):  # the database and its write-ahead log
        assert ID_NUMBER.encode() not in f.read_bytes()
    assert ID_NUMBER not in "\n".join(g.daemon.output)  # the daemon's log


def test_p13_a_frontline_hosts_visitor_is_received_in_the_guard_room_only(desk):
    g, client, tokens = desk
    v = post(client, "/visits", walkin(host="h-7"), tokens["guard"]).json()
    assert v["areas"] == ["site/guard-room"]


def test_p13_registration_needs_a_known_host_and_how_they_confirmed_and_changes_nothing_else(desk):
    g, client, tokens = desk
    before = _count(g, "visits")
    r = post(client, "/visits", walkin(host="h-nobody"), tokens["guard"])
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "host"]
    body = walkin()
    del body["host_confirmation"]
    r = post(client, "/visits", body, tokens["guard"])
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "host_confirmation"]
    r = post(client, "/visits", walkin(visitor={"name": "X", "company": "Y", "id_number": "<script>"}), tokens["guard"])
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == "id_number"
    assert _count(g, "visits") == before


def test_p6_a_blocklisted_id_cannot_be_registered_and_the_guards_are_alarmed(desk):
    g, client, tokens = desk
    before = _count(g, "visits")
    r = post(client, "/visits", walkin(visitor={"name": "Zhang San", "company": "-", "id_number": "b 0000 1234"}),
             tokens["guard"])
    assert r.status_code == 403 and r.json()["detail"][0]["type"] == r.json()["code"] == "blocklisted"
    _, _, data = g.journal.next("alarm.raised", alarm="blocklisted")
    assert (data["priority"], data["actor"], data["actor_role"]) == ("high", "p-guard", "guard")
    assert _count(g, "visits") == before


def test_p4_a_guard_cannot_widen_a_visit_a_supervisor_can_and_the_old_pass_is_revoked(desk):
    g, client, tokens = desk
    r = post(client, "/visits", walkin(areas=["site/production"]), tokens["guard"])
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "areas"]
    v = post(client, "/visits", walkin(areas=["site/lobby"]), tokens["guard"]).json()
    assert v["areas"] == ["site/lobby"]
    widen = {"areas": ["site/lobby", "site/office"], "reason": "joins the budget meeting"}
    assert post(client, f"/visits/{v['visit']}/areas", widen, tokens["guard"]).status_code == 403
    r = post(client, f"/visits/{v['visit']}/areas", widen, tokens["supervisor"])
    assert r.status_code == 200, r.text
    amended = r.json()
    assert amended["visit"] == v["visit"] and amended["pass"] != v["pass"]
    _, _, data = g.journal.next("visit.amended", visit=v["visit"])
    assert (data["actor"], data["actor_role"], data["reason"], data["revoked"]) == \
        ("p-supervisor", "supervisor", widen["reason"], v["credential_ref"])
    _, etype, data = g.scan("office-in", v["pass"])
    assert (etype, data["reason"]) == ("access.denied", "revoked")
    _, etype, data = g.scan("office-in", amended["pass"])
    assert (etype, data["reason"]) == ("access.granted", "ok")


def test_p13_the_printed_qr_is_the_pass(desk):
    g, client, tokens = desk
    v = post(client, "/visits", walkin(), tokens["guard"]).json()
    r = get(client, v["pass_png"], tokens["guard"])
    assert r.headers["content-type"] == "image/png"
    import io
    found = decode(np.array(Image.open(io.BytesIO(r.content)).convert("L")))
    assert [x.data.decode() for x in found] == [v["pass"]]


def test_p9_a_walkins_exit_is_held_released_by_a_guard_and_the_visit_ends(desk):
    g, client, tokens = desk
    v = post(client, "/visits", walkin(), tokens["guard"]).json()
    g.scan("main-in", v["pass"])
    _, etype, _ = g.scan("main-out", v["pass"])
    assert etype == "exit.held"
    held = get(client, "/exits/held", tokens["guard"]).json()
    assert [h["visit"] for h in held if h["visit"] == v["visit"]] == [v["visit"]]
    r = post(client, f"/visits/{v['visit']}/release", {"reason": "host said goodbye on the phone",
                                                       "host_confirmed": True}, tokens["guard"])
    assert r.status_code == 200
    g.journal.next("visit.checked_out", visit=v["visit"])
    record = get(client, f"/visits/{v['visit']}", tokens["guard"]).json()
    assert record["exited"] is not None and record["checked_out"]
    assert v["visit"] not in [h["visit"] for h in get(client, "/exits/held", tokens["guard"]).json()]


def test_p14_a_supervisor_issues_renews_and_takes_back_a_contractors_permit(desk):
    g, client, tokens = desk
    body = {"credential": f"badge:{CARD}", "holder": "c-1", "name": "Wang Wu", "company": "Build Co",
            "areas": ["site/office"], "valid_until": "2099-01-01T00:00:00Z"}
    assert post(client, "/permits", body, tokens["guard"]).status_code == 403
    r = post(client, "/permits", body, tokens["supervisor"])
    assert r.status_code == 201, r.text
    p = r.json()
    assert (p["deposit"], p["currency"]) == (10, "CNY")
    _, _, data = g.journal.next("permit.changed", permit=p["permit"], action="created")
    assert data["record"]["credential"] == f"badge:{CARD}" and data["record"]["category"] == "contractor"
    assert (data["actor"], data["actor_role"]) == ("p-supervisor", "supervisor") and "by" not in data
    _, etype, data = g.scan("office-in", CARD)
    assert (etype, data["holder"], data["category"]) == ("access.granted", "c-1", "contractor")
    assert post(client, "/permits", body, tokens["supervisor"]).status_code == 409  # one permit per card
    earlier = {"valid_until": "2098-01-01T00:00:00Z", "reason": "shorter"}
    r = post(client, f"/permits/{p['permit']}/renew", earlier, tokens["supervisor"])
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "valid_until"]
    r = post(client, f"/permits/{p['permit']}/renew", {"valid_until": "2099-06-01T00:00:00Z", "reason": "phase 2"},
             tokens["supervisor"])
    assert datetime.fromisoformat(r.json()["valid_until"]) == datetime.fromisoformat("2099-06-01T00:00:00Z")
    r = post(client, f"/permits/{p['permit']}/return", {}, tokens["supervisor"])
    assert (r.json()["refunded"], r.json()["returned_by"]) == (10, "p-supervisor")
    g.journal.next("permit.changed", permit=p["permit"], action="returned")
    _, etype, data = g.scan("office-in", CARD)  # known only through its permit: now unknown
    assert (etype, data["reason"]) == ("access.denied", "unknown_credential")
    assert post(client, f"/permits/{p['permit']}/renew", {"valid_until": "2099-09-01T00:00:00Z", "reason": "again"},
                tokens["supervisor"]).status_code == 409


def _count(g, table: str) -> int:
    conn = sqlite3.connect(f"file:{g.site.db}?mode=ro", uri=True)
    try:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        conn.close()


# -- in one process: the clock is ours ---------------------------------------------------------------
@pytest.fixture
def office_hours(tmp_path):
    """A site with real visiting hours (08:00-21:30) and a desk on a clock the test sets."""
    site = make_site(tmp_path / "site", walkin=True)
    site.config.write_text(site.config.read_text().replace('start = "00:00"\nend = "24:00"',
                                                           'start = "08:00"\nend = "21:30"'))
    assert site.import_lines([{"credential": "badge:04A1B2C3", "holder": "h-1", "category": "staff",
                               "areas": ["site/office"]}]).returncode == 0
    cfg, base = load_config(site.config)
    store = Store(site.db)
    clock = [0.0]
    gate = InProcessGate(cfg, store, build_keyring(cfg, base, store), clock=lambda: clock[0])
    d = Desk(cfg, base, gate)
    gate.keyring = build_keyring(cfg, base, store, (d.kid, d.public_key))
    yield gate, d, PermitDesk(cfg, gate), clock
    store.close()


def local(day_hour_minute: str) -> float:
    return datetime.fromisoformat(f"2026-11-25T{day_hour_minute}:00").replace(tzinfo=TZ).timestamp()


def register(d, now):
    return d.register(name="Li Lei", company="Acme", id_number=ID_NUMBER, purpose="meeting", host="h-1",
                      host_confirmation="in_person", areas=None, party=1, guard="g-1", now=now)


def test_p13_no_walkin_outside_visiting_hours_and_the_pass_ends_with_them(office_hours):
    gate, d, _, clock = office_hours
    with pytest.raises(Refused) as e:
        register(d, local("07:59"))
    assert e.value.status == 409 and "visiting hours" in e.value.message
    clock[0] = local("10:00")
    v = register(d, clock[0])
    assert datetime.fromisoformat(v["valid_until"]) == datetime.fromisoformat("2026-11-25T13:30:00Z")  # 21:30 local
    assert gate.present("main-in", "pass", v["pass"], local("21:00")).decision.granted
    out = gate.present("main-in", "pass", v["pass"], local("21:32"))
    assert out.decision.reason in ("expired", "outside_schedule")


def test_p14_an_expired_permit_is_void_until_renewed(office_hours):
    gate, _, permits, clock = office_hours
    clock[0] = local("10:00")
    p = permits.create(credential=f"badge:{CARD}", holder="c-1", name="Wang Wu", company="Build Co",
                       areas=["site/office"], valid_from=None, valid_until=local("12:00"), deposit=None, by="s-1",
                       now=clock[0])
    decide = lambda at: gate.evaluate("office-in", "badge", f"badge:{CARD}", local(at)).decision  # noqa: E731
    assert decide("11:00").granted
    assert decide("12:05").reason == "expired"  # past the end and the clock skew
    permits.renew(p["permit"], local("18:00"), "second day of work", "s-1", local("12:06"))
    assert decide("12:07").granted


def test_id_hash_is_the_sites_hmac_of_the_normalized_number():
    import hashlib
    import hmac
    want = hmac.new(b"k" * 16, b"11010519491231002X", hashlib.sha256).hexdigest()
    assert id_hash(b"k" * 16, "110105 19491231-002x") == want


def test_p6_a_blocklist_entry_imported_while_the_gate_runs_stops_the_next_registration(desk):
    g, client, tokens = desk
    late = "C-2222-3333"
    assert g.site.import_lines([{"blocklist": {"id_hash": id_hash(ID_SECRET.encode(), late),
                                               "reason": "reported today"}}]).returncode == 0
    r = post(client, "/visits", walkin(visitor={"name": "Qian Yi", "company": "-", "id_number": late}),
             tokens["guard"])
    assert r.status_code == 403 and r.json()["detail"][0]["type"] == "blocklisted"


def test_p13_the_same_id_registered_twice_the_same_day_is_refused_unless_repeated_on_purpose(desk):
    g, client, tokens = desk
    twice = walkin(visitor={"name": "Sun Qi", "company": "Beta", "id_number": "R-7777-8888"})
    del twice["repeat"]
    r = post(client, "/visits", twice, tokens["guard"])
    assert r.status_code == 201, r.text
    first = r.json()
    before = _count(g, "visits")
    r = post(client, "/visits", twice, tokens["guard"])
    assert r.status_code == 409
    detail = r.json()["detail"][0]
    assert detail["type"] == "already_registered_today" and detail["loc"] == ["body", "visitor", "id_number"]
    registered = datetime.fromisoformat(first["registered"]).astimezone(TZ)
    assert first["visit"] in detail["msg"] and f"{registered:%H:%M}" in detail["msg"]
    assert _count(g, "visits") == before
    r = post(client, "/visits", {**twice, "repeat": True}, tokens["guard"])
    assert r.status_code == 201, r.text
    _, _, data = g.journal.next("visit.checked_in", visit=r.json()["visit"])
    assert data["repeat"] is True
    other = walkin(visitor={"name": "Sun Qi", "company": "Beta", "id_number": "R-7777-8889"})
    del other["repeat"]
    assert post(client, "/visits", other, tokens["guard"]).status_code == 201  # another document


def test_p13_a_visit_of_yesterday_does_not_count_as_today(office_hours):
    gate, d, _, clock = office_hours
    register(d, local("21:00"))
    with pytest.raises(Refused) as e:
        register(d, local("21:20"))
    assert (e.value.status, e.value.reason) == (409, "already_registered_today")
    tomorrow = local("10:00") + 86400
    clock[0] = tomorrow
    assert register(d, tomorrow)["visit"]


def test_people_and_the_muster_name_walkins_and_contractors_from_the_gates_own_records_before_the_allow_list(desk):
    g, client, tokens = desk
    # the allow-list knows the contractor too, by another name and without a company: the permit made here wins
    assert g.site.import_lines([{"credential": "badge:0C0C0C0E", "holder": "c-9", "category": "contractor",
                                 "areas": ["site/office"], "name": "Wang Wu (2019)"}]).returncode == 0
    permit = {"credential": "badge:0C0C0C0D", "holder": "c-9", "name": "王五", "company": "建工集团",
              "areas": ["site/office"], "valid_until": "2099-01-01T00:00:00Z"}
    r = post(client, "/permits", {**permit, "name": "王\u0007五"}, tokens["supervisor"])
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "name"]
    assert post(client, "/permits", permit, tokens["supervisor"]).status_code == 201
    _, _, data = g.journal.next("permit.changed", holder="c-9", action="created")
    assert data["record"]["name"] == "王五"  # the central system hands it on to every gate of the site
    v = post(client, "/visits", walkin(visitor={"name": "韩梅梅", "company": "北京某某科技有限公司",
                                                "id_number": ID_NUMBER}), tokens["guard"]).json()
    r = client.get("/people", params={"holder": [v["holder"], "c-9", "h-1", "h-nobody"]},
                   headers={"Authorization": f"Bearer {tokens['guard']}"})
    assert r.json() == {
        v["holder"]: {"holder": v["holder"], "name": "韩梅梅", "company": "北京某某科技有限公司", "category": "visitor"},
        "c-9": {"holder": "c-9", "name": "王五", "company": "建工集团", "category": "contractor"},
        "h-1": {"holder": "h-1", "name": None, "company": None, "category": "staff"},  # a record without a name
    }

    _, etype, _ = g.scan("main-in", v["pass"])
    assert etype == "access.granted"
    here = [p for p in get(client, "/occupancy", tokens["guard"]).json()["people"] if p["holder"] == v["holder"]]
    assert [(p["name"], p["company"]) for p in here] == [("韩梅梅", "北京某某科技有限公司")]
    _, etype, _ = g.scan("main-out", v["pass"])
    assert etype == "exit.held"
    held = [h for h in get(client, "/exits/held", tokens["guard"]).json() if h["visit"] == v["visit"]]
    assert [(h["holder"], h["name"], h["company"]) for h in held] == [(v["holder"], "韩梅梅", "北京某某科技有限公司")]
    assert post(client, f"/visits/{v['visit']}/release", {"reason": "host came to the gate", "host_confirmed": True},
                tokens["guard"]).status_code == 200
