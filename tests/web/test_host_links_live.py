"""A host link in a real browser (Daphne, headless Chromium): it opens its meeting's live roster in
a fresh browser with no account, other meetings and admin stay shut; revoked in admin, the open
page goes offline and the next load no longer shows the meeting; an expired link does not open;
Daphne's access log never holds a link."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from roster.dev.chime import as_bare, meeting_stream
from roster.ingest import IncomingMessage, messages_ingest
from roster.models import HostLink
from roster.read.host_links import host_link_create
from tests.conftest import CHROMIUM

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.browser]

HOSTILE = "<img src=x onerror=alert(1)>"
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


def meeting(seed: int, name: str) -> str:
    details = meeting_stream(seed=seed, attendees=2, end=False)
    for detail in details:
        detail["externalMeetingId"] = name
        if detail.get("attendeeId") == f"att-{seed}-0":
            detail["externalUserId"] = HOSTILE
    messages_ingest(messages=[IncomingMessage(body=as_bare(d)) for d in details])
    return details[0]["meetingId"]


def test_a_host_link_opens_its_meeting_without_an_account_until_revoked(daphne, processes, settings):
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), "Debian's chromium is needed (apt-get install chromium)"
    settings.PUBLIC_BASE_URL = f"http://{daphne}"
    sales, board = meeting(130, "sales-emea"), meeting(131, "board")
    link, url = host_link_create(meetings="sales-emea", label="Q3 review")
    expired, expired_url = host_link_create(meetings="sales-emea")
    HostLink.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    User.objects.create_user("ops", password="correct horse battery", is_staff=True, is_superuser=True)
    base = f"http://{daphne}"
    dialogs: list[str] = []

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
        host = browser.new_context().new_page()  # a fresh browser: no cookie, no account
        host.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        host.goto(url)
        host.wait_for_url(f"**/meetings/{sales}/")
        assert "#" not in host.url
        host.wait_for_selector("#connection-status[data-state=live]", timeout=15000)
        row = host.locator('tr[data-attendee-id="att-130-0"]')
        row.wait_for(timeout=15000)
        assert row.locator("td.name").inner_text() == HOSTILE  # text, never HTML
        assert host.evaluate("document.querySelectorAll('img[src=x]').length") == 0

        assert host.goto(f"{base}/meetings/{board}/").status == 404
        assert host.goto(f"{base}/api/meetings/{board}/roster").status == 404
        host.goto(f"{base}/admin/")
        assert "/admin/login/" in host.url  # the link is nobody: admin asks for a login
        listing = host.goto(f"{base}/")
        assert listing.status == 200 and sales in host.content() and board not in host.content()

        host.goto(f"{base}/meetings/{sales}/")
        host.wait_for_selector("#connection-status[data-state=live]", timeout=15000)

        ops = browser.new_context().new_page()
        ops.goto(f"{base}/admin/login/?next=/admin/roster/hostlink/")
        ops.fill("#id_username", "ops")
        ops.fill("#id_password", "correct horse battery")
        ops.click("input[type=submit]")
        ops.wait_for_url("**/admin/roster/hostlink/")
        assert ops.locator(".field-label", has_text="Q3 review").count() == 1
        ops.check(f'input[name="_selected_action"][value="{link.pk}"]')
        ops.select_option('select[name="action"]', "revoke")
        ops.click('button[name="index"]')
        ops.wait_for_selector("text=Revoked 1 link(s).")

        host.wait_for_selector("#connection-status[data-state=offline]", timeout=20000)  # socket closed
        assert host.locator("#stale-banner").inner_text() == "This host link has ended: ask for a new one."
        host.goto(f"{base}/meetings/{sales}/")
        assert "login" in host.url and host.locator('tr[data-attendee-id="att-130-0"]').count() == 0

        late = browser.new_context().new_page()
        late.goto(expired_url)
        late.wait_for_selector("#host-link-problem")
        assert "expired" in late.locator("#host-link-problem").inner_text()
        assert "#" not in late.url
        late.goto(f"{base}/meetings/{sales}/")
        assert "login" in late.url
        browser.close()
    assert dialogs == []
    served = (processes.log_dir / "daphne.log").read_text()
    assert '"POST /link/' in served  # Daphne's access log: the path, never the fragment
    assert url.partition("#")[2] not in served and expired_url.partition("#")[2] not in served
