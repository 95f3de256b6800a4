"""The attendance summary a host reads after a meeting (shared/DESIGN.md "Hosts"). Pure Python.

Computed from each row's join intervals (roster.domain.fold.AttendeeState.intervals: the fold
closes one at every Left, Dropped, Deleted and at MeetingEnded), so it says what the roster says.

Choices where DESIGN.md is silent:

- A join still open counts up to the meeting's end, or up to now while the meeting goes on; its
  last leave is the meeting's end, or none while the meeting goes on (still in).
- Someone who never joined (added, authorized, removed before joining) is listed with no times.
- Duration runs from MeetingStarted (the earliest join when that event is unknown) to
  MeetingEnded (now while the meeting goes on).
- Average attendance counts everyone's time inside that span only (a join stamped a moment
  before MeetingStarted adds nothing), so it never exceeds the peak.
- People are sorted by name (externalUserId, else attendeeId), case-insensitively and with
  numbers in numeric order ("user2" before "user10"), as the dashboard sorts them; then by id.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class AttendeeTimes:
    """What the summary reads of a roster row."""

    attendee_id: str
    external_user_id: str | None
    intervals: Sequence[Sequence[int | None]]  # [start, end or None, end rank], in time order
    drop_count: int
    presence: str | None


@dataclass(frozen=True, slots=True)
class PersonAttendance:
    attendee_id: str
    external_user_id: str | None
    name: str
    first_join: int | None
    last_leave: int | None  # None: never joined, or still in a meeting that goes on
    total_ms: int
    drops: int
    presence: str | None


@dataclass(frozen=True, slots=True)
class MeetingAttendance:
    started_at: int | None  # the span's start (see the module docstring)
    ended_at: int | None  # None while the meeting goes on
    duration_ms: int | None  # None when nobody joined and MeetingStarted is unknown
    peak: int
    attendees: int  # people who joined at least once
    attendee_ms: int  # everyone's time inside the span
    average: float | None  # attendee_ms / duration_ms


@dataclass(frozen=True, slots=True)
class Attendance:
    meeting: MeetingAttendance
    people: list[PersonAttendance]


def name_key(name: str, attendee_id: str) -> tuple[str, str]:
    """Case-insensitive, digit runs in numeric order; the id breaks ties."""
    return re.sub(r"\d+", lambda digits: digits.group().zfill(12), name.lower()), attendee_id


def attendance_summarize(
    rows: Iterable[AttendeeTimes],
    *,
    started_at: int | None,
    ended_at: int | None,
    peak: int,
    now: int,
) -> Attendance:
    until = ended_at if ended_at is not None else now
    rows = list(rows)
    # Each row's joins as closed spans: an open one runs to the meeting's end, or to now.
    spans = [
        [(begin, max(begin, until) if end is None else end) for begin, end, _ in row.intervals]
        for row in rows
    ]
    first_joins = [joins[0][0] for joins in spans if joins]
    start = started_at if started_at is not None else min(first_joins, default=None)
    people = []
    inside = 0
    for row, joins in zip(rows, spans, strict=True):
        if start is not None:
            inside += sum(max(0, min(end, until) - max(begin, start)) for begin, end in joins)
        still_in = ended_at is None and bool(joins) and row.intervals[-1][1] is None
        people.append(
            PersonAttendance(
                attendee_id=row.attendee_id,
                external_user_id=row.external_user_id,
                name=row.external_user_id or row.attendee_id,
                first_join=joins[0][0] if joins else None,
                last_leave=joins[-1][1] if joins and not still_in else None,
                total_ms=sum(end - begin for begin, end in joins),
                drops=row.drop_count,
                presence=row.presence,
            )
        )
    people.sort(key=lambda person: name_key(person.name, person.attendee_id))
    duration = max(0, until - start) if start is not None else None
    meeting = MeetingAttendance(
        started_at=start,
        ended_at=ended_at,
        duration_ms=duration,
        peak=peak,
        attendees=len(first_joins),
        attendee_ms=inside,
        average=inside / duration if duration else None,
    )
    return Attendance(meeting=meeting, people=people)
