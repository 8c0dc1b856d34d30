"""The guard console in a real browser: Debian's chromium, driven by Playwright, against a running daemon
with its simulators, as a guard and a supervisor use it through a shift, in English and in Chinese, on a
phone, a tablet and a desk screen. Screenshots go to test-artifacts/console/ for a person to look at."""
from __future__ import annotations

import os
import shutil
import time
from datetime import datetime
from zoneinfo import ZoneInfo

import httpx
import pytest
from playwright.sync_api import expect, sync_playwright

from sitekit import ROOT, WAIT_S, iso, make_site, wait_until
from test_e2e_gate import SUPERVISOR, Gate

pytestmark = pytest.mark.e2e

SHOTS = ROOT / "test-artifacts" / "console"
# Playwright's assertions give up after 5 s; what they wait for (a live feed entry, a reply) can take longer on
# a busy machine. Each still ends as soon as the page shows it.
expect.set_options(timeout=WAIT_S * 1000)
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
WIDTHS = (390, 768, 1024, 1280)  # a phone, a tablet upright and flat, a desk screen
LOCALES = {"en": "en-US", "zh": "zh-CN"}
LONG_HOLDER = "h-visitor-" + "0123456789abcdef" * 3  # ids a guard sees must wrap, not widen the page
LONG_NAME = "欧阳娜娜（上海某某精密机械科技有限公司驻场代表）"


@pytest.fixture(scope="module")
def site(tmp_path_factory, module_procs):
    cam = module_procs.start("camera", "-m", "simulators.camera", "--listen", "127.0.0.1:0", stdin=True)
    url = cam.wait_for("camera listening").split()[-1]
    s = make_site(tmp_path_factory.mktemp("site"), api=True, walkin=True)
    s.add_reader(name="main-cam", type="camera", source=url, door="main", direction="in")
    now = time.time()
    people = [("04A1B2C3", "h-1", "staff", "张伟", ["site/office"]),
              (SUPERVISOR, "h-2", "staff", "Zhao Min", ["site"]),
              ("04A1B2C4", "h-3", "staff", "李娜", ["site"]),
              ("04A1B2C5", "h-4", "staff", "Chen Jie", ["site"]),
              ("04A1B2C6", LONG_HOLDER, "visitor", LONG_NAME, ["site/lobby"])]
    r = s.import_lines([{"credential": f"badge:{c}", "holder": h, "category": cat, "name": n, "areas": a,
                         **({"valid_from": iso(now - 3600), "valid_until": iso(now + 86400), "host": "h-1"}
                            if cat == "visitor" else {})}
                        for c, h, cat, n, a in people])
    assert r.returncode == 0, r.stderr
    g = Gate(s, module_procs)
    g.start_hardware()
    g.start_daemon()
    g.daemon.wait_for("io module io1 ready", already=True)
    guard, boss = s.token("guard", "Wang Fang"), s.token("supervisor", "Zhao Min")
    yield g, cam, guard, boss
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


def sign_in(browser, g, token, lang="en", width=1024):
    ctx = browser.new_context(locale=LOCALES[lang], viewport={"width": width, "height": 900},
                              timezone_id="America/New_York")  # the site's zone is Shanghai: times follow the site
    page = ctx.new_page()
    page.goto(g.site.api_url)
    page.fill("#token", token)
    page.click("#signin-form button")
    expect(page.locator("#signout")).to_be_visible()  # the console, or in fire mode the muster
    return ctx, page


def api(g, token, method, path, body=None):
    r = httpx.request(method, g.site.api_url + path, json=body, headers={"Authorization": f"Bearer {token}"},
                      timeout=WAIT_S)
    assert r.status_code < 300, (r.status_code, r.text)
    return r.json()


def normal_again(g, boss):
    mode = api(g, boss, "GET", "/status")["mode"]
    if mode != "normal":
        api(g, boss, "POST", "/mode", {"mode": "normal", "scope": "gate", "reason": "test over"})


def test_a_guard_signs_in_sees_a_denial_live_releases_a_held_exit_and_prints_a_walkin(site, browser, tmp_path):
    g, cam, token, _ = site
    ctx = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 900}, timezone_id="America/New_York")
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

        # a denied scan stands out in the live feed, its reason in words
        g.readers["main-in"].send("DEADBEEF99")
        denied = page.locator("#feed li.deny", has_text="badge:DEADBEEF99")
        expect(denied).to_be_visible()
        expect(denied).to_contain_text("unknown card or pass")
        # its time is the site's (Shanghai), not the browser's (New York)
        at = datetime.fromisoformat(denied.locator("time").get_attribute("datetime").replace("Z", "+00:00"))
        expect(denied.locator("time")).to_have_text(f"{at.astimezone(ZoneInfo('Asia/Shanghai')):%H:%M:%S}")
        # a granted one shows the person by name, the id beside it
        g.scan("main-in", SUPERVISOR)
        granted = page.locator('#feed li[data-type="access.granted"]', has_text="Zhao Min").first
        expect(granted).to_be_visible()
        expect(granted.locator(".pid")).to_have_text("h-2")
        page.screenshot(path=SHOTS / "2-denied-live.png")

        # a visitor without the host's sign-off is held at the exit; the guard phones and releases
        text = g.site.visitor_pass("h-40", visit="v-40")
        g.scan("main-in", text)
        g.scan("main-out", text)
        held = page.locator('#held li[data-visit="v-40"]')
        expect(held).to_be_visible()
        expect(held).to_contain_text("张伟")  # the host, by name
        expect(page).to_have_title("(1) Held exits · Gatekeeper")
        page.screenshot(path=SHOTS / "3-held-exit.png")
        held.locator(".release-reason").fill("host Zhang confirmed by phone")
        held.locator(".host-confirmed").check()
        held.locator(".release").click()
        _, _, data = g.journal.next("exit.released", visit="v-40")
        assert (data["actor"], data["reason"]) == ("Wang Fang", "host Zhang confirmed by phone")
        expect(held).to_have_count(0)
        expect(page).to_have_title("Gatekeeper")

        # a walk-in is registered; the printed pass names the visitor, the host, the areas and the end
        fill_walkin(page, "Li Lei", "110105-19491231-002X")
        expect(page.locator("#printed")).to_be_visible()
        expect(page.locator("#pass-name")).to_contain_text("Li Lei")
        expect(page.locator("#pass-name")).to_contain_text("Acme")
        expect(page.locator("#pass-host")).to_contain_text("张伟")
        expect(page.locator("#pass-areas")).to_have_text("site/office, site/lobby")
        expect(page.locator("#pass-until")).not_to_be_empty()
        expect(page.locator("#pass-qr")).to_have_js_property("complete", True)
        assert page.locator("#pass-qr").evaluate("img => img.naturalWidth") > 0  # the PNG loaded
        for field in ("#w-name", "#w-company", "#w-id", "#w-purpose", "#w-host"):  # ready for the next visitor
            expect(page.locator(field)).to_have_value("")
        page.screenshot(path=SHOTS / "4-walkin-printed.png", full_page=True)
        page.emulate_media(media="print")
        page.screenshot(path=SHOTS / "5-print-view.png")
        page.emulate_media(media="screen")
        # the pass text goes to the clipboard, for a phone
        ctx.grant_permissions(["clipboard-read", "clipboard-write"], origin=g.site.api_url)
        page.click("#copy-pass")
        expect(page.locator("#copy-msg")).to_have_text("Pass text copied")
        copied = page.evaluate("navigator.clipboard.readText()")
        visit = page.locator("#pass-visit").inner_text()
        assert api(g, token, "GET", f"/visits/{visit}")["pass"] == copied

        # the same ID again the same day: the guard is warned, and may register again on purpose
        fill_walkin(page, "Li Lei", "110105-19491231-002X")
        expect(page.locator("#w-repeat-box")).to_be_visible()
        expect(page.locator("#w-repeat-text")).to_contain_text("already")
        page.screenshot(path=SHOTS / "4b-walkin-twice.png", full_page=True)
        page.click("#w-repeat")
        expect(page.locator("#pass-visit")).not_to_have_text(visit)
        expect(page.locator("#w-repeat-box")).to_be_hidden()

        # the printed QR opens the door at the camera
        png = page.request.get(g.site.api_url + page.locator("#pass-qr").get_attribute("src"))  # with the cookie
        assert png.ok and png.headers["content-type"] == "image/png"
        printed = tmp_path / "printed-pass.png"
        printed.write_bytes(png.body())
        cam.send(f"image {printed}")
        _, etype, data = g.journal.next(("access.granted", "access.denied"), reader="main-cam")
        assert (etype, data["credential_ref"]) == ("access.granted", f"pass:{page.locator('#pass-visit').inner_text()}")
        expect(page.locator("#feed li", has_text="Li Lei").first).to_be_visible()
    finally:
        ctx.close()


def fill_walkin(page, name, id_number):
    page.fill("#w-name", name)
    page.fill("#w-company", "Acme")
    page.fill("#w-id", id_number)
    page.fill("#w-purpose", "delivery of samples")
    page.fill("#w-host", "h-1")
    page.select_option("#w-confirm", "phone")
    page.click("#walkin-form button[type=submit]")


def test_p20_p15_a_guard_opens_a_door_and_a_site_lockdown_asks_first_and_only_a_supervisor_ends_it(site, browser):
    g, _, guard, boss = site
    ctx, page = sign_in(browser, g, guard)
    ctx2 = None
    try:
        page.select_option("#open-door", "office")
        page.fill("#open-reason", "courier for the office")
        page.click("#open-form button")
        expect(page.locator("#doors-msg")).to_have_text("office: Opened")
        _, _, data = g.journal.next("override.opened", reason="courier for the office")
        assert (data["door"], data["actor"]) == ("office", "Wang Fang")
        expect(page.locator("#lockdown-end")).to_be_hidden()  # a guard starts a lockdown, never ends one

        # one tap does not lock the site: it asks, and cancelling changes nothing
        page.click("#lockdown-site")
        expect(page.locator("#confirm")).to_be_visible()
        expect(page.locator("#confirm-text")).to_contain_text("whole site")
        page.screenshot(path=SHOTS / "7-confirm-site-lockdown.png")
        page.click("#confirm-cancel")
        expect(page.locator("#confirm")).to_be_hidden()
        expect(page.locator("#mode")).to_have_text("Normal")
        page.click("#lockdown-site")
        page.click("#confirm-ok")
        expect(page.locator("#mode")).to_have_text("LOCKDOWN")
        # the first mode change after the cancel is the confirmed one
        g.journal.next("mode.changed", mode="lockdown", scope="site", actor="Wang Fang")
        expect(page.locator("#banner")).to_contain_text("SITE LOCKDOWN")
        page.screenshot(path=SHOTS / "8-lockdown.png")

        ctx2, chief = sign_in(browser, g, boss)
        expect(chief.locator("#banner")).to_be_visible()  # on every view, whoever signs in
        chief.click("#lockdown-end")
        chief.click("#confirm-ok")
        g.journal.next("mode.changed", mode="normal", scope="site", actor="Zhao Min")
        expect(page.locator("#mode")).to_have_text("Normal")  # the guard's console follows the live feed
        expect(page.locator("#banner")).to_be_hidden()
    finally:
        ctx.close()
        if ctx2:
            ctx2.close()
        normal_again(g, boss)


def test_p19_an_alarm_stands_out_sounds_once_and_a_guard_acknowledges_it_in_the_journal(site, browser):
    g, _, guard, boss = site
    ctx, page = sign_in(browser, g, guard)
    try:
        g.settle()
        g.door_io.send("input 0 on")  # the main door pushed open without a grant
        seq, _, _ = g.journal.next("door.forced", door="main")
        g.door_io.send("input 0 off")
        alarm = page.locator(f'#alarm-list li[data-seq="{seq}"]')
        expect(alarm).to_be_visible()
        expect(alarm).to_contain_text("DOOR FORCED")
        expect(page.locator("body")).to_have_attribute("data-beeps", "1")
        page.screenshot(path=SHOTS / "9-alarm.png")
        alarm.locator("button.ack").click()
        _, _, data = g.journal.next("alarm.acknowledged", alarm_seq=seq)
        assert (data["actor"], data["alarm_type"]) == ("Wang Fang", "door.forced")
        expect(alarm).to_have_count(0)
        expect(page.locator("body")).to_have_attribute("data-beeps", "1")  # once, not again at the ack
        assert seq not in [a["seq"] for a in api(g, guard, "GET", "/alarms")]
    finally:
        ctx.close()


def test_p16_fire_mode_takes_over_the_page_and_the_count_falls_as_people_leave_or_are_marked_safe(site, browser):
    g, _, guard, boss = site
    for badge in ("04A1B2C4", "04A1B2C5"):  # h-3 and h-4 come in
        _, etype, _ = g.scan("main-in", badge)
        assert etype == "access.granted"
    ctx, chief = sign_in(browser, g, boss)
    ctx2, page = sign_in(browser, g, guard)
    try:
        chief.click("#fire-on")
        expect(chief.locator("#confirm-text")).to_contain_text("fire mode")
        chief.click("#confirm-ok")
        g.journal.next("mode.changed", mode="fire")
        for p in (page, chief):
            expect(p.locator("#muster-view")).to_be_visible()
            expect(p.locator("#console")).to_be_hidden()
        unaccounted = page.locator("#mv-unaccounted")
        h3, h4 = (page.locator(f'#mv-areas li[data-holder="{h}"]') for h in ("h-3", "h-4"))
        expect(h3).to_contain_text("李娜")
        expect(h4).to_contain_text("Chen Jie")
        before = int(unaccounted.get_attribute("data-n"))
        page.screenshot(path=SHOTS / "10-fire-muster.png", full_page=True)

        # a guard marks one safe at the assembly point: the count falls, journaled with who
        h3.locator("button.mark-safe").click()
        _, _, data = g.journal.next("muster.marked_safe", holder="h-3")
        assert data["actor"] == "Wang Fang"
        expect(unaccounted).to_have_attribute("data-n", str(before - 1))
        expect(h3).to_contain_text("Safe")
        # another badges out: gone from the list, and the count falls again
        g.scan("main-out", "04A1B2C5")
        expect(h4).to_have_count(0)
        expect(unaccounted).to_have_attribute("data-n", str(before - 2))
        expect(chief.locator("#mv-unaccounted")).to_have_attribute("data-n", str(before - 2))
        page.emulate_media(media="print")
        page.screenshot(path=SHOTS / "11-fire-muster-print.png", full_page=True)
        page.emulate_media(media="screen")

        chief.click("#mv-fire-off")
        expect(chief.locator("#confirm-text")).to_contain_text("End fire mode")
        chief.click("#confirm-ok")
        g.journal.next("mode.changed", mode="normal")
        expect(page.locator("#console")).to_be_visible()
        expect(page.locator("#muster-view")).to_be_hidden()
    finally:
        ctx.close()
        ctx2.close()
        normal_again(g, boss)


def test_p28_a_drill_is_the_muster_page_marked_as_a_drill_and_only_a_supervisor_runs_it(site, browser):
    g, _, guard, boss = site
    _, etype, _ = g.scan("main-in", "04A1B2C5")  # h-4 comes in
    assert etype == "access.granted"
    ctx, chief = sign_in(browser, g, boss)
    ctx2, page = sign_in(browser, g, guard)
    try:
        expect(page.locator("#drill-on")).to_be_hidden()  # a guard starts no drill
        expect(page.locator("#drill-site")).to_be_hidden()
        chief.click("#drill-on")
        expect(chief.locator("#confirm-text")).to_contain_text("drill")
        chief.click("#confirm-ok")
        g.journal.next("mode.changed", mode="drill")
        for p in (page, chief):  # the fire's muster page, titled and bannered as a drill
            expect(p.locator("#muster-view")).to_be_visible()
            expect(p.locator("#console")).to_be_hidden()
            expect(p.locator("#mv-title")).to_have_text("DRILL: muster")
            expect(p.locator("#banner")).to_contain_text("DRILL")
            expect(p.locator("#mv-fire-off")).to_be_hidden()
        expect(page.locator("#mv-drill-off")).to_be_hidden()
        h4 = page.locator('#mv-areas li[data-holder="h-4"]')
        expect(h4).to_contain_text("Chen Jie")
        page.screenshot(path=SHOTS / "12-drill-muster.png", full_page=True)
        h4.locator("button.mark-safe").click()  # tracked as in a fire
        g.journal.next("muster.marked_safe", holder="h-4")
        chief.click("#mv-drill-off")
        expect(chief.locator("#confirm-text")).to_contain_text("End the drill")
        chief.click("#confirm-ok")
        g.journal.next("mode.changed", mode="normal")
        expect(page.locator("#console")).to_be_visible()
        expect(page.locator("#muster-view")).to_be_hidden()
    finally:
        ctx.close()
        ctx2.close()
        normal_again(g, boss)
        g.scan("main-out", "04A1B2C5")


UNTRANSLATED = """async () => {
  const { WORDS } = await import("/console/words.js");
  const errors = window.GK_ERRORS || { en: {}, zh: {} };
  const exact = new Set();
  const counts = [];
  for (const v of [...Object.values(WORDS.en), ...Object.values(errors.en)]) {
    if (typeof v === "string") exact.add(v.trim());
    else for (const form of Object.values(v)) {
      counts.push(new RegExp("^" + form.replace(/[.*+?^${}()|[\\]\\\\]/g, "\\\\$&").replace("\\\\{n\\\\}", "[\\\\d,]+") + "$"));
    }
  }
  const found = [];
  const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walk.nextNode()) {
    const text = walk.currentNode.textContent.trim();
    const el = walk.currentNode.parentElement;
    if (!text || !el || !el.checkVisibility({ visibilityProperty: true })) continue;
    if (exact.has(text) || counts.some((r) => r.test(text))) found.push(text);
  }
  const missing = Object.keys(WORDS.en).filter((k) => !(k in WORDS.zh))
    .concat(Object.keys(errors.en).filter((k) => !(k in errors.zh)));
  return { found, missing };
}"""

FITS = """() => {
  const wide = document.documentElement.scrollWidth - document.documentElement.clientWidth;
  const small = [...document.querySelectorAll("button, input:not([type=checkbox]), select")]
    .filter((el) => el.checkVisibility())
    .map((el) => [el.id || el.className || el.textContent, el.getBoundingClientRect()])
    .filter(([, r]) => r.height < 43.5 || r.width < 43.5)
    .map(([name, r]) => `${name} ${Math.round(r.width)}x${Math.round(r.height)}`);
  return { wide, small };
}"""


def check_view(page, lang: str, width: int, view: str) -> None:
    page.set_viewport_size({"width": width, "height": 900})
    page.wait_for_function("document.documentElement.clientWidth === %d" % width)
    fits = page.evaluate(FITS)
    assert fits["wide"] <= 0, f"{view} in {lang} at {width}px scrolls sideways by {fits['wide']}px"
    assert not fits["small"], f"touch targets under 44px in {view} ({lang}, {width}px): {fits['small']}"
    if lang == "zh":
        words = page.evaluate(UNTRANSLATED)
        assert not words["missing"], f"keys without a Chinese word: {words['missing']}"
        assert not words["found"], f"English on the Chinese {view} at {width}px: {words['found']}"
    page.screenshot(path=SHOTS / f"{view}-{lang}-{width}.png", full_page=True)


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_every_view_fits_a_phone_a_tablet_and_a_desk_and_speaks_the_guards_language(site, browser, lang):
    g, _, guard, boss = site
    n = {"en": "1", "zh": "2"}[lang]
    # a full shift's screen: a denial, long names and ids, a held exit, an open alarm, a printed pass
    g.readers["main-in"].send("DEADBEEF0" + n)
    g.scan("main-in", "04A1B2C6")  # the visitor with a long name and id
    text = g.site.visitor_pass(f"h-held-{lang}-" + "x" * 40, visit=f"v-wide-{lang}")
    g.scan("main-in", text)
    g.scan("main-out", text)
    ctx, page = sign_in(browser, g, boss, lang, 1280)
    try:
        expect(page.locator(f'#held li[data-visit="v-wide-{lang}"]')).to_be_visible()
        g.settle()
        g.door_io.send("input 2 on")  # the office door forced: an alarm waits on top
        seq, _, _ = g.journal.next("door.forced", door="office")
        g.door_io.send("input 2 off")
        expect(page.locator(f'#alarm-list li[data-seq="{seq}"]')).to_be_visible()
        fill_walkin(page, "欧阳娜娜" if lang == "zh" else "Ouyang Nana", f"110105-1980010{n}-1234")
        expect(page.locator("#printed")).to_be_visible()
        fill_walkin(page, "欧阳娜娜" if lang == "zh" else "Ouyang Nana", f"110105-1980010{n}-1234")
        expect(page.locator("#w-repeat-box")).to_be_visible()  # the API's refusal, in the guard's language
        expect(page.locator("#w-repeat-text")).to_contain_text("今天已经登记过" if lang == "zh" else "already")
        expect(page.locator("#feed li", has_text=LONG_NAME).first).to_be_visible()
        if lang == "zh":
            expect(page.locator("#feed li.deny", has_text="DEADBEEF02")).to_contain_text("未知卡或通行证")
            expect(page.locator("#who")).to_contain_text("主管")
        for width in WIDTHS:
            check_view(page, lang, width, "console")

        page.set_viewport_size({"width": 1280, "height": 900})
        page.click("#lockdown-gate")
        expect(page.locator("#banner")).to_be_visible()
        for width in WIDTHS:
            check_view(page, lang, width, "lockdown")
        page.click("#lockdown-end")
        expect(page.locator("#banner")).to_be_hidden()

        page.click("#fire-on")
        expect(page.locator("#confirm")).to_be_visible()
        check_view(page, lang, 390, "confirm")
        page.click("#confirm-ok")
        expect(page.locator("#muster-view")).to_be_visible()
        expect(page.locator("#mv-areas li button.mark-safe").first).to_be_visible()
        for width in WIDTHS:
            check_view(page, lang, width, "fire")
        page.click("#mv-fire-off")
        page.click("#confirm-ok")
        expect(page.locator("#console")).to_be_visible()
        wait_until(lambda: api(g, boss, "GET", "/status")["mode"] == "normal", what="normal again")
    finally:
        ctx.close()
        normal_again(g, boss)
