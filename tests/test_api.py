"""The local API against a running daemon: the auth matrix, a guard's override opening a real door,
modes by role, bad bodies named by field."""
from __future__ import annotations

import httpx
import pytest

from edge.procs import free_port
from sitekit import gatekeeper, make_site, wait_until
from test_e2e_gate import STAFF, staffed_gate

pytestmark = pytest.mark.e2e

ROUTES = [  # (method, path, body, least role)
    ("GET", "/status", None, "guard"),
    ("GET", "/events", None, "guard"),
    ("GET", "/occupancy", None, "guard"),
    ("POST", "/doors/main/open", {"reason": "delivery at the gate"}, "guard"),
    ("POST", "/mode", {"mode": "lockdown", "scope": "gate", "reason": "drill"}, "guard"),
]


@pytest.fixture(scope="module")
def api(tmp_path_factory, module_procs):
    site = make_site(tmp_path_factory.mktemp("site"))
    port = free_port()
    site.config.write_text(site.config.read_text() + f"\n[api]\nport = {port}\n")
    tokens = {}
    for role in ("guard", "supervisor", "central"):
        r = gatekeeper("tokens", "add", "--config", str(site.config), "--person", f"p-{role}", "--role", role)
        assert r.returncode == 0, r.stderr
        tokens[role] = r.stdout.strip().splitlines()[-1]
    g = staffed_gate(site, module_procs)
    g.daemon.wait_for("io module io1 ready", already=True)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
    wait_until(lambda: _up(client), what="the API answering")
    yield g, client, tokens
    client.close()
    g.io.close()


def _up(client) -> bool:
    try:
        return client.get("/health").status_code == 200
    except httpx.TransportError:
        return False


def call(client, method, path, body=None, token=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.request(method, path, json=body, headers=headers)


@pytest.mark.parametrize("method, path, body, least", ROUTES)
def test_auth_matrix(api, method, path, body, least):
    g, client, tokens = api
    assert call(client, method, path, body).status_code == 401
    assert call(client, method, path, body, "gk_not-a-token").status_code == 401
    assert call(client, method, path, body, tokens["central"]).status_code == 403
    for role in ("guard", "supervisor"):
        r = call(client, method, path, body, tokens[role])
        assert r.status_code == 200, (role, r.text)
    if path == "/mode":  # leave the gate as found: only a supervisor ends a lockdown
        assert call(client, "POST", "/mode", {"mode": "normal", "reason": "drill over"},
                    tokens["guard"]).status_code == 403
        assert call(client, "POST", "/mode", {"mode": "normal", "reason": "drill over"},
                    tokens["supervisor"]).status_code == 200


def test_health_needs_no_token(api):
    _, client, _ = api
    assert client.get("/health").json()["status"] == "ok"


def test_p20_a_guard_override_opens_the_door_once_and_is_journaled_with_person_and_reason(api):
    g, client, tokens = api
    g.settle()
    before = g.unlocks(0)
    r = call(client, "POST", "/doors/main/open", {"reason": "courier with a pallet"}, tokens["guard"])
    assert r.json() == {"door": "main", "opened": True}
    _, _, data = g.journal.next("override.opened", reason="courier with a pallet")
    assert (data["door"], data["person"], data["role"]) == ("main", "p-guard", "guard")
    wait_until(lambda: g.unlocks(0) == before + 1, what="the override's unlock")


def test_p20_overrides_are_rate_limited(api):
    _, client, tokens = api
    codes = [call(client, "POST", "/doors/office/open", {"reason": "testing the limit"}, tokens["supervisor"]).status_code
             for _ in range(8)]
    assert codes[:6] == [200] * 6 and codes[6:] == [429, 429]


def test_bad_input_is_named_and_changes_nothing(api):
    g, client, tokens = api
    r = call(client, "POST", "/doors/main/open", {"reason": ""}, tokens["guard"])
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == "reason"
    r = call(client, "POST", "/doors/main/open", {"why": "x"}, tokens["guard"])
    assert r.status_code == 422
    r = call(client, "POST", "/doors/nowhere/open", {"reason": "no such door"}, tokens["guard"])
    assert r.status_code == 404
    r = call(client, "POST", "/mode", {"mode": "fire", "scope": "site", "reason": "alarm"}, tokens["supervisor"])
    assert r.status_code == 422
    r = client.post("/doors/main/open", content=b"x" * 70_000,
                    headers={"Authorization": f"Bearer {tokens['guard']}", "Content-Type": "application/json"})
    assert r.status_code == 413
    assert client.get("/health").json()["mode"] == "normal"


def test_p16_fire_mode_is_a_supervisors_and_not_ended_while_the_input_is_on(api):
    g, client, tokens = api
    assert call(client, "POST", "/mode", {"mode": "fire", "reason": "evacuation"}, tokens["guard"]).status_code == 403
    g.door_io.send("input 100 on")
    g.journal.next("mode.changed", mode="fire")
    r = call(client, "POST", "/mode", {"mode": "normal", "reason": "all clear"}, tokens["supervisor"])
    assert r.status_code == 409
    g.door_io.send("input 100 off")
    wait_until(lambda: call(client, "POST", "/mode", {"mode": "normal", "reason": "all clear"},
                            tokens["supervisor"]).status_code == 200, what="fire mode ended once the input is off")
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
    assert (rel["person"], rel["reason"]) == ("p-guard", "host confirmed by phone")
    g.journal.next("visit.checked_out", visit="v-30")
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
    _, etype, data = g.scan("main-out", text)
    assert (etype, data["reason"]) == ("access.granted", "ok")
