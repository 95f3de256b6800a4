"""The roster page a host reads, in a real browser (Daphne, headless Chromium): icons that say what
they show, who is presenting, a ticking time, capabilities in words, a table as tall as its rows
under a sticky header; then the meeting ends and the attendance summary appears without a reload.
Screenshots of both go to artifacts/meeting_page_live/ (gitignored; the paths are printed)."""

from __future__ import annotations

import time

import pytest
from django.contrib.auth.models import User

from roster.dev.chime import as_bare, detail
from roster.ingest import IncomingMessage, messages_ingest
from roster.models import AccessRule
from tests.conftest import chromium_page
from tests.web.test_streams_live import in_thread

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.browser]

HOSTILE = "<img src=x onerror=alert(1)>"
MEETING = "m-all-hands"
PEOPLE = 36
ALL_WAYS = {"audio": "SendReceive", "video": "SendReceive", "content": "SendReceive"}
LISTENER = {"audio": "SendReceive", "video": "None", "content": "Receive"}


def user_of(i: int) -> str:
    return HOSTILE if i == 3 else f"user{i}@example.com"


def meeting_so_far(start: int) -> list[dict]:
    """36 people joined a second apart, a third on video, one sharing their screen, one sharing
    content (Chime's "#content" attendee), one dropped and back, capabilities for everyone."""

    def at(event_type: str, ts: int, attendee: str | None = None, **extra) -> dict:
        return detail(event_type, MEETING, attendee, ts, externalMeetingId="all-hands", **extra)

    events = [at("MeetingStarted", start)]
    for i in range(PEOPLE):
        joined = start + i * 1000
        user = user_of(i)
        events.append(at("AttendeeJoined", joined, f"a{i}", externalUserId=user, networkType="Voip"))
        caps = LISTENER if i % 2 else ALL_WAYS
        events.append(
            at("AttendeeCapabilitiesUpdated", joined + 1, f"a{i}", success="1", attendeeCapabilities=caps)
        )
        if i % 3 == 0:
            events.append(at("AttendeeVideoStarted", joined + 2, f"a{i}", externalUserId=user))
    events += [
        at("AttendeeScreenShareStarted", start + 60_000, "a1", externalUserId=user_of(1)),
        at("AttendeeContentJoined", start + 61_000, "a2#content", externalUserId=f"{user_of(2)}#content"),
        at(
            "AttendeeContentVideoStarted",
            start + 61_001,
            "a2#content",
            externalUserId=f"{user_of(2)}#content",
        ),
        at("AttendeeDropped", start + 62_000, "a5", externalUserId=user_of(5)),
        at("AttendeeJoined", start + 70_000, "a5", externalUserId=user_of(5), networkType="Voip"),
    ]
    return events


def ingest(*details: dict) -> None:
    messages_ingest(messages=[IncomingMessage(body=as_bare(d)) for d in details])


def test_host_reads_the_roster_then_the_summary_appears_when_the_meeting_ends(daphne, artifacts):
    start = int(time.time() * 1000) - 10 * 60_000
    ingest(*meeting_so_far(start))
    host = User.objects.create_user("host", password="unused")  # not staff: a rule lets them in
    AccessRule.objects.create(user=host, meetings="all-hands")
    dialogs: list[str] = []
    with chromium_page(dialogs, viewport={"width": 1400, "height": 900}, user=host, site=daphne) as page:
        page.goto(f"http://{daphne}/meetings/{MEETING}/")
        page.wait_for_selector("#connection-status[data-state=live]", timeout=15000)
        rows = page.locator("#attendee-rows tr.row")
        rows.nth(PEOPLE - 1).wait_for(timeout=15000)
        assert rows.count() == PEOPLE  # all drawn: the table is as tall as its rows

        # Icons say what they show.
        assert (
            page.locator("#attendee-rows").get_by_role("img", name="video on", exact=True).count()
            == PEOPLE // 3
        )
        row = {i: page.locator(f'tr[data-attendee-id="a{i}"]') for i in (0, 1, 2, 3, 5)}
        assert row[1].get_by_role("img", name="sharing screen").is_visible()
        assert row[2].get_by_role("img", name="sharing content (video)").is_visible()
        assert row[0].get_by_role("img", name="not sharing").count() == 1
        assert row[1].get_by_role("img", name="video off").count() == 1
        # Who is presenting, in the header.
        presenting = page.locator("#presenting")
        assert presenting.inner_text().split() == [
            "Presenting",
            "now:",
            "user1@example.com",
            "user2@example.com",
        ]
        assert presenting.get_by_role("img", name="sharing screen").count() == 1
        # Capabilities in words; names as text.
        assert row[0].locator("td.caps").inner_text() == "audio, video, content: send & receive"
        assert (
            row[1].locator("td.caps").inner_text()
            == "audio: send & receive · video: none · content: receive only"
        )
        assert row[3].locator("td.name").inner_text() == HOSTILE
        assert row[5].locator("td.drops").inner_text() == "1"
        # The time in the meeting ticks.
        ticking = row[0].locator("td.time")
        before = ticking.inner_text()
        page.wait_for_function(
            "([cell, before]) => cell.textContent !== before",
            arg=[ticking.element_handle(), before],
            timeout=5000,
        )
        assert before.count(":") == 1 and int(before.split(":")[0]) >= 9  # about ten minutes in

        roster_png = artifacts / "roster.png"
        page.screenshot(path=roster_png)
        # Scrolled down, the header stays on screen above the rows.
        page.evaluate("window.scrollTo(0, document.getElementById('attendee-table').offsetTop + 500)")
        page.wait_for_timeout(300)
        head_top = page.evaluate(
            "document.querySelector('#attendee-table thead th').getBoundingClientRect().top"
        )
        table_top = page.evaluate("document.getElementById('attendee-table').getBoundingClientRect().top")
        assert abs(head_top) <= 1 and table_top < -400
        page.screenshot(path=artifacts / "roster-scrolled.png")
        page.evaluate("window.scrollTo(0, 0)")

        # The meeting ends: the summary appears, by name, without a reload.
        url_before = page.url
        in_thread(
            ingest, detail("MeetingEnded", MEETING, None, start + 10 * 60_000, externalMeetingId="all-hands")
        )
        summary = page.locator("#attendance-summary")
        summary.wait_for(state="visible", timeout=15000)
        assert page.url == url_before
        names = summary.locator("tbody th").all_inner_texts()
        assert len(names) == PEOPLE and names[0] == HOSTILE and names[1:4] == [user_of(i) for i in (0, 1, 2)]
        assert names[-1] == f"user{PEOPLE - 1}@example.com"  # numbers in numeric order
        figures = summary.locator(".figure")
        assert [
            f.locator("dt").text_content() + " " + f.locator("dd").text_content() for f in figures.all()
        ] == [
            "Duration 10:00",
            f"Peak attendance {PEOPLE}",
            "Average attendance 34.9",  # (36 x 600 s - 630 s joining late - 8 s away) / 600 s
            f"People who joined {PEOPLE}",
        ]
        dropped = summary.locator('tr[data-attendee-id="a5"]')
        assert dropped.locator("td.drops").inner_text() == "1"
        assert dropped.locator("td.total").inner_text() == "9:47"  # ten minutes less 5 s late, 8 s away
        assert presenting.is_hidden()  # nobody presents after the end
        summary_png = artifacts / "summary.png"
        summary.screenshot(path=summary_png)
        assert page.evaluate("document.querySelectorAll('img[src=x]').length") == 0
    assert dialogs == []
    print(f"screenshots: {roster_png} {artifacts / 'roster-scrolled.png'} {summary_png}")
