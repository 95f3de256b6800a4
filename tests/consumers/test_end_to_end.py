"""End to end through real processes: Daphne serving config.asgi, a Celery worker draining the
local SQS endpoint, the example feed client, and headless Chromium (Playwright, Debian's
/usr/bin/chromium) watching the dashboard change without reload."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from django.contrib.auth.models import User

from roster.dev.chime import as_bare, as_envelope, meeting_stream
from roster.dev.processes import ROOT
from roster.ingest import IncomingMessage, messages_ingest
from roster.live.broadcast import publisher
from roster.models import QueueSource
from roster.read.access import feed_token_create
from tests.conftest import CHROMIUM, celery_worker_start, send_bodies

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

HOSTILE = "<img src=x onerror=alert(1)>"


@pytest.fixture
def celery_worker(subprocess_env, processes):
    return celery_worker_start(processes, subprocess_env, loglevel="WARNING")


def test_example_client_follows_the_feed_through_daphne(daphne):
    details = meeting_stream(seed=100, attendees=2, end=False)
    messages_ingest(messages=[IncomingMessage(body=as_bare(d)) for d in details[:6]])
    _, raw = feed_token_create(name="example", meetings="room-100")
    client = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "examples.feed_client",
            "--url",
            f"ws://{daphne}/ws/feed/",
            "--token",
            raw,
            "--limit",
            "2",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    first = client.stdout.readline()  # subscribed, its snapshot printed (flushed), or gone: ""
    messages_ingest(messages=[IncomingMessage(body=as_bare(d)) for d in details[6:12]])
    publisher.flush()
    out, err = client.communicate(timeout=30)
    out = first + out
    lines = out.splitlines()
    assert lines[0].startswith("snapshot room-100 seq=1"), out + err
    assert any(line.startswith("delta room-100 seq=2") for line in lines), out + err


@pytest.mark.browser
def test_dashboard_changes_live_in_a_real_browser(daphne, celery_worker, sqs, make_queue):
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), "Debian's chromium is needed (apt-get install chromium; .ci/run does it)"
    queue = make_queue()
    QueueSource.objects.create(url=queue, consumers=1)
    details = meeting_stream(seed=101, attendees=3, end=False)
    for detail in details:
        if detail.get("attendeeId") == "att-101-0":
            detail["externalUserId"] = HOSTILE
    meeting_id = details[0]["meetingId"]
    opening = [
        d
        for d in details
        if d["eventType"] in ("chime:MeetingStarted",)
        or (
            d["eventType"] in ("chime:AttendeeAdded", "chime:AttendeeAuthorized", "chime:AttendeeJoined")
            and d["timestamp"] <= details[12]["timestamp"]
        )
    ]
    send_bodies(sqs, queue, [as_envelope(d) for d in opening])
    User.objects.create_user("host", password="correct horse battery", is_staff=True)

    deadline = time.monotonic() + 30
    from roster.models import Attendee

    while not Attendee.objects.filter(meeting_id=meeting_id, attendee_id="att-101-0").exists():
        assert time.monotonic() < deadline, "worker did not ingest"
        time.sleep(0.2)

    dialogs: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        page = browser.new_page()
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        page.goto(f"http://{daphne}/admin/login/?next=/meetings/{meeting_id}/")
        page.fill("#id_username", "host")
        page.fill("#id_password", "correct horse battery")
        page.click("input[type=submit]")
        page.wait_for_url(f"**/meetings/{meeting_id}/")
        page.wait_for_selector("#connection-status[data-state=live]", timeout=15000)
        row = page.locator('tr[data-attendee-id="att-101-0"]')
        row.wait_for(timeout=15000)
        assert row.locator("td.name").inner_text() == HOSTILE  # shown as text
        assert row.locator("td.presence").inner_text().strip().lower() == "joined"
        url_before = page.url

        drop = {
            "meetingId": meeting_id,
            "externalMeetingId": "room-101",
            "attendeeId": "att-101-0",
            "externalUserId": HOSTILE,
            "eventType": "chime:AttendeeDropped",
            "timestamp": details[-1]["timestamp"] + 1000,
        }
        send_bodies(sqs, queue, [as_envelope(drop)])
        page.wait_for_function(
            """() => {
                const cell = document.querySelector('tr[data-attendee-id="att-101-0"] td.presence');
                return cell && cell.textContent.trim().toLowerCase() === 'dropped';
            }""",
            timeout=15000,
        )
        assert page.url == url_before  # no reload
        assert row.locator("td.drops").inner_text().strip() == "1"
        assert page.locator("#count-dropped").inner_text().strip() == "1"
        screenshot = os.environ.get("ROSTER_SCREENSHOT")
        if screenshot:
            page.screenshot(path=screenshot, full_page=True)
        assert page.evaluate("document.querySelectorAll('img[src=x]').length") == 0

        # The meeting list: a meeting that starts now is announced by the pill, not slotted in
        # under the reader; the pill shows it, without a reload.
        page.goto(f"http://{daphne}/")
        page.wait_for_selector("#connection-status[data-state=live]", timeout=15000)
        assert page.locator(f'[data-meeting-id="{meeting_id}"]').count() == 1
        newcomer = meeting_stream(seed=102, attendees=2, end=False)[:5]
        list_url = page.url
        send_bodies(sqs, queue, [as_envelope(d) for d in newcomer])
        pill = page.locator("#new-meetings")
        pill.wait_for(state="visible", timeout=15000)
        assert pill.inner_text() == "1 new meeting: show"
        assert page.locator("tr.meeting-row").count() == 1
        pill.click()
        page.locator(f'[data-meeting-id="{newcomer[0]["meetingId"]}"]').wait_for(timeout=15000)
        assert pill.is_hidden() and page.locator("tr.meeting-row").count() == 2
        assert page.url == list_url
        browser.close()
    assert dialogs == []  # the hostile name ran nothing
