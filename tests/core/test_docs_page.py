"""The API docs render in a real browser with no network: Swagger UI and ReDoc come from the
project's own static files (drf-spectacular-sidecar), and every request the page makes goes
to the project itself.

Drives Debian's Chromium (`apt-get install chromium`; .ci/run installs it) with Playwright.
Set TEST_DOCS_SCREENSHOT to a path to keep a screenshot of /api/docs/ there (the one in
docs/img/ was taken so).
"""

import os
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not shutil.which(CHROMIUM), reason=f"no browser at {CHROMIUM} (apt-get install chromium)"
    ),
]


@pytest.fixture
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield browser
        browser.close()


def open_offline(browser, live_server, path: str):
    """Open `path` with every request to another host refused; (page, the refused
    (resource type, URL) pairs)."""
    own = urlsplit(live_server.url).netloc
    refused: list[tuple[str, str]] = []
    page = browser.new_page(viewport={"width": 1280, "height": 1600})

    def only_our_host(route):
        if urlsplit(route.request.url).netloc == own or route.request.url.startswith("data:"):
            route.continue_()
        else:
            refused.append((route.request.resource_type, route.request.url))
            route.abort()

    page.route("**/*", only_our_host)
    page.goto(live_server.url + path)
    return page, refused


def test_swagger_ui_lists_the_operations_without_the_network(browser, live_server, tmp_path):
    page, refused = open_offline(browser, live_server, "/api/docs/")

    page.wait_for_selector(".opblock", timeout=20_000)
    paths = page.locator(".opblock-summary-path").all_inner_texts()
    assert any(text.startswith("/api/payments") for text in paths)
    assert any(text.startswith("/api/checkout") for text in paths)
    assert any(text.startswith("/api/bookings") for text in paths)
    assert refused == []
    shot = Path(os.environ.get("TEST_DOCS_SCREENSHOT") or tmp_path / "api-docs.png")
    page.screenshot(path=str(shot), full_page=False)
    assert shot.stat().st_size > 10_000


def test_redoc_renders_without_the_network(browser, live_server):
    page, refused = open_offline(browser, live_server, "/api/redoc/")

    page.get_by_text("/api/payments/batch").first.wait_for(timeout=20_000)
    # ReDoc's "powered by" footer links its logo from its CDN: decorative, and offline it
    # simply does not show. Nothing the page needs (script, style, font, schema) is outside.
    assert [kind for kind, _ in refused if kind != "image"] == []
