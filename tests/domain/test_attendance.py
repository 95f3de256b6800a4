"""The attendance summary: per person first join, last leave, total time and drops; per meeting
duration, peak and average attendance; from the fold's own join intervals."""

from __future__ import annotations

import pytest

from roster.dev.chime import chime_event
from roster.domain.attendance import AttendeeTimes, attendance_summarize
from roster.domain.fold import roster_fold

pytestmark = pytest.mark.once  # no database: the PostgreSQL run is enough (tests/conftest.py)


def summary_of(events, *, now: int = 100_000):
    """Fold the events (the real fold), then summarise what it left."""
    roster = roster_fold("m", events)
    rows = [
        AttendeeTimes(a.attendee_id, a.external_user_id, a.intervals, a.drop_count, a.presence)
        for a in roster.attendees.values()
    ]
    return attendance_summarize(
        rows,
        started_at=roster.meeting.started_at,
        ended_at=roster.meeting.ended_at,
        peak=roster.peak_joined,
        now=now,
    )


def ev(event_type: str, ts: int, attendee: str | None = None, **extra):
    return chime_event(event_type, "m", attendee, ts, **extra)


def test_after_the_meeting_each_person_and_the_meeting_figures():
    summary = summary_of(
        [
            ev("MeetingStarted", 0),
            ev("AttendeeJoined", 0, "a", externalUserId="user10"),
            ev("AttendeeDropped", 10_000, "a"),
            ev("AttendeeJoined", 15_000, "a"),
            ev("AttendeeLeft", 40_000, "a"),
            ev("AttendeeJoined", 20_000, "b", externalUserId="User2"),  # in when the meeting ends
            ev("AttendeeAdded", 5_000, "c", externalUserId="never-came"),
            ev("MeetingEnded", 60_000),
        ]
    )
    people = [(p.name, p.first_join, p.last_leave, p.total_ms, p.drops) for p in summary.people]
    assert people == [
        ("never-came", None, None, 0, 0),
        ("User2", 20_000, 60_000, 40_000, 0),  # last leave: the meeting's end
        ("user10", 0, 40_000, 35_000, 1),  # by name, numbers in numeric order
    ]
    meeting = summary.meeting
    assert (meeting.started_at, meeting.ended_at, meeting.duration_ms) == (0, 60_000, 60_000)
    assert (meeting.peak, meeting.attendees, meeting.attendee_ms) == (2, 2, 75_000)
    assert meeting.average == 75_000 / 60_000


def test_while_the_meeting_goes_on_an_open_join_counts_up_to_now_and_has_no_leave():
    summary = summary_of([ev("MeetingStarted", 1_000), ev("AttendeeJoined", 2_000, "a")], now=11_000)
    (person,) = summary.people
    assert (person.first_join, person.last_leave, person.total_ms) == (2_000, None, 9_000)
    assert (summary.meeting.ended_at, summary.meeting.duration_ms, summary.meeting.average) == (
        None,
        10_000,
        0.9,
    )


def test_time_outside_the_meeting_adds_nothing_to_the_average():
    summary = summary_of(
        [
            ev("AttendeeJoined", 1_000, "early"),  # a moment before MeetingStarted
            ev("MeetingStarted", 5_000),
            ev("MeetingEnded", 15_000),
        ]
    )
    assert summary.people[0].total_ms == 14_000  # their own time, whole
    assert (summary.meeting.duration_ms, summary.meeting.attendee_ms, summary.meeting.average) == (
        10_000,
        10_000,
        1.0,
    )


def test_without_meeting_started_the_span_starts_at_the_first_join():
    summary = summary_of([ev("AttendeeJoined", 3_000, "a"), ev("AttendeeLeft", 7_000, "a")], now=13_000)
    assert (summary.meeting.started_at, summary.meeting.duration_ms) == (3_000, 10_000)
    assert summary.meeting.average == 0.4


def test_nobody_and_no_start_means_no_duration():
    summary = summary_of([ev("AttendeeAdded", 3_000, "a")])
    assert (summary.meeting.duration_ms, summary.meeting.average, summary.meeting.attendees) == (
        None,
        None,
        0,
    )
