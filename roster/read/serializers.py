"""The JSON shapes of shared/ROSTER.md, in one place: REST, the roster command, the broadcaster and
the admin (which shows the same fields)."""

from __future__ import annotations

from typing import Any

from roster.domain.fold import AttendeeState
from roster.models import Attendee, Meeting, VoiceConnectorStream

# joined_count before peak_joined: the order the admin has always shown them in.
MEETING_FIELDS = (
    "meeting_id",
    "external_meeting_id",
    "media_region",
    "status",
    "started_at",
    "ended_at",
    "joined_count",
    "peak_joined",
    "dropped_count",
    "video_count",
    "sharing_count",
    "transcription",
    "transcription_message",
    "pipelines",
    "seq",
)

# What a client sees of an attendee row: the fold's public state and the seq it last changed at.
ATTENDEE_FIELDS = (*AttendeeState.PUBLIC_FIELDS, "seq")


def meeting_as_dict(meeting: Meeting) -> dict[str, Any]:
    data = {name: getattr(meeting, name) for name in MEETING_FIELDS}
    data["recording"] = meeting.recording
    return data


def attendee_as_dict(attendee: Attendee) -> dict[str, Any]:
    return {name: getattr(attendee, name) for name in ATTENDEE_FIELDS}


STREAM_FIELDS = (
    "voice_connector_id",
    "transaction_id",
    "status",
    "status_at",
    "call_id",
    "direction",
    "from_number",
    "to_number",
    "stream_arn",
    "start_time",
    "end_time",
    "failure_time",
    "failure_reason",
)


def stream_as_dict(stream: VoiceConnectorStream) -> dict[str, Any]:
    return {name: getattr(stream, name) for name in STREAM_FIELDS}
