"""Reads: what the REST endpoints, the dashboard, the sockets and the commands show."""

from __future__ import annotations

from typing import Any

from django.db.models import Case, F, Q, When

from roster.access import Access
from roster.models import Attendee, Meeting
from roster.serializers import attendee_as_dict, meeting_as_dict


def meeting_get(*, meeting_id: str) -> Meeting | None:
    """By meetingId, else by externalMeetingId (the most recently started one)."""
    meeting = Meeting.objects.filter(meeting_id=meeting_id).first()
    if meeting is None:
        meeting = (
            Meeting.objects.filter(Q(external_meeting_id=meeting_id))
            .order_by("-started_at", "-created_at")
            .first()
        )
    return meeting


def roster_get(*, meeting_id: str) -> dict[str, Any] | None:
    meeting = meeting_get(meeting_id=meeting_id)
    if meeting is None:
        return None
    attendees = Attendee.objects.filter(meeting=meeting).order_by("attendee_id")
    return {"meeting": meeting_as_dict(meeting), "attendees": [attendee_as_dict(a) for a in attendees]}


def meetings_visible(*, access: Access) -> list[Meeting]:
    """Every meeting the caller may see: active first, then unknown, then ended; newest first."""
    if access.nothing:
        return []
    order = Case(
        When(status=Meeting.Status.ACTIVE, then=0), When(status=Meeting.Status.UNKNOWN, then=1), default=2
    )
    meetings = Meeting.objects.order_by(order, F("started_at").desc(nulls_last=True), "meeting_id")
    if access.everything:
        return list(meetings)
    return [
        m
        for m in meetings
        if access.allows(meeting_id=m.meeting_id, external_meeting_id=m.external_meeting_id)
    ]


def meeting_visible(*, access: Access, meeting_id: str) -> Meeting | None:
    """The meeting, or None when it does not exist *or* the caller may not see it (same answer)."""
    meeting = Meeting.objects.filter(meeting_id=meeting_id).first()
    if meeting is None or not access.allows(
        meeting_id=meeting.meeting_id, external_meeting_id=meeting.external_meeting_id
    ):
        return None
    return meeting


def roster_read(*, meeting: Meeting, since: int | None = None) -> dict[str, Any]:
    """The meeting and its attendees (those changed after ``since``, when given)."""
    meeting.refresh_from_db()
    attendees = Attendee.objects.filter(meeting=meeting)
    if since is not None:
        attendees = attendees.filter(seq__gt=since)
    return {
        "meeting": meeting_as_dict(meeting),
        "attendees": [attendee_as_dict(a) for a in attendees.order_by("attendee_id")],
    }
