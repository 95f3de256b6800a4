"""The meeting list of a host with a few hundred meetings, in a real browser (Daphne, headless
Chromium): the first page and More until the end (every meeting once, in the server's order),
search by meeting name and by an attendee's user id, the status filter and a sort, a row on
screen changing in place, and a meeting that starts meanwhile announced by the "N new meetings"
pill instead of being slotted in under the reader. Meetings outside the host's rule never show.
Screenshots go to artifacts/meeting_list_live/ (gitignored; the paths are printed)."""

from __future__ import annotations

import time
import uuid

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client

from roster.dev.chime import as_bare, detail
from roster.ingest import IncomingMessage, messages_ingest
from roster.live.broadcast import publisher
from roster.models import AccessRule, Attendee, Meeting
from tests.conftest import chromium_page, in_thread

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.browser]

IN_SCOPE = 300
OUTSIDE = 20
PAGE = 50


def ingest(*details: dict) -> None:
    messages_ingest(messages=[IncomingMessage(body=as_bare(d)) for d in details])
    publisher.flush()  # broadcast before returning: the browser is waiting for it


def meetings_made(tag: str, now: int) -> list[Meeting]:
    """300 meetings of the host's rule (a third ended), 20 of another team, started a minute
    apart; one attendee, zelda, is in meeting 017 and in one of the other team's."""
    made = [
        Meeting(
            meeting_id=f"{tag}-m{i:03d}",
            external_meeting_id=f"{tag}-acme-{i:03d}",
            status=Meeting.Status.ENDED if i % 3 == 0 else Meeting.Status.ACTIVE,
            started_at=now - i * 60_000,
            ended_at=now if i % 3 == 0 else None,
            seq=1,
        )
        for i in range(IN_SCOPE)
    ] + [
        Meeting(
            meeting_id=f"{tag}-x{i:03d}",
            external_meeting_id=f"{tag}-other-{i:03d}",
            status=Meeting.Status.ACTIVE,
            started_at=now + i,  # newer than every meeting of the host: first, were they shown
            seq=1,
        )
        for i in range(OUTSIDE)
    ]
    Meeting.objects.bulk_create(made)
    Attendee.objects.bulk_create(
        Attendee(meeting_id=meeting_id, attendee_id="zelda", external_user_id="Zelda@example.com", seq=1)
        for meeting_id in (f"{tag}-m017", f"{tag}-x003")
    )
    return made[:IN_SCOPE]


def expected_order(meetings: list[Meeting]) -> list[str]:
    """Active first, then newest started, then meeting id (DESIGN.md, REST)."""
    rank = {"active": 0, "unknown": 1, "ended": 2}
    ordered = sorted(meetings, key=lambda m: (rank[m.status], -(m.started_at or -1), m.meeting_id))
    return [m.meeting_id for m in ordered]


def shown(page) -> list[str]:
    return page.eval_on_selector_all("tr.meeting-row", "rows => rows.map(r => r.dataset.meetingId)")


def rows_become(page, count: int) -> None:
    page.wait_for_function(
        "n => document.querySelectorAll('tr.meeting-row').length === n", arg=count, timeout=15000
    )


def search(page, text: str) -> None:
    """Type into the search box as a reader does; the list follows after the typing pause."""
    page.fill("#meeting-search", text)
    page.wait_for_function(
        "q => new URLSearchParams(location.search).get('q') === (q || null)", arg=text, timeout=15000
    )


def test_host_searches_pages_and_watches_a_list_of_hundreds(daphne, artifacts):
    tag = uuid.uuid4().hex[:8]  # Redis is shared with other runs: ids of our own
    now = int(time.time() * 1000)
    mine = meetings_made(tag, now)
    host = User.objects.create_user("host", password="unused")  # not staff: a rule lets them in
    AccessRule.objects.create(user=host, meetings=f"{tag}-acme-*")
    signed_in = Client()
    signed_in.force_login(host)
    base = f"http://{daphne}"

    dialogs: list[str] = []
    with chromium_page(dialogs) as page:
        page.context.add_cookies(
            [
                {
                    "name": settings.SESSION_COOKIE_NAME,
                    "value": signed_in.cookies[settings.SESSION_COOKIE_NAME].value,
                    "url": f"{base}/",
                }
            ]
        )
        page.goto(f"{base}/")
        page.wait_for_selector("#connection-status[data-state=live]", timeout=15000)
        order = expected_order(mine)
        assert shown(page) == order[:PAGE]  # the first page, in the server's order
        assert page.locator("#meeting-summary").inner_text() == f"{PAGE}+ meetings · {PAGE} active on screen"
        page.screenshot(path=artifacts / "list.png", full_page=True)

        # More, until there is no more: every meeting of the rule once, none of the others.
        pages = 1
        while page.locator("#more-meetings").is_visible():
            page.click("#more-meetings")
            pages += 1
            rows_become(page, min(IN_SCOPE, pages * PAGE))
        assert pages == IN_SCOPE // PAGE
        assert shown(page) == order
        assert page.locator("#meeting-summary").inner_text().startswith(f"{IN_SCOPE} meetings")

        # Search: part of a meeting's name, and an attendee's user id (case-insensitive).
        search(page, "ACME-01")
        rows_become(page, 10)
        assert sorted(shown(page)) == [f"{tag}-m{i:03d}" for i in range(10, 20)]
        search(page, "zelda@")
        rows_become(page, 1)
        assert shown(page) == [f"{tag}-m017"]  # not the other team's meeting zelda is in
        search(page, f"{tag}-x003")  # another team's meeting id, typed by hand
        page.wait_for_selector("tr.empty-row")
        assert page.locator("tr.empty-row").inner_text() == "No meeting matches this search."
        page.screenshot(path=artifacts / "list-search.png", full_page=True)
        search(page, "")

        # The status filter and a sort.
        page.select_option("#meeting-status", "ended")
        page.wait_for_function("() => new URLSearchParams(location.search).get('status') === 'ended'")
        rows_become(page, IN_SCOPE // 3 if IN_SCOPE // 3 < PAGE else PAGE)
        assert {
            s for s in page.eval_on_selector_all("tr.meeting-row", "r => r.map(x => x.dataset.status)")
        } == {"ended"}
        page.select_option("#meeting-status", "")
        page.select_option("#meeting-sort", "oldest")
        page.wait_for_function("() => new URLSearchParams(location.search).get('sort') === 'oldest'")
        page.wait_for_function(
            "id => document.querySelector('tr.meeting-row')?.dataset.meetingId === id",
            arg=f"{tag}-m{IN_SCOPE - 1:03d}",
            timeout=15000,
        )
        page.reload()  # the URL keeps the view
        page.wait_for_selector("#connection-status[data-state=live]", timeout=15000)
        assert page.locator("#meeting-sort").input_value() == "oldest"
        assert shown(page)[0] == f"{tag}-m{IN_SCOPE - 1:03d}"
        page.select_option("#meeting-sort", "active")
        page.wait_for_function("() => !new URLSearchParams(location.search).has('sort')")
        rows_become(page, PAGE)

        # A row on screen changes in place; a meeting that starts is announced, not slotted in.
        first = page.locator("tr.meeting-row").first
        first_id = first.get_attribute("data-meeting-id")
        in_thread(
            ingest,
            detail("AttendeeJoined", first_id, "late", now + 1000, externalUserId="late@example.com"),
        )
        page.wait_for_function(
            "() => document.querySelector('tr.meeting-row td.joined').textContent === '1'", timeout=15000
        )
        assert shown(page)[0] == first_id
        in_thread(
            ingest,
            detail("MeetingStarted", f"{tag}-x-new", None, now + 2000, externalMeetingId=f"{tag}-other-new"),
            detail("MeetingStarted", f"{tag}-m-new", None, now + 3000, externalMeetingId=f"{tag}-acme-new"),
        )
        pill = page.locator("#new-meetings")
        pill.wait_for(state="visible", timeout=15000)
        assert pill.inner_text() == "1 new meeting: show"  # the other team's never counts
        assert shown(page)[0] == first_id and len(shown(page)) == PAGE
        page.screenshot(path=artifacts / "list-new-meeting.png", full_page=True)
        pill.click()
        page.wait_for_function(
            "id => document.querySelector('tr.meeting-row')?.dataset.meetingId === id",
            arg=f"{tag}-m-new",
            timeout=15000,
        )
        assert pill.is_hidden()
    assert dialogs == []
    print(f"screenshots: {' '.join(str(p) for p in sorted(artifacts.glob('list*.png')))}")
