"""A host in a real browser (Daphne, headless Chromium, the real sign-in form): signs in at
/login/, sees the meetings of their rule and no other, gets 404 for another meeting's URL typed
by hand, watches a join arrive on their meeting's page without a reload, and signs out.
Screenshots of the sign-in page and of the host's list go to artifacts/signin_browser/
(gitignored; printed)."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth.models import User

from roster.dev.chime import as_bare, meeting_stream
from roster.ingest import IncomingMessage, messages_ingest
from roster.live.broadcast import publisher
from roster.models import AccessRule
from tests.conftest import chromium_page, in_thread

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.browser]

PASSWORD = "correct horse battery"


def ingest(details: list[dict]) -> None:
    messages_ingest(messages=[IncomingMessage(body=as_bare(d)) for d in details])
    publisher.flush()  # broadcast before returning: the browser is waiting for it


def test_host_signs_in_sees_their_meetings_only_live_and_signs_out(daphne, artifacts):
    tag = uuid.uuid4().hex[:8]  # Redis is shared with other runs: ids of our own
    streams = {
        name: meeting_stream(
            seed=seed,
            attendees=2,
            end=False,
            meeting_id=f"{tag}-m{seed}",
            external_meeting_id=f"{tag}-{name}",
        )
        for seed, name in ((140, "sales-emea"), (141, "sales-apac"), (142, "board"))
    }
    for details in streams.values():
        ingest(details)
    ids = {name: details[0]["meetingId"] for name, details in streams.items()}
    host = User.objects.create_user("host", password=PASSWORD)
    AccessRule.objects.create(user=host, meetings=f"{tag}-sales-*")
    base = f"http://{daphne}"

    dialogs: list[str] = []
    with chromium_page(dialogs) as page:
        page.goto(f"{base}/")
        assert page.url == f"{base}/login/?next=/"
        assert page.title() == "Sign in · chime-roster"
        assert "Django administration" not in page.content()
        page.screenshot(path=artifacts / "sign-in.png", full_page=True)
        page.fill("#id_username", "host")
        page.fill("#id_password", PASSWORD)
        page.click("form.auth-form button[type=submit]")
        page.wait_for_url(f"{base}/")

        page.wait_for_selector("#connection-status[data-state=live]", timeout=15000)
        listed = page.eval_on_selector_all("tr.meeting-row", "rows => rows.map(r => r.dataset.meetingId)")
        assert sorted(listed) == sorted([ids["sales-emea"], ids["sales-apac"]])
        assert page.locator(".user .username").inner_text() == "host"
        assert page.locator('.user a[href="/admin/"]').count() == 0  # not staff
        page.screenshot(path=artifacts / "host-meetings.png", full_page=True)
        print(f"screenshots: {artifacts / 'sign-in.png'} {artifacts / 'host-meetings.png'}")

        assert page.goto(f"{base}/meetings/{ids['board']}/").status == 404  # typed by hand

        page.goto(f"{base}/meetings/{ids['sales-emea']}/")
        page.wait_for_selector("#connection-status[data-state=live]", timeout=15000)
        url_before = page.url
        join = {
            "meetingId": ids["sales-emea"],
            "externalMeetingId": f"{tag}-sales-emea",
            "attendeeId": "att-newcomer",
            "externalUserId": "newcomer",
            "eventType": "chime:AttendeeJoined",
            "timestamp": streams["sales-emea"][-1]["timestamp"] + 1000,
        }
        in_thread(ingest, [join])
        row = page.locator('tr[data-attendee-id="att-newcomer"]')
        row.wait_for(timeout=15000)
        assert row.locator("td.name").inner_text() == "newcomer"
        assert row.locator("td.presence").inner_text().strip().lower() == "joined"
        assert page.url == url_before  # no reload

        page.click("form.sign-out button")
        page.wait_for_url(f"{base}/logout/")
        assert page.locator("h1").inner_text() == "Signed out"
        page.goto(f"{base}/meetings/{ids['sales-emea']}/")
        assert page.url.startswith(f"{base}/login/?next=")  # the session is gone
    assert dialogs == []


def test_a_host_deactivated_while_watching_is_told_their_access_ended(daphne):
    """Deactivated in admin or by a direct update, a host's open page stops being live within 5 s
    and says why; not as a host link's would (the error before the close names the account)."""
    from django.conf import settings
    from django.test import Client

    tag = uuid.uuid4().hex[:8]
    details = meeting_stream(
        seed=143, attendees=2, end=False, meeting_id=f"{tag}-m143", external_meeting_id=f"{tag}-sales"
    )
    ingest(details)
    host = User.objects.create_user("host", password=PASSWORD)
    AccessRule.objects.create(user=host, meetings=f"{tag}-*")
    browser = Client()
    browser.force_login(host)
    session = browser.cookies[settings.SESSION_COOKIE_NAME].value
    dialogs: list[str] = []
    with chromium_page(dialogs) as page:
        page.context.add_cookies(
            [{"name": settings.SESSION_COOKIE_NAME, "value": session, "url": f"http://{daphne}/"}]
        )
        page.goto(f"http://{daphne}/meetings/{details[0]['meetingId']}/")
        page.wait_for_selector("#connection-status[data-state=live]", timeout=15000)
        in_thread(lambda: User.objects.filter(pk=host.pk).update(is_active=False))
        page.wait_for_selector("#connection-status[data-state=offline]", timeout=20000)
        assert page.locator("#stale-banner").inner_text() == "Your access has ended: ask an operator."
    assert dialogs == []
