"""The local API against a running daemon: the auth matrix, a guard's override opening a real door,
modes by role, bad bodies named by field."""
from __future__ import annotations

import json

import httpx
import pytest

from sitekit import WAIT_S, gatekeeper, make_site, metric, wait_until
from test_e2e_gate import STAFF, staffed_gate

pytestmark = pytest.mark.e2e

GUARDS, SUPERVISOR, ANYONE = ("guard", "supervisor"), ("supervisor",), ("guard", "supervisor", "central")
WALKIN = {"visitor": {"name": "Li Lei", "company": "Acme", "id_number": "11010519491231002X"},
          "purpose": "meeting", "host": "h-1", "host_confirmation": "phone", "repeat": True}  # posted by each role
PERMIT = {"credential": "badge:0C0C0C0C", "holder": "c-1", "name": "Wang Wu", "company": "Build Co",
          "areas": ["site/production"], "valid_until": "2099-01-01T00:00:00Z"}
NO_VISIT, NO_PERMIT = "00112233445566ff", "pm-0000000000"
ROUTES = [  # (method, path, body, roles allowed, what an allowed role gets): every route of SPEC §4
    ("GET", "/session", None, ANYONE, 200),
    ("GET", "/status", None, GUARDS, 200),
    ("GET", "/events", None, GUARDS, 200),
    ("GET", "/events/stream", None, GUARDS, 200),
    ("GET", "/occupancy", None, GUARDS, 200),
    ("GET", "/exits/held", None, GUARDS, 200),
    ("GET", "/people?holder=h-1", None, GUARDS, 200),
    ("POST", "/doors/main/open", {"reason": "delivery at the gate"}, GUARDS, 200),
    ("POST", "/mode", {"mode": "lockdown", "scope": "gate", "reason": "drill"}, GUARDS, 200),
    ("POST", "/visits", WALKIN, GUARDS, 201),
    ("GET", "/visits", None, GUARDS, 200),
    ("GET", f"/visits/{NO_VISIT}", None, GUARDS, 404),
    ("GET", f"/visits/{NO_VISIT}/pass.png", None, GUARDS, 404),
    ("POST", f"/visits/{NO_VISIT}/areas", {"areas": ["site"], "reason": "tour of the plant"}, SUPERVISOR, 404),
    ("POST", "/visits/v-matrix/signoff", None, ("supervisor", "central"), 200),
    ("POST", "/visits/v-none/release", {"reason": "host confirmed", "host_confirmed": True}, GUARDS, 404),
    ("POST", "/cards/badge:0CA4D001/returned", {"reason": "card in the drawer"}, GUARDS, 404),  # P27: none held
    ("GET", "/permits", None, GUARDS, 200),
    ("POST", "/permits", PERMIT, SUPERVISOR, 201),
    ("POST", f"/permits/{NO_PERMIT}/renew", {"valid_until": "2099-02-01T00:00:00Z", "reason": "more work"},
     SUPERVISOR, 404),
    ("POST", f"/permits/{NO_PERMIT}/return", {}, SUPERVISOR, 404),
    ("GET", "/alarms", None, GUARDS, 200),
    ("POST", "/alarms/999999/ack", {"note": "checked"}, GUARDS, 404),
    ("POST", "/muster/h-1/safe", {}, GUARDS, 409),  # not in fire mode
    ("GET", "/vehicles/held", None, GUARDS, 200),  # P26
    ("POST", "/vehicles/AB123/admit", {"reason": "delivery expected"}, GUARDS, 404),
    ("POST", f"/visits/{NO_VISIT}/vehicle", {"plate": "AB123"}, GUARDS, 404),
]


@pytest.fixture(scope="module")
def api(tmp_path_factory, module_procs):
    site = make_site(tmp_path_factory.mktemp("site"), api=True, walkin=True)
    tokens = {role: site.token(role) for role in ("guard", "supervisor", "central")}
    g = staffed_gate(site, module_procs)
    g.daemon.wait_for("io module io1 ready", already=True)
    client = httpx.Client(base_url=site.api_url, timeout=WAIT_S)
    site.wait_api()
    yield g, client, tokens
    client.close()
    g.io.close()



def call(client, method, path, body=None, token=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if path == "/events/stream":  # a live feed never ends: its status line is the answer
        with client.stream(method, path, headers=headers) as r:
            return r
    return client.request(method, path, json=body, headers=headers)


@pytest.mark.parametrize("method, path, body, allowed, expect", ROUTES, ids=[f"{m} {p}" for m, p, *_ in ROUTES])
def test_auth_matrix(api, method, path, body, allowed, expect):
    g, client, tokens = api
    assert call(client, method, path, body).status_code == 401
    assert call(client, method, path, body, "gk_not-a-token").status_code == 401
    for role in ("guard", "supervisor", "central"):
        r = call(client, method, path, body, tokens[role])
        assert r.status_code == (expect if role in allowed else 403), (role, r.status_code)
    if path == "/mode":  # leave the gate as found: only a supervisor ends a lockdown
        assert call(client, "POST", "/mode", {"mode": "normal", "reason": "drill over"},
                    tokens["guard"]).status_code == 403
        assert call(client, "POST", "/mode", {"mode": "normal", "reason": "drill over"},
                    tokens["supervisor"]).status_code == 200


@pytest.mark.parametrize("path", ["/health", "/metrics", "/", "/console/console.js"])
def test_what_needs_no_token(api, path):
    _, client, _ = api
    assert client.get(path).status_code == 200


def test_p20_a_guard_override_opens_the_door_once_and_is_journaled_with_person_and_reason(api):
    g, client, tokens = api
    g.settle()
    before = g.unlocks(0)
    r = call(client, "POST", "/doors/main/open", {"reason": "courier with a pallet"}, tokens["guard"])
    assert r.json() == {"door": "main", "opened": True}
    _, _, data = g.journal.next("override.opened", reason="courier with a pallet")
    assert (data["door"], data["actor"], data["actor_role"]) == ("main", "p-guard", "guard")
    assert "person" not in data and "role" not in data  # SPEC §2: one name for who acted, in every event
    wait_until(lambda: g.unlocks(0) == before + 1, what="the override's unlock")


def test_p20_overrides_are_rate_limited(api):
    _, client, tokens = api
    codes = [call(client, "POST", "/doors/office/open", {"reason": "testing the limit"}, tokens["supervisor"]).status_code
             for _ in range(8)]
    assert codes[:6] == [200] * 6 and codes[6:] == [429, 429]


def test_bad_input_is_named_and_changes_nothing(api):
    g, client, tokens = api
    r = call(client, "POST", "/doors/main/open", {"reason": ""}, tokens["guard"])
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == "reason" and r.json()["code"] == "invalid"
    r = call(client, "POST", "/doors/main/open", {"why": "x"}, tokens["guard"])
    assert r.status_code == 422
    r = call(client, "GET", "/events?after_seq=14318061454857838002176", token=tokens["guard"])
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "after_seq"]  # found by schemathesis
    r = call(client, "POST", "/doors/nowhere/open", {"reason": "no such door"}, tokens["guard"])
    assert (r.status_code, r.json()["code"]) == (404, "no_such_door")
    r = call(client, "POST", "/mode", {"mode": "fire", "scope": "site", "reason": "alarm"}, tokens["supervisor"])
    assert (r.status_code, r.json()["code"]) == (422, "fire_is_per_gate")
    r = client.post("/doors/main/open", content=b"x" * 70_000,
                    headers={"Authorization": f"Bearer {tokens['guard']}", "Content-Type": "application/json"})
    assert (r.status_code, r.json()["code"]) == (413, "body_too_large")
    assert client.get("/health").json()["mode"] == "normal"


def test_people_answers_for_1_to_200_holder_ids_of_1_to_64_characters_and_leaves_unknown_ones_out(api):
    _, client, tokens = api
    auth = {"Authorization": f"Bearer {tokens['guard']}"}
    many = [f"h-x{i}" for i in range(199)]
    r = client.get("/people", params={"holder": ["h-1", *many]}, headers=auth)
    assert r.status_code == 200 and r.json() == {"h-1": {"holder": "h-1", "name": None, "company": None,
                                                         "category": "staff"}}
    for bad, where in ((["h-1", *many, "h-x199"], ["query", "holder"]), (["h-1", "x" * 65], ["query", "holder", 1]),
                       (["h-1", ""], ["query", "holder", 1])):
        r = client.get("/people", params={"holder": bad}, headers=auth)
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == where, (len(bad), r.text)
    r = client.get("/people", headers=auth)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "holder"]


def test_p16_fire_mode_is_a_supervisors_and_not_ended_while_the_input_is_on(api):
    g, client, tokens = api
    r = call(client, "POST", "/mode", {"mode": "fire", "reason": "evacuation"}, tokens["guard"])
    assert (r.status_code, r.json()["code"]) == (403, "mode_not_yours")
    g.door_io.send("input 100 on")
    _, _, fire = g.journal.next("mode.changed", mode="fire")
    assert (fire["actor"], fire["actor_role"]) == ("fire_input", None) and "by" not in fire  # SPEC §2: no person
    r = call(client, "POST", "/mode", {"mode": "normal", "reason": "all clear"}, tokens["supervisor"])
    assert (r.status_code, r.json()["code"]) == (409, "fire_input_active")  # it crossed from the gate whole
    g.door_io.send("input 100 off")
    wait_until(lambda: call(client, "POST", "/mode", {"mode": "normal", "reason": "all clear"},
                            tokens["supervisor"]).status_code == 200, what="fire mode ended once the input is off")
    _, _, normal = g.journal.next("mode.changed", mode="normal")
    assert (normal["actor"], normal["actor_role"]) == ("p-supervisor", "supervisor")
    _, etype, _ = g.scan("main-in", STAFF)
    assert etype == "access.granted"
    g.scan("main-out", STAFF)


def test_tokens_are_stored_hashed_and_can_be_revoked(api):
    g, client, tokens = api
    import sqlite3
    conn = sqlite3.connect(f"file:{g.site.db}?mode=ro", uri=True)
    stored = [r[0] for r in conn.execute("SELECT hash FROM tokens")]
    conn.close()
    assert tokens["guard"] not in stored and all(len(h) == 64 for h in stored)
    listing = gatekeeper("tokens", "list", "--config", str(g.site.config)).stdout
    assert "p-guard" in listing and tokens["guard"] not in listing
    r = gatekeeper("tokens", "add", "--config", str(g.site.config), "--person", "p-temp", "--role", "guard")
    temp = r.stdout.strip().splitlines()[-1]
    tid = next(line.split()[0] for line in gatekeeper("tokens", "list", "--config", str(g.site.config)).stdout.splitlines()
               if "p-temp" in line)
    assert call(client, "GET", "/status", token=temp).status_code == 200
    assert gatekeeper("tokens", "revoke", "--config", str(g.site.config), tid).returncode == 0
    assert call(client, "GET", "/status", token=temp).status_code == 401


def test_p9_a_guard_releases_a_held_exit_once_after_phoning_the_host(api):
    g, client, tokens = api
    text = g.site.visitor_pass("h-30", visit="v-30")
    g.scan("main-in", text)
    _, etype, _ = g.scan("main-out", text)
    assert etype == "exit.held"
    body = {"reason": "host confirmed by phone", "host_confirmed": True}
    assert call(client, "POST", "/visits/v-30/release", {"reason": "x" * 5}, tokens["guard"]).status_code == 422
    g.settle()
    before = g.unlocks(0)
    r = call(client, "POST", "/visits/v-30/release", body, tokens["guard"])
    assert r.json() == {"visit": "v-30", "door": "main", "opened": True}
    _, _, rel = g.journal.next("exit.released", visit="v-30")
    assert (rel["actor"], rel["actor_role"], rel["reason"]) == ("p-guard", "guard", "host confirmed by phone")
    _, _, out = g.journal.next("visit.checked_out", visit="v-30")
    assert (out["actor"], out["actor_role"]) == ("p-guard", "guard") and "released_by" not in out
    wait_until(lambda: g.unlocks(0) == before + 1, what="the released exit opens once")
    assert call(client, "POST", "/visits/v-30/release", body, tokens["guard"]).status_code == 404  # once
    _, etype, data = g.scan("main-in", text)
    assert data["reason"] == "pass_consumed"


def test_p9_a_supervisors_signoff_lets_the_next_exit_through(api):
    g, client, tokens = api
    text = g.site.visitor_pass("h-31", visit="v-31")
    g.scan("main-in", text)
    assert call(client, "POST", "/visits/v-31/signoff", token=tokens["guard"]).status_code == 403
    assert call(client, "POST", "/visits/v-31/signoff", token=tokens["central"]).status_code == 200
    _, _, so = g.journal.next("visit.signed_off", visit="v-31")
    assert (so["actor"], so["actor_role"]) == ("p-central", "central") and "by" not in so
    _, etype, data = g.scan("main-out", text)
    assert (etype, data["reason"]) == ("access.granted", "ok")


def test_p25_a_signoff_names_a_badge_holder_by_credential_ref(api):
    g, client, tokens = api
    r = call(client, "POST", "/visits/badge:04a1b2c3/signoff", token=tokens["central"])  # not as a reader reads it
    assert (r.status_code, r.json()["code"]) == (422, "invalid"), r.text
    r = call(client, "POST", "/visits/badge:0A0B0C0D/signoff", token=tokens["supervisor"])
    assert r.status_code == 200 and r.json()["visit"] == "badge:0A0B0C0D", r.text
    g.journal.next("visit.signed_off", visit="badge:0A0B0C0D")


def test_console_session_is_an_httponly_strict_cookie_and_changes_need_x_requested_with(api):
    g, client, tokens = api
    with httpx.Client(base_url=str(client.base_url), timeout=WAIT_S) as browser:
        assert browser.post("/session", json={"token": "gk_wrong"}).status_code == 401
        r = browser.post("/session", json={"token": tokens["guard"]})
        assert r.json() == {"person": "p-guard", "role": "guard"}
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and tokens["guard"].lower() not in cookie
        assert browser.get("/status").status_code == 200
        # a cross-site form could send the cookie, but not this header
        assert browser.post("/doors/main/open", json={"reason": "forged by a page"}).status_code == 403
        r = browser.post("/doors/main/open", json={"reason": "from the console"},
                         headers={"X-Requested-With": "gatekeeper-console"})
        assert r.status_code == 200
        g.journal.next("override.opened", reason="from the console", actor="p-guard")
        browser.delete("/session")
        assert browser.get("/status").status_code == 401
    # revoking a token ends the console sessions made from it at once
    temp = g.site.token("guard", "p-leaver")
    with httpx.Client(base_url=str(client.base_url), timeout=WAIT_S) as browser:
        assert browser.post("/session", json={"token": temp}).status_code == 200
        assert browser.get("/status").status_code == 200
        tid = next(line.split()[0] for line in gatekeeper("tokens", "list", "--config", str(g.site.config)).stdout
                   .splitlines() if "p-leaver" in line)
        assert gatekeeper("tokens", "revoke", "--config", str(g.site.config), tid).returncode == 0
        assert browser.get("/status").status_code == 401


def test_events_stream_delivers_a_denied_scan_live_and_resumes_from_last_event_id(api):
    g, client, tokens = api
    auth = {"Authorization": f"Bearer {tokens['guard']}"}
    with client.stream("GET", "/events/stream", headers=auth) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        g.readers["main-in"].send("DEADBEEF77")  # an unknown badge
        seen = None
        for line in r.iter_lines():
            if line.startswith("id: "):
                seen = int(line[4:])
            if line.startswith("data: ") and '"access.denied"' in line:
                event = json.loads(line[6:])
                break
    assert event["data"]["credential_ref"] == "badge:DEADBEEF77" and event["seq"] == seen
    with client.stream("GET", "/events/stream", headers={**auth, "Last-Event-ID": str(seen - 1)}) as r:
        first = next(json.loads(x[6:]) for x in r.iter_lines() if x.startswith("data: "))
    assert first["seq"] == seen


def test_metrics_count_decisions_by_reason_and_show_devices(api):
    g, client, _ = api
    g.scan("main-in", "DEADBEEF78")
    text = client.get("/metrics").text
    assert metric(text, "gatekeeper_decisions_total", result="denied", reason="unknown_credential") >= 1
    assert metric(text, "gatekeeper_decision_seconds_bucket", le="+Inf") >= 1
    assert metric(text, "gatekeeper_device_up", device="io1") == 1
    assert metric(text, "gatekeeper_mode", mode="normal") == 1
    # the daemon's own, from prometheus-client's process collector
    assert metric(text, "process_resident_memory_bytes") > 10e6
    assert metric(text, "process_open_fds") > 0


def test_health_says_degraded_while_a_device_is_down(api):
    g, client, _ = api
    assert client.get("/health").json()["status"] == "ok"
    g.door_io.send("mute")  # the I/O module stops answering
    wait_until(lambda: client.get("/health").json()["devices_down"] == ["io1"], what="io1 reported down")
    assert client.get("/health").json()["status"] == "degraded"
    g.door_io.send("unmute")
    wait_until(lambda: client.get("/health").json()["status"] == "ok", what="io1 back")
