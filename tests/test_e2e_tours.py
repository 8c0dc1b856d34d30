"""P21 end to end: the daemon, a broker, the door I/O and reader simulators, and a guard walking a tour at the
checkpoint readers (simulators/guard_tour.py); what the central system sees over MQTT and what GET /tours and
PUT /tours/{name} show and do."""
from __future__ import annotations

import json
from datetime import datetime
from zoneinfo import ZoneInfo

import httpx
import pytest

from demo.procs import listen_port
from mqttkit import Peer
from sitekit import make_site, wait_until
from playwright.sync_api import expect
from test_console import browser, sign_in  # noqa: F401  (browser: the module's chromium, a fixture)
from test_e2e_gate import Gate

pytestmark = pytest.mark.e2e

GUARD = "0A0B0C0D"
CLERK = "0C1E2C0D"  # staff without the guard role
SUPERVISOR = "05050505"
CHECKPOINTS = ("cp-1", "cp-2", "cp-3")


def _of(central: Peer, etype: str, **match) -> list[dict]:
    return [e for e in central.events() if e["type"] == etype and match.items() <= e["data"].items()]


def _seen(central: Peer, etype: str, **match) -> dict:
    central.wait(lambda _: _of(central, etype, **match), what=f"{etype} {match}")
    return _of(central, etype, **match)[0]


@pytest.fixture
def central(broker):
    """The central system's view of the gate's events, closed whatever happens."""
    peer = Peer(broker.port, "acs/test/gate-1/events/#")
    yield peer
    peer.close()


def tour_site(tmp_path, procs, broker, limit_min: float = 30):
    """A site with three checkpoint readers served by the guard-tour simulator and one route over them whose
    only round tonight is due this minute (site time), so a walk now is on time whenever the test runs."""
    site = make_site(tmp_path / "site", broker_port=broker.port, api=True)
    assert site.import_lines([
        {"credential": f"badge:{GUARD}", "holder": "h-guard", "category": "staff", "areas": ["site"], "roles": ["guard"]},
        {"credential": f"badge:{CLERK}", "holder": "h-clerk", "category": "staff", "areas": ["site"]},
        {"credential": f"badge:{SUPERVISOR}", "holder": "h-sup", "category": "staff", "areas": ["site"],
         "roles": ["supervisor"]},
    ]).returncode == 0
    g = Gate(site, procs)
    g.start_hardware()
    walker = procs.start("guard_tour", "-m", "simulators.guard_tour",
                         *[a for cp in CHECKPOINTS for a in ("--checkpoint", f"{cp}=127.0.0.1:0")],
                         "--badge", GUARD, stdin=True)
    for cp in CHECKPOINTS:
        site.add_reader(name=cp, url=f"socket://127.0.0.1:{listen_port(walker.wait_for(f'guard_tour listening {cp} '))}",
                        checkpoint=True)
    due = datetime.now(ZoneInfo("Asia/Shanghai"))
    start, end = due.strftime("%H:%M"), datetime.fromtimestamp(due.timestamp() + 3600, due.tzinfo).strftime("%H:%M")
    site.config.write_text(site.config.read_text() + f'\n[[tours]]\nname = "north"\ncheckpoints = {json.dumps(CHECKPOINTS)}'
                           f'\nstart = "{start}"\nend = "{end}"\nrounds = 1\nwindow_min = 15\nlimit_min = {limit_min}\n')
    g.start_daemon()
    walker.wait_for("guard_tour all checkpoints connected")
    return site, g, walker, start


def test_p21_a_round_walked_at_checkpoint_readers_reaches_the_central_system(tmp_path, procs, broker, central,
                                                                             browser):  # noqa: F811
    site, g, walker, start = tour_site(tmp_path, procs, broker)

    # a clerk's tap counts for nothing and opens nothing
    walker.send(f"tap cp-1 {CLERK}")
    e = _seen(central, "tour.checkpoint", holder="h-clerk")
    assert (e["data"]["counted"], e["data"]["reason"], e["data"]["tour"]) == (False, "not_a_guard", None)

    # the guard walks the round out of order: cp-3 before cp-2
    walker.send("walk cp-1,cp-3,cp-2 gap=0")
    started = _seen(central, "tour.started", tour="north")
    assert (started["data"]["round"], started["data"]["checkpoint"], started["data"]["holder"]) == (1, "cp-1", "h-guard")
    alarm = _seen(central, "alarm.raised", alarm="tour_out_of_order", checkpoint="cp-3")
    assert (alarm["data"]["tour"], alarm["data"]["expected_checkpoint"], alarm["data"]["skipped"]) == ("north", "cp-2", ["cp-2"])
    done = _seen(central, "tour.completed", tour="north")
    assert done["data"]["out_of_order"] == 2 and done["data"]["late"] is False
    # P21: a patrol tap is not an entry: no decision, no door opened
    assert not [e for e in central.events() if e["type"].startswith("access.")]
    assert g.unlocks(0) == 0 and g.unlocks(1) == 0

    # GET /tours: guards read tonight's rounds and their timeline
    url = site.api_url
    site.wait_api()
    guard = {"Authorization": f"Bearer {site.token('guard', 'g-1')}"}
    assert httpx.get(url + "/tours", timeout=30).status_code == 401
    r = httpx.get(url + "/tours", headers=guard, timeout=30)
    assert r.status_code == 200, r.text
    (north,) = r.json()
    (rnd,) = north["rounds"]
    assert rnd["state"] == "completed" and rnd["holder"] == "h-guard"
    assert [(t["checkpoint"], t["order"]) for t in rnd["timeline"]] == [
        ("cp-1", "in_order"), ("cp-3", "out_of_order"), ("cp-2", "out_of_order")]

    # PUT /tours/{name}: a supervisor's route change, journaled with who; a guard may not
    body = {"checkpoints": ["cp-3", "cp-2", "cp-1"], "start": start, "limit_min": 20, "reason": "cp-2 blocked by works"}
    assert httpx.put(url + "/tours/north", json=body, headers={**guard, "X-Requested-With": "t"}, timeout=30).status_code == 403
    sup = {"Authorization": f"Bearer {site.token('supervisor', 's-1')}", "X-Requested-With": "t"}
    assert httpx.put(url + "/tours/north", json={**body, "checkpoints": ["cp-1", "main-in"]}, headers=sup,
                     timeout=30).status_code == 422  # not a checkpoint reader
    assert httpx.put(url + "/tours/south", json=body, headers=sup, timeout=30).status_code == 404
    r = httpx.put(url + "/tours/north", json=body, headers=sup, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["checkpoints"] == ["cp-3", "cp-2", "cp-1"] and r.json()["limit_min"] == 20
    changed = _seen(central, "tour.changed", tour="north")
    assert (changed["data"]["actor"], changed["data"]["actor_role"], changed["data"]["reason"]) == (
        "s-1", "supervisor", "cp-2 blocked by works")
    assert changed["data"]["previous"]["checkpoints"] == list(CHECKPOINTS)

    # the console shows tonight's round and its timeline, in the guard's language
    for lang, done_word, wrong in (("en", "completed", "out of order"), ("zh", "已完成", "顺序错误")):
        ctx, page = sign_in(browser, g, site.token("guard", "g-2"), lang)
        try:
            rnd = page.locator('#tours .tour[data-tour="north"] li.round[data-round="1"]')
            expect(rnd).to_contain_text(done_word)
            expect(rnd.locator(".timeline li.out_of_order")).to_have_count(2)
            expect(rnd.locator(".timeline li.out_of_order").first).to_contain_text(wrong)
        finally:
            ctx.close()


def test_p21_the_daemon_raises_tour_late_on_its_own_clock(tmp_path, procs, broker, central):
    # a limit of 3 s: the daemon's periodic check, not a tap, finds the round over it
    site, g, walker, _ = tour_site(tmp_path, procs, broker, limit_min=0.05)
    walker.send("walk cp-1,cp-2 gap=0")
    _seen(central, "tour.started", tour="north")
    late = _seen(central, "alarm.raised", alarm="tour_late")
    # where the guard is awaited: the first checkpoint not tapped before the alarm (cp-3, unless a busy machine
    # held the walk back past the limit)
    tapped = {e["data"]["checkpoint"] for e in _of(central, "tour.checkpoint", tour="north") if e["seq"] < late["seq"]}
    awaited = next(cp for cp in CHECKPOINTS if cp not in tapped)
    assert (late["data"]["tour"], late["data"]["round"], late["data"]["checkpoint"]) == ("north", 1, awaited)
    walker.send("tap cp-3")
    done = _seen(central, "tour.completed", tour="north")
    assert done["data"]["late"] is True


def _line(walker, port: int):
    """A connection to one of the walker's lines, or None while it refuses (a refusal from a listener that said
    it listens has been seen once on a loaded machine; a walker that died says why, with its output)."""
    import socket
    try:
        return socket.create_connection(("127.0.0.1", port), timeout=30)
    except ConnectionRefusedError:
        assert walker.p.poll() is None, f"guard_tour exited ({walker.p.poll()}):\n" + "\n".join(walker.output[-40:])
        return None


def test_p21_the_guard_tour_simulator_walks_a_route_skipping_one(procs):
    import socket
    walker = procs.start("guard_tour", "-m", "simulators.guard_tour",
                         *[a for cp in CHECKPOINTS for a in ("--checkpoint", f"{cp}=127.0.0.1:0")],
                         "--badge", GUARD, stdin=True)
    lines = {}
    for cp in CHECKPOINTS:  # the gate's side: one serial line per checkpoint reader
        port = listen_port(walker.wait_for(f"guard_tour listening {cp} "))
        lines[cp] = wait_until(lambda: _line(walker, port), what=f"{cp}'s line on port {port} answering")
    try:
        walker.wait_for("guard_tour all checkpoints connected")
        walker.send("walk skip=cp-2 gap=0")
        assert walker.wait_for("guard_tour walked").endswith("walked cp-1,cp-3")
        for cp in ("cp-1", "cp-3"):
            got = b""
            while not got.endswith(b"\r\n"):
                got += lines[cp].recv(64)
            assert got == f"{GUARD}\r\n".encode(), (cp, got)
        lines["cp-2"].settimeout(0.2)  # what was sent is already here: a skipped line has nothing
        with pytest.raises(socket.timeout):
            lines["cp-2"].recv(64)
    finally:
        for s in lines.values():
            s.close()
