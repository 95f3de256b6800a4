"""Operators' pages in a real browser (Daphne, headless Chromium): a quarantine reason made of one
long token wraps inside its column, the streams page's count badges fit their pills, and every page
names a favicon that is served."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client

from roster.dev.chime import as_json, envelope, vc_detail
from roster.ingest import IncomingMessage, messages_ingest
from tests.conftest import CHROMIUM

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.browser]

INSIDE = """(selector) => [...document.querySelectorAll(selector)].map((node) => {
    const [box, pill] = [node, node.parentElement].map((n) => n.getBoundingClientRect());
    const across = box.left >= pill.left && box.right <= pill.right;
    return across && box.top >= pill.top && box.bottom <= pill.bottom;
})"""


def test_long_reasons_wrap_badges_fit_and_the_favicon_is_served(daphne):
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), "Debian's chromium is needed (apt-get install chromium)"
    messages_ingest(
        messages=[
            IncomingMessage(body=as_json(envelope(vc_detail("STARTED", at="T" * 200)))),  # quarantined
            IncomingMessage(body=as_json(envelope(vc_detail("STARTED")))),
        ]
    )
    signed_in = Client()
    signed_in.force_login(User.objects.create_user("ops", is_staff=True, is_superuser=True))
    session = signed_in.cookies[settings.SESSION_COOKIE_NAME].value
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"]
        )
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        context.add_cookies(
            [{"name": settings.SESSION_COOKIE_NAME, "value": session, "url": f"http://{daphne}/"}]
        )
        page = context.new_page()

        page.goto(f"http://{daphne}/admin/roster/quarantine/")
        reason = page.locator("#result_list td.field-short_reason").first
        assert "T" * 50 in reason.inner_text()
        width = reason.evaluate(
            "(cell) => [cell.scrollWidth, cell.clientWidth, cell.getBoundingClientRect().width]"
        )
        assert width[0] <= width[1] and width[2] < 400, width  # wrapped inside the column
        icons = [page.locator('link[rel="icon"]').get_attribute("href")]

        page.goto(f"http://{daphne}/streams/")
        page.wait_for_selector("#connection-status[data-state=live]", timeout=15000)
        assert page.evaluate(INSIDE, ".stream-filter .count") == [True] * 4  # each count in its pill
        icons.append(page.locator('link[rel="icon"]').get_attribute("href"))

        assert icons[0] == icons[1]
        favicon = page.request.get(f"http://{daphne}{icons[0]}")
        assert favicon.ok and favicon.headers["content-type"].startswith("image/svg+xml")
        browser.close()
