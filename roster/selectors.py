"""Reads: what the REST endpoints, commands and (later) the feed show."""

from __future__ import annotations

from typing import Any

from django.db.models import Q

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


def meeting_list() -> list[dict[str, Any]]:
    meetings = Meeting.objects.order_by("status", "-started_at", "meeting_id")
    return [meeting_as_dict(meeting) for meeting in meetings]
