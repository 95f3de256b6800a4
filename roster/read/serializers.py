"""The JSON shapes of shared/ROSTER.md, in one place: REST, the roster command and the broadcaster."""

from __future__ import annotations

from typing import Any

from roster.domain.fold import AttendeeState
from roster.models import Attendee, Meeting, VoiceConnectorStream

MEETING_FIELDS = (
    "meeting_id",
    "external_meeting_id",
    "media_region",
    "status",
    "started_at",
    "ended_at",
    "peak_joined",
    "joined_count",
    "dropped_count",
    "video_count",
    "sharing_count",
    "transcription",
    "transcription_message",
    "pipelines",
    "seq",
)


def meeting_as_dict(meeting: Meeting) -> dict[str, Any]:
    data = {name: getattr(meeting, name) for name in MEETING_FIELDS}
    data["recording"] = meeting.recording
    return data


def attendee_as_dict(attendee: Attendee) -> dict[str, Any]:
    data = {name: getattr(attendee, name) for name in AttendeeState.PUBLIC_FIELDS}
    data["seq"] = attendee.seq
    return data


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
