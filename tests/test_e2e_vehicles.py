"""P26 end to end: the daemon, a plate camera speaking GBK on a serial line, the Modbus door I/O module with a
barrier and its vehicle loop, a mosquitto and a central peer, all real processes; the barrier's coil read back
over Modbus, events as the central system receives them, the API as a guard calls it."""
from __future__ import annotations

from urllib.parse import quote

import httpx
import pytest

from demo.procs import listen_port
from mqttkit import Peer, event
from sitekit import NO_PORT, make_site, metric, wait_until
from test_e2e_gate import Gate

pytestmark = pytest.mark.e2e

COIL, LOOP = 5, 6
KNOWN = "沪B77777"

YARD = f"""
[[doors]]
name = "yard"
area = "site/parking"
perimeter = true
io = "io1"
kind = "barrier"
lock_coil = {COIL}
loop_input = {LOOP}
pulse_s = 0.3

[[readers]]
name = "yard-in"
url = "socket://127.0.0.1:{NO_PORT}"
door = "yard"
direction = "in"
encoding = "gbk"
"""


@pytest.fixture
def site(request, tmp_path, procs, broker):
    """The yard; `poll_ms` (indirect parameter) how often the gate reads its inputs."""
    poll_ms = getattr(request, "param", 100)
    s = make_site(tmp_path / "site", broker_port=broker.port, api=True, walkin=True)
    text = s.config.read_text().replace('tree = ["site", ', 'tree = ["site", "site/parking", ', 1)
    text = text.replace("poll_ms = 100", f"poll_ms = {poll_ms}", 1)
    s.config.write_text(text + YARD)
    r = s.import_lines([{"credential": f"plate:{KNOWN}", "holder": "h-1", "category": "staff", "areas": ["site"]}])
    assert r.returncode == 0, r.stderr
    central = Peer(broker.port, "acs/test/gate-1/events/#")
    g = Gate(s, procs)
    g.start_hardware()
    camera = procs.start("plate-camera", "-m", "simulators.plate_camera", "--listen", "127.0.0.1:0",
                         "--encoding", "gbk", stdin=True)
    s.set_reader_port("yard-in", listen_port(camera.wait_for("plate_camera listening")))
    g.start_daemon()
    camera.wait_for("badge_reader connected")  # the line it shares with the badge reader simulator says so
    g.daemon.wait_for("io module io1 ready", already=True)
    yield g, camera, central
    g.io.close()
    central.close()


def test_p26_an_unknown_plate_is_held_and_the_guard_admits_it_once(site):
    g, camera, central = site
    guard = {"Authorization": f"Bearer {g.site.token('guard', 'g-wang')}"}
    url = g.site.api_url
    before = g.unlocks(COIL)
    camera.send("京A 12345")  # GBK on the line, a space in the plate
    held = event(central, "vehicle.held", plate="京A12345")["data"]
    assert (held["door"], held["direction"], held["reason"], held["credential_ref"]) == (
        "yard", "in", "unknown_credential", "plate:京A12345")
    listed = httpx.get(url + "/vehicles/held", headers=guard, timeout=10).json()
    assert [(v["plate"], v["door"]) for v in listed] == [("京A12345", "yard")]
    assert metric(httpx.get(url + "/metrics", timeout=10).text, "gatekeeper_held_vehicles") == 1
    assert g.unlocks(COIL) == before  # held: the barrier stays down
    r = httpx.post(url + "/vehicles/" + quote("京a12345") + "/admit", json={"reason": "delivery expected"},
                   headers=guard, timeout=10)
    assert r.status_code == 200, r.text
    assert r.json() == {"plate": "京A12345", "door": "yard", "opened": True}
    admitted = event(central, "override.opened", plate="京A12345")["data"]
    assert (admitted["actor"], admitted["reason"], admitted["door"]) == ("g-wang", "delivery expected", "yard")
    wait_until(lambda: g.unlocks(COIL) == before + 1, what="the barrier raised once")
    wait_until(lambda: g.locked(COIL), what="the barrier down again after its pulse")
    again = httpx.post(url + "/vehicles/" + quote("京A12345") + "/admit", json={"reason": "once more"},
                       headers=guard, timeout=10)
    assert (again.status_code, again.json()["code"]) == (404, "no_held_vehicle")
    assert httpx.get(url + "/vehicles/held", headers=guard, timeout=10).json() == []
    assert g.unlocks(COIL) == before + 1  # once


@pytest.mark.parametrize("site", [100, 5000], ids=["seen_by_a_poll", "on_since_the_last_poll"], indirect=True)
def test_p26_the_barrier_never_closes_on_a_vehicle_on_its_loop(site):
    """Read every 5 s, the pulse ends before any poll has seen the car: the gate reads the loop itself
    before it closes."""
    g, camera, central = site
    before = g.unlocks(COIL)
    g.door_io.send("car yard on")
    g.door_io.wait_for(f"door_io input {LOOP} on")
    camera.send(KNOWN)  # allow-listed: decided like a badge
    granted = event(central, "access.granted", credential_ref=f"plate:{KNOWN}")["data"]
    assert granted["credential_kind"] == "plate"
    wait_until(lambda: g.unlocks(COIL) == before + 1, what="the barrier raised")
    # the 0.3 s pulse ends with the car on the loop: the close is put off, the barrier stays up
    g.daemon.wait_for("barrier yard: a vehicle on its loop, closing put off")
    assert not g.locked(COIL)
    g.door_io.send("car yard off")
    g.daemon.wait_for("barrier yard: its loop is clear, closing")
    wait_until(lambda: g.locked(COIL), what="the barrier down once the loop is clear")
    assert g.unlocks(COIL) == before + 1


def test_p26_a_vehicle_registered_to_a_visit_goes_through_at_its_next_read(site):
    g, camera, central = site
    guard = {"Authorization": f"Bearer {g.site.token('guard', 'g-wang')}", "X-Requested-With": "t"}
    url = g.site.api_url
    r = httpx.post(url + "/visits", headers=guard, timeout=10, json={
        "visitor": {"name": "Zhang Wei", "company": "ACME", "id_number": "E12345678"}, "purpose": "delivery",
        "host": "h-1", "host_confirmation": "phone", "areas": ["site/lobby", "site/parking"]})
    assert r.status_code == 201, r.text
    visit = r.json()["visit"]
    bad = httpx.post(url + f"/visits/{visit}/vehicle", json={"plate": "  "}, headers=guard, timeout=10)
    assert (bad.status_code, bad.json()["code"]) == (422, "bad_plate")
    before = g.unlocks(COIL)
    r = httpx.post(url + f"/visits/{visit}/vehicle", json={"plate": "粤b 8888"}, headers=guard, timeout=10)
    assert r.status_code == 200, r.text
    assert (r.json()["plate"], r.json()["new"]) == ("粤B8888", True)
    registered = event(central, "visit.amended", plate="粤B8888")["data"]
    assert (registered["visit"], registered["actor"]) == (visit, "g-wang")
    assert g.unlocks(COIL) == before  # a registration opens nothing by itself
    camera.send("粤B8888")
    granted = event(central, "access.granted", credential_ref="plate:粤B8888")["data"]
    assert (granted["credential_kind"], granted["category"]) == ("plate", "visitor")
    wait_until(lambda: g.unlocks(COIL) == before + 1, what="the barrier raised for the registered car")
    gone = httpx.post(url + "/visits/0123456789abcdef/vehicle", json={"plate": "粤B8888"}, headers=guard, timeout=10)
    assert (gone.status_code, gone.json()["code"]) == (404, "no_such_visit")


def test_p26_a_barrier_with_a_car_under_it_stays_up_when_its_module_comes_back(site):
    """The module drops while the barrier is up over a car: on reconnection every output is driven off first
    (P18), except this barrier, whose loop is read first; it closes once the car has left the loop."""
    g, camera, central = site
    g.door_io.send("car yard on")
    g.door_io.wait_for(f"door_io input {LOOP} on")
    camera.send(KNOWN)
    event(central, "access.granted", credential_ref=f"plate:{KNOWN}")
    wait_until(lambda: not g.locked(COIL), what="the barrier raised")
    g.door_io.send("down")
    g.door_io.wait_for("door_io down")
    g.journal.next("device.fault", device="io1")  # the gate noticed it is gone
    g.door_io.send("up")
    g.journal.next("device.recovered", device="io1")  # every output driven off first, then this
    g.io.close()  # the test's own connection went down with the module too
    assert g.io.connect()
    assert not g.locked(COIL)  # the reconnection left it up: a car is on the loop
    g.door_io.send("car yard off")
    wait_until(lambda: g.locked(COIL), what="the barrier down once the loop is clear")


def test_p26_the_guard_lets_a_held_vehicle_through_from_the_console_in_chinese(site):
    """The console lists the held car with its plate, in Chinese; the guard's reason and one click raise the
    barrier once, and the car leaves the list."""
    import os
    import shutil
    from playwright.sync_api import expect, sync_playwright
    from sitekit import WAIT_S
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    assert os.path.exists(chromium), "chromium is missing: run scripts/setup.sh (it installs Debian's chromium)"
    g, camera, central = site
    token = g.site.token("guard", "g-wang")
    before = g.unlocks(COIL)
    camera.send("京A12345")
    event(central, "vehicle.held", plate="京A12345")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"] if os.geteuid() == 0 else [])
        try:
            page = b.new_context(locale="zh-CN").new_page()
            page.goto(g.site.api_url)
            page.fill("#token", token)
            page.click("#signin-form button")
            item = page.locator("#vehicles li", has_text="京A12345")
            expect(item).to_be_visible(timeout=WAIT_S * 1000)
            expect(page.locator("h2", has_text="道闸待放行车辆")).to_be_visible()
            expect(item).to_contain_text("未知卡或通行证")  # the reason, in the guard's language
            item.locator(".admit-reason").fill("送货车辆，仓库确认")
            item.locator("button.admit").click()
            expect(page.locator("#vehicles li")).to_have_count(0, timeout=WAIT_S * 1000)
        finally:
            b.close()
    admitted = event(central, "override.opened", plate="京A12345")["data"]
    assert (admitted["actor"], admitted["reason"]) == ("g-wang", "送货车辆，仓库确认")
    wait_until(lambda: g.unlocks(COIL) == before + 1, what="the barrier raised once from the console")
