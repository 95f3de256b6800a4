"""The event types of a roster change (roster.domain.hook_events): pure."""

from __future__ import annotations

import pytest

from roster.domain.fold import AttendeeState
from roster.domain.hook_events import EVENT_TYPES, attendee_events, change_events, meeting_events

pytestmark = pytest.mark.once


def row(**fields) -> AttendeeState:
    return AttendeeState(attendee_id="a", **fields)


@pytest.mark.parametrize("presence", ["added", "authorized", "joined", "left", "dropped", "removed"])
def test_a_presence_reached_is_its_type(presence):
    assert attendee_events(
        before=row(presence="added" if presence != "added" else None), after=row(presence=presence)
    ) == {f"attendee.{presence}"}


def test_video_share_and_capabilities_name_their_change():
    before = row(presence="joined")
    after = row(presence="joined", video=True, content_share=True, capabilities={"Audio": "Send"})
    assert attendee_events(before=before, after=after) == {
        "video.started",
        "share.started",
        "attendee.capabilities",
    }
    assert attendee_events(before=after, after=before) == {
        "video.stopped",
        "share.stopped",
        "attendee.capabilities",
    }


def test_a_change_no_rule_names_is_named_by_the_state_it_leaves():
    assert attendee_events(before=row(presence="joined"), after=row(presence="joined", joined_ms=5)) == {
        "attendee.joined"
    }
    assert change_events(
        meeting_before={"status": "active"},
        meeting_after={"status": "active", "peak_joined": 3},
        attendees=[],
    ) == ["meeting.started"]


def test_meeting_fields():
    assert meeting_events(before={"status": "unknown"}, after={"status": "active"}) == {"meeting.started"}
    assert meeting_events(before={"status": "active"}, after={"status": "ended"}) == {"meeting.ended"}
    assert meeting_events(before={}, after={"transcription": "started"}) == {"transcription.changed"}
    assert meeting_events(before={"pipelines": {}}, after={"pipelines": {"p": "in_progress"}}) == {
        "recording.changed"
    }


def test_types_come_in_the_documented_order_once_each():
    found = change_events(
        meeting_before={"status": "active"},
        meeting_after={"status": "ended"},
        attendees=[(row(presence="joined", video=True), row(presence="left")), (None, row(presence="left"))],
    )
    assert found == ["meeting.ended", "attendee.left", "video.stopped"]
    assert len(EVENT_TYPES) == 15
