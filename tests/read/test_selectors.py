"""Selectors: what the read side loads (the shown columns, one query a list) and the figures it
derives on read (time in meeting so far, the timeline's end, the queues a check covers)."""

from __future__ import annotations

import json

import pytest

from roster.ingest import IncomingMessage, messages_ingest
from roster.models import Meeting, QueueSource
from roster.read.access import Access
from roster.read.selectors import (
    attendance_get,
    meeting_visible,
    meetings_visible,
    queue_urls_configured,
    roster_read,
    timeline_get,
)
from roster.read.serializers import MEETING_FIELDS, meeting_as_dict

pytestmark = pytest.mark.django_db

EVERYTHING = Access(everything=True)


def ingest(*details: dict) -> None:
    messages_ingest(messages=[IncomingMessage(body=json.dumps(d)) for d in details])


def event(meeting_id: str, event_type: str, timestamp: int, attendee_id: str = "") -> dict:
    detail = {"meetingId": meeting_id, "eventType": f"chime:{event_type}", "timestamp": timestamp}
    return {**detail, "attendeeId": attendee_id} if attendee_id else detail


def test_meetings_are_read_with_the_shown_columns_only(django_assert_num_queries):
    for n in range(3):
        ingest(event(f"m-{n}", "MeetingStarted", 1000 + n))
    meeting = meeting_visible(access=EVERYTHING, meeting_id="m-0")
    loaded = {f.attname for f in Meeting._meta.concrete_fields} - meeting.get_deferred_fields()
    assert loaded == set(MEETING_FIELDS)  # never the fold's bookkeeping
    with django_assert_num_queries(1):  # serialising reads no deferred column
        assert [meeting_as_dict(m)["meeting_id"] for m in meetings_visible(access=EVERYTHING)] == [
            "m-2",
            "m-1",
            "m-0",
        ]
    with django_assert_num_queries(2):  # the meeting again, then its attendees
        roster_read(meeting=meeting)


def test_attendance_is_one_query_and_counts_an_open_join_up_to_now(django_assert_num_queries):
    ingest(
        event("m-a", "AttendeeJoined", 1_000, "b"),
        event("m-a", "AttendeeLeft", 4_000, "b"),
        event("m-a", "AttendeeJoined", 2_000, "a"),
    )
    meeting = meeting_visible(access=EVERYTHING, meeting_id="m-a")
    with django_assert_num_queries(1):
        people = attendance_get(meeting=meeting, now_ms=10_000).people
    assert [(p.attendee_id, p.total_ms, p.last_leave, p.presence) for p in people] == [
        ("a", 8_000, None, "joined"),
        ("b", 3_000, 4_000, "left"),
    ]


def test_timeline_ends_when_the_meeting_ended():
    ingest(event("m-t", "MeetingStarted", 1_000), event("m-t", "AttendeeJoined", 1_500, "a"))
    assert timeline_get(meeting=meeting_visible(access=EVERYTHING, meeting_id="m-t"))["end"] is None
    ingest(event("m-t", "MeetingEnded", 9_000))
    timeline = timeline_get(meeting=meeting_visible(access=EVERYTHING, meeting_id="m-t"))
    assert timeline["end"] == 9_000
    assert timeline["lanes"][0]["segments"] == [{"kind": "present", "start": 1_500, "end": 9_000}]


def test_configured_queues_settings_first_then_enabled_rows(settings):
    settings.SQS_QUEUE_URLS = ["http://q/settings", "http://q/switched-off"]
    QueueSource.objects.create(url="http://q/row")
    QueueSource.objects.create(url="http://q/switched-off", enabled=False)
    QueueSource.objects.create(url="http://q/settings")
    QueueSource.objects.create(url="http://q/off", enabled=False)
    assert queue_urls_configured() == (
        ["http://q/settings", "http://q/row"],
        ["http://q/switched-off", "http://q/off"],
    )
