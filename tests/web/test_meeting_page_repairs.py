"""Repairs on the meeting page, in a real browser (Daphne, headless Chromium): while the meeting
goes on, joined attendees say that a lost AttendeeLeft is healed only when the meeting ends; an
attendee reconcile added from the Chime API (over HTTP, the local endpoint) is marked repaired,
its hostile name shown as text; a meeting reconcile ended says so in its header. Screenshot in
artifacts/meeting_page_repairs/."""

from __future__ import annotations

import time
import uuid

import pytest
from django.contrib.auth.models import User

from roster.dev.chime import REGION, as_envelope, detail
from roster.dev.chime_api import ChimeApiServer
from roster.sources.reconcile import meeting_reconcile
from tests.conftest import chromium_page, in_thread, ingest

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.browser]

HOSTILE = "<img src=x onerror=alert(1)>"


def test_repairs_and_the_lost_leave_are_said_on_the_page(daphne, artifacts, monkeypatch, settings):
    settings.RECONCILE_CALLS_PER_SECOND = 200.0
    meeting_id, ann, late = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    start = int(time.time() * 1000) - 60_000
    ingest(
        [
            as_envelope(detail("MeetingStarted", meeting_id, ts=start, externalMeetingId="standup")),
            as_envelope(detail("AttendeeJoined", meeting_id, ann, ts=start + 1_000, externalUserId="ann")),
        ]
    )
    staff = User.objects.create_superuser("staff", password="unused")
    dialogs: list[str] = []
    with (
        ChimeApiServer() as chime,
        chromium_page(dialogs, viewport={"width": 1400, "height": 800}, user=staff, site=daphne) as page,
    ):
        monkeypatch.setenv("AWS_ENDPOINT_URL_CHIME_SDK_MEETINGS", chime.url)
        chime.api.meeting_put(region=REGION, meeting_id=meeting_id)
        chime.api.attendee_put(meeting_id, external_user_id="ann", attendee_id=ann)
        # Chime lists someone whose AttendeeAdded and AttendeeJoined were lost.
        chime.api.attendee_put(meeting_id, external_user_id=HOSTILE, attendee_id=late)
        page.goto(f"http://{daphne}/meetings/{meeting_id}/")
        page.wait_for_selector("#connection-status[data-state=live]", timeout=15000)
        joined = page.locator(f'tr[data-attendee-id="{ann}"] .badge.presence')
        joined.wait_for(timeout=10000)
        assert "AttendeeLeft was lost" in joined.get_attribute("title")
        assert "lost AttendeeLeft cannot be repaired" in page.locator("#repair-note").inner_text()

        in_thread(meeting_reconcile, meeting_id=meeting_id)  # adds the one Chime lists
        repaired = page.locator(f'tr[data-attendee-id="{late}"] .badge.repaired')
        repaired.wait_for(timeout=15000)
        assert "lost this attendee's AttendeeAdded and capabilities" in repaired.get_attribute("title")
        assert page.locator(f'tr[data-attendee-id="{late}"] td.name').inner_text() == HOSTILE
        assert page.locator(f'tr[data-attendee-id="{ann}"] .badge.repaired').count() == 0

        chime.api.meeting_end(meeting_id)  # and its MeetingEnded is lost
        in_thread(meeting_reconcile, meeting_id=meeting_id)
        ended = page.locator("#meeting-repaired")
        ended.wait_for(timeout=15000)
        assert ended.inner_text() == "repaired from the Chime API"
        assert "MeetingEnded never arrived" in ended.get_attribute("title")
        assert page.locator("#meeting-status").inner_text() == "ended"
        assert page.locator("#repair-note").is_hidden()  # the meeting's end healed what it could
        assert not joined.get_attribute("title")
        page.screenshot(path=artifacts / "repaired.png")
        assert page.evaluate("document.querySelectorAll('img[src=x]').length") == 0
    assert dialogs == []
