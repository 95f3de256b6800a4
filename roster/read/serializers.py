"""The JSON shapes of shared/ROSTER.md, in one place: REST, the roster command, the broadcaster and
the admin (which shows the same fields)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from roster.domain.attendance import Attendance
from roster.domain.fold import AttendeeState
from roster.domain.plan import MEETING_PUBLIC_FIELDS, MeetingFolded, MeetingRecord
from roster.domain.streams import STREAM_FIELDS
from roster.models import Attendee, Meeting, VoiceConnectorStream

# What a client sees of a meeting (shared/ROSTER.md), ``recording`` added by meeting_as_dict.
MEETING_FIELDS = MEETING_PUBLIC_FIELDS

# What a client sees of an attendee row: the fold's public state and the seq it last changed at.
ATTENDEE_FIELDS = (*AttendeeState.PUBLIC_FIELDS, "seq")


def meeting_as_dict(meeting: Meeting | MeetingRecord) -> dict[str, Any]:
    data = {name: getattr(meeting, name) for name in MEETING_FIELDS}
    data["recording"] = meeting.recording
    return data


def attendee_as_dict(attendee: Attendee | AttendeeState) -> dict[str, Any]:
    return {name: getattr(attendee, name) for name in ATTENDEE_FIELDS}


@dataclass(frozen=True, slots=True)
class ChangeShown:
    """What a client sees of one committed change: the meeting and each changed attendee, as dicts
    and as compact JSON text (``,`` and ``:`` with no space). The feed's delta frame and the hook's
    body are both built around the same two texts, so a change is serialised once whatever number
    of outputs carry it."""

    meeting: dict[str, Any]
    attendees: list[dict[str, Any]]
    meeting_json: str
    attendees_json: str

    @classmethod
    def of(cls, *, meeting: dict[str, Any], attendees: list[dict[str, Any]]) -> ChangeShown:
        return cls(meeting, attendees, compact_json(meeting), compact_json(attendees))


# One encoder for every call: json.dumps builds a new JSONEncoder whenever it is given separators.
compact_json = json.JSONEncoder(separators=(",", ":")).encode


def change_shown(change: MeetingFolded) -> ChangeShown:
    """Made once per change, by whichever output asks first (the hook outbox, the broadcaster);
    theirs to read, not to change."""
    if change.shown is None:
        change.shown = ChangeShown.of(
            meeting=meeting_as_dict(change.meeting),
            attendees=[attendee_as_dict(row) for row in change.changed_rows],
        )
    return change.shown


def stream_as_dict(stream: VoiceConnectorStream) -> dict[str, Any]:
    """What a client sees of a stream: the whole folded state (roster.domain.streams)."""
    return {name: getattr(stream, name) for name in STREAM_FIELDS}


def attendance_as_dict(attendance: Attendance) -> dict[str, Any]:
    """The attendance summary: ``meeting`` figures and ``people`` sorted by name (epoch ms, ms)."""
    return asdict(attendance)
