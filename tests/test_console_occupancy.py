"""P35 in the guard console (a real browser on the running daemon): each limited area's count against its limit,
a full one marked; a supervisor corrects a count with a reason, asked once more, journaled; a guard cannot."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from test_console import browser, check_view, sign_in  # noqa: F401 (browser is a fixture)
from test_e2e_gate import running_for_console
from test_occupancy import BADGES, limited_site

pytestmark = pytest.mark.e2e


@pytest.fixture
def site(tmp_path, procs):
    s = limited_site(tmp_path / "site", api=True)
    yield from running_for_console(s, procs)


@pytest.mark.parametrize("lang, full, asks", [("en", "FULL", "Set the count of site/office to 3"),
                                              ("zh", "已满", "把site/office的人数设为3")])
def test_p35_the_console_shows_counts_and_limits_and_a_supervisor_corrects_one_with_a_reason(site, browser, lang,
                                                                                            full, asks):
    g, guard, boss = site
    assert g.scan("office-in", BADGES[0].removeprefix("badge:"))[1] == "access.granted"
    ctx, page = sign_in(browser, g, guard, lang)
    ctx2, chief = sign_in(browser, g, boss, lang)
    try:
        office = page.locator('#muster-limits .limit[data-area="site/office"]')
        expect(office.locator(".limit-count")).to_have_text("1 / 3")
        expect(page.locator('#muster-limits .limit[data-area="site/office/clean"] .limit-count')).to_have_text("0 / 1")
        expect(office.locator("form")).to_have_count(0)  # a guard corrects nothing
        row = chief.locator('#muster-limits .limit[data-area="site/office"]')
        row.locator(".limit-new-count").fill("3")
        row.locator(".limit-reason").fill("two came in behind the badge holder")
        row.locator(".limit-submit").click()
        expect(chief.locator("#confirm-text")).to_contain_text(asks)
        chief.click("#confirm-ok")
        _, _, data = g.journal.next("occupancy.corrected", area="site/office")
        assert (data["count"], data["previous"], data["actor"], data["actor_role"], data["reason"]) == (
            3, 1, "Zhao Min", "supervisor", "two came in behind the badge holder")
        expect(row.locator(".limit-count")).to_have_text("3 / 3")
        expect(row).to_contain_text(full)
        expect(row).to_have_class("limit full")
        check_view(chief, lang, 390, "occupancy-limits")
    finally:
        ctx.close()
        ctx2.close()
