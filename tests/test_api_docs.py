"""/docs in a real browser (Debian's chromium, Playwright) cut off from everything but the daemon: a gate's
network reaches no CDN, so Swagger UI must come from the daemon itself. Its screenshot goes to
test-artifacts/console/docs.png."""
from __future__ import annotations

import os
import shutil
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect, sync_playwright

from sitekit import ROOT, WAIT_S, make_site
from test_e2e_gate import staffed_gate

pytestmark = pytest.mark.e2e

SHOTS = ROOT / "test-artifacts" / "console"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
LOCAL = {"127.0.0.1", "localhost", "::1"}


@pytest.fixture(scope="module")
def api_url(tmp_path_factory, module_procs):
    site = make_site(tmp_path_factory.mktemp("site"), api=True, walkin=True)
    g = staffed_gate(site, module_procs)
    site.wait_api()
    yield site.api_url
    g.io.close()


def test_docs_render_every_operation_with_nothing_but_the_daemon(api_url):
    assert os.path.exists(CHROMIUM), "chromium is missing: run scripts/setup.sh (it installs Debian's chromium)"
    SHOTS.mkdir(parents=True, exist_ok=True)
    elsewhere: list[str] = []
    refused: list[str] = []
    with sync_playwright() as p:
        # as root, chromium's sandbox cannot start; the page is the daemon's own on loopback
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"] if os.geteuid() == 0 else [])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})

            def only_local(route):
                if urlsplit(route.request.url).hostname in LOCAL or route.request.url.startswith("data:"):
                    route.continue_()
                else:
                    elsewhere.append(route.request.url)
                    route.abort()

            page.route("**/*", only_local)
            page.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
            page.goto(api_url + "/docs")
            expect(page.locator(".opblock").first).to_be_visible(timeout=WAIT_S * 1000)
            assert page.locator(".opblock").count() >= 20
            expect(page.locator(".opblock-post", has_text="/doors/{door}/open")).to_be_visible()
            expect(page.locator(".opblock-summary-path", has_text="/events/stream")).to_be_visible()
            expect(page.locator(".btn.authorize")).to_be_visible()  # the bearer and cookie schemes
            page.screenshot(path=SHOTS / "docs.png", full_page=False)
        finally:
            browser.close()
    assert elsewhere == [], "/docs asked beyond the daemon"
    assert refused == [], "/docs broke its own Content-Security-Policy"
