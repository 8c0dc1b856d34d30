"""P27 in the guard console (a real browser on the running daemon): an exit held for a visitor card says to take
the card, in English and Chinese; marking it taken opens the door once and the item goes."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from sitekit import make_site, wait_until
from test_console import api, browser, check_view, sign_in  # noqa: F401 (browser is a fixture)
from test_e2e_gate import running_for_console

pytestmark = pytest.mark.e2e

CARD = "0CA4D000"
REF = f"badge:{CARD}"


@pytest.fixture
def site(tmp_path, procs):
    s = make_site(tmp_path / "site", api=True)
    r = s.import_lines([
        {"credential": "badge:04A1B2C3", "holder": "h-1", "category": "staff", "areas": ["site"], "name": "张伟"},
        {"credential": REF, "holder": "h-card", "category": "visitor", "areas": ["site/lobby"], "host": "h-1",
         "temporary": True, "name": "Liu Yang"},
    ])
    assert r.returncode == 0, r.stderr
    yield from running_for_console(s, procs)


@pytest.mark.parametrize("lang, says, button", [("en", "Take the visitor card", "Card taken"),
                                                ("zh", "请收回访客卡", "已收卡")])
def test_p27_the_console_asks_the_guard_to_take_the_card_and_marking_it_opens_once(site, browser, lang, says, button):
    g, guard, boss = site
    assert g.scan("main-in", CARD)[1] == "access.granted"
    api(g, boss, "POST", f"/visits/{REF}/signoff")
    g.settle()
    before = g.unlocks(0)
    assert g.scan("main-out", CARD)[1] == "exit.held"
    ctx, page = sign_in(browser, g, guard, lang)
    try:
        held = page.locator(f'#held li[data-visit="{REF}"]')
        expect(held).to_contain_text(says)
        expect(held).to_contain_text("Liu Yang")
        expect(held.locator(".release")).to_have_count(0)  # not a sign-off: the host's word opens nothing here
        check_view(page, lang, 390, "held-card")
        held.locator(".card-reason").fill("card in the drawer")
        held.locator(".card-taken").get_by_text(button).click()
        expect(held).to_have_count(0)
        _, _, ret = g.journal.next("card.returned")
        assert (ret["credential_ref"], ret["taken_by"], ret["actor"]) == (REF, "guard", "Wang Fang")
        wait_until(lambda: g.unlocks(0) == before + 1, what="the door opens once")
    finally:
        ctx.close()
