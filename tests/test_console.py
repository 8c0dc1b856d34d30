"""The guard console in a real browser: Debian's chromium, driven by Playwright, against a running daemon
with its simulators. Screenshots go to test-artifacts/console/ for a person to look at."""
from __future__ import annotations

import os
import shutil

import pytest
from playwright.sync_api import expect, sync_playwright

from sitekit import ROOT, WAIT_S, make_site
from test_e2e_gate import Gate

pytestmark = pytest.mark.e2e

SHOTS = ROOT / "test-artifacts" / "console"
# Playwright's assertions give up after 5 s; what they wait for (a live feed entry, a reply) can take longer on
# a busy machine. Each still ends as soon as the page shows it.
expect.set_options(timeout=WAIT_S * 1000)
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def site(tmp_path_factory, module_procs):
    cam = module_procs.start("camera", "-m", "simulators.camera", "--listen", "127.0.0.1:0", stdin=True)
    url = cam.wait_for("camera listening").split()[-1]
    s = make_site(tmp_path_factory.mktemp("site"), api=True, walkin=True)
    s.add_reader(name="main-cam", type="camera", source=url, door="main", direction="in")
    assert s.import_lines([{"credential": "badge:04A1B2C3", "holder": "h-1", "category": "staff",
                            "areas": ["site/office"]}]).returncode == 0
    g = Gate(s, module_procs)
    g.start_hardware()
    g.start_daemon()
    yield g, cam, s.token("guard", "Wang Fang"), s.token("supervisor", "Zhao Min")
    g.io.close()


@pytest.fixture(scope="module")
def browser():
    assert os.path.exists(CHROMIUM), "chromium is missing: run scripts/setup.sh (it installs Debian's chromium)"
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        # as root, chromium's sandbox cannot start; the page is our own console on loopback
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"] if os.geteuid() == 0 else [])
        yield b
        b.close()


def test_a_guard_signs_in_sees_a_denial_live_releases_a_held_exit_and_prints_a_walkin(site, browser, tmp_path):
    g, cam, token, _ = site
    ctx = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    try:
        page.goto(g.site.api_url)
        expect(page.locator("#signin")).to_be_visible()
        page.fill("#token", "gk_wrong")
        page.click("#signin-form button")
        expect(page.locator("#signin-error")).to_have_text("That token is not valid.")
        page.fill("#token", token)
        page.click("#signin-form button")
        expect(page.locator("#console")).to_be_visible()
        expect(page.locator("#who")).to_contain_text("Wang Fang · guard")
        page.screenshot(path=SHOTS / "1-signed-in.png")

        # a denied scan stands out in the live feed
        g.readers["main-in"].send("DEADBEEF99")
        denied = page.locator("#feed li.deny", has_text="badge:DEADBEEF99")
        expect(denied).to_be_visible()
        expect(denied).to_contain_text("unknown_credential")
        page.screenshot(path=SHOTS / "2-denied-live.png")

        # a visitor without the host's sign-off is held at the exit; the guard phones and releases
        text = g.site.visitor_pass("h-40", visit="v-40")
        g.scan("main-in", text)
        g.scan("main-out", text)
        held = page.locator('#held li[data-visit="v-40"]')
        expect(held).to_be_visible()
        expect(page).to_have_title("(1) Held exits · Gatekeeper")
        page.screenshot(path=SHOTS / "3-held-exit.png")
        held.locator(".release-reason").fill("host Zhang confirmed by phone")
        held.locator(".host-confirmed").check()
        held.locator(".release").click()
        _, _, data = g.journal.next("exit.released", visit="v-40")
        assert (data["person"], data["reason"]) == ("Wang Fang", "host Zhang confirmed by phone")
        expect(held).to_have_count(0)
        expect(page).to_have_title("Gatekeeper")

        # a walk-in is registered and its printed QR opens the door at the camera
        page.fill("#w-name", "Li Lei")
        page.fill("#w-company", "Acme")
        page.fill("#w-id", "110105-19491231-002X")
        page.fill("#w-purpose", "delivery of samples")
        page.fill("#w-host", "h-1")
        page.select_option("#w-confirm", "phone")
        page.click("#walkin-form button[type=submit]")
        expect(page.locator("#printed")).to_be_visible()
        expect(page.locator("#pass-areas")).to_have_text("site/office, site/lobby")
        expect(page.locator("#pass-qr")).to_have_js_property("complete", True)
        assert page.locator("#pass-qr").evaluate("img => img.naturalWidth") > 0  # the PNG loaded
        page.screenshot(path=SHOTS / "4-walkin-printed.png", full_page=True)
        page.emulate_media(media="print")
        page.screenshot(path=SHOTS / "5-print-view.png")
        page.emulate_media(media="screen")
        visit = page.locator("#pass-visit").inner_text()
        png = page.request.get(g.site.api_url + page.locator("#pass-qr").get_attribute("src"))  # with the cookie
        assert png.ok and png.headers["content-type"] == "image/png"
        printed = tmp_path / "printed-pass.png"
        printed.write_bytes(png.body())
        cam.send(f"image {printed}")
        _, etype, data = g.journal.next(("access.granted", "access.denied"), reader="main-cam")
        assert (etype, data["credential_ref"]) == ("access.granted", f"pass:{visit}")
        expect(page.locator("#feed li", has_text=data["holder"]).first).to_be_visible()
        page.set_viewport_size({"width": 768, "height": 1024})  # the tablet at the gate, upright
        page.screenshot(path=SHOTS / "6-tablet.png", full_page=True)
    finally:
        ctx.close()


def sign_in(browser, g, token):
    ctx = browser.new_context(locale="en-US", viewport={"width": 1024, "height": 768})
    page = ctx.new_page()
    page.goto(g.site.api_url)
    page.fill("#token", token)
    page.click("#signin-form button")
    expect(page.locator("#console")).to_be_visible()
    return ctx, page


def test_p20_p15_a_guard_opens_a_door_and_locks_the_site_down_which_only_a_supervisor_ends(site, browser):
    g, _, guard, supervisor = site
    ctx, page = sign_in(browser, g, guard)
    ctx2 = None
    try:
        page.select_option("#open-door", "office")
        page.fill("#open-reason", "courier for the office")
        page.click("#open-form button")
        expect(page.locator("#doors-msg")).to_have_text("office: Opened")
        _, _, data = g.journal.next("override.opened", reason="courier for the office")
        assert (data["door"], data["person"]) == ("office", "Wang Fang")
        expect(page.locator("#lockdown-end")).to_be_hidden()  # a guard starts a lockdown, never ends one
        page.click("#lockdown-site")
        expect(page.locator("#mode")).to_have_text("LOCKDOWN")
        g.journal.next("mode.changed", mode="lockdown", scope="site", by="Wang Fang")
        page.screenshot(path=SHOTS / "8-lockdown.png")
        ctx2, boss = sign_in(browser, g, supervisor)
        boss.click("#lockdown-end")
        g.journal.next("mode.changed", mode="normal", scope="site", by="Zhao Min")
        expect(page.locator("#mode")).to_have_text("Normal")  # the guard's console follows the live feed
    finally:
        ctx.close()
        if ctx2:
            ctx2.close()


def test_the_console_speaks_chinese_to_a_chinese_browser(site, browser):
    g, _, _, _ = site
    ctx = browser.new_context(locale="zh-CN")
    page = ctx.new_page()
    try:
        page.goto(g.site.api_url)
        expect(page.locator("#signin h2")).to_have_text("登录")
        expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
        page.screenshot(path=SHOTS / "7-zh-CN-sign-in.png")
    finally:
        ctx.close()
