"""Synthesized events (shared/ROSTER.md "Repairs from the Chime API"): the builder, the reconcile
key space, and the parser's rule that only the caller, never a body, makes an event a repair."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from roster.dev.chime import as_json, chime_event, detail, envelope
from roster.domain.events import SOURCE_CHIME, SOURCE_RECONCILE, ChimeEvent, Rejection, event_parse
from roster.domain.fold import roster_fold
from roster.domain.repairs import (
    attendee_added_repair,
    attendee_deleted_repair,
    capabilities_repair,
    meeting_ended_repair,
    repair_event,
)
from roster.domain.timeline import timeline_build

pytestmark = pytest.mark.once  # no database: the PostgreSQL run is enough (tests/conftest.py)

MEETING = "m-r"


def test_each_repair_parses_as_a_synthesized_event_of_its_type():
    ended = repair_event(meeting_ended_repair(meeting_id=MEETING, timestamp=500))
    deleted = repair_event(attendee_deleted_repair(meeting_id=MEETING, attendee_id="a1", timestamp=500))
    added = repair_event(
        attendee_added_repair(meeting_id=MEETING, attendee_id="a2", external_user_id="ann", timestamp=500)
    )
    caps = repair_event(
        capabilities_repair(
            meeting_id=MEETING,
            attendee_id="a2",
            capabilities={"Audio": "SendReceive", "Video": "Send", "Content": "None"},
            timestamp=500,
        )
    )
    assert [(e.event_type, e.attendee_id, e.timestamp, e.source) for e in (ended, deleted, added, caps)] == [
        ("chime:MeetingEnded", "", 500, SOURCE_RECONCILE),
        ("chime:AttendeeDeleted", "a1", 500, SOURCE_RECONCILE),
        ("chime:AttendeeAdded", "a2", 500, SOURCE_RECONCILE),
        ("chime:AttendeeCapabilitiesUpdated", "a2", 500, SOURCE_RECONCILE),
    ]
    roster = roster_fold(MEETING, [ended, deleted, added, caps])
    assert roster.meeting.status == "ended" and roster.meeting.ended_at == 500
    assert roster.attendees["a1"].presence == "removed"
    a2 = roster.attendees["a2"]
    assert (a2.presence, a2.external_user_id, a2.repaired) == ("added", "ann", True)
    assert a2.capabilities == {"audio": "SendReceive", "video": "Send", "content": "None"}


@given(
    st.sampled_from(["MeetingEnded", "AttendeeAdded", "AttendeeDeleted", "AttendeeCapabilitiesUpdated"]),
    st.integers(min_value=0, max_value=2**53),
)
def test_a_repair_has_a_key_space_of_its_own(event_type, ts):
    """The same detail parsed as a real event and as a repair: two keys, never a duplicate."""
    attendee = None if event_type == "MeetingEnded" else "a1"
    body = as_json(detail(event_type, MEETING, attendee, ts))
    real, repair = event_parse(body), event_parse(body, source=SOURCE_RECONCILE)
    assert isinstance(real, ChimeEvent) and isinstance(repair, ChimeEvent)
    assert (real.source, repair.source) == (SOURCE_CHIME, SOURCE_RECONCILE)
    assert real.key != repair.key
    assert (real.event_type, real.attendee_id, real.timestamp) == (
        repair.event_type,
        repair.attendee_id,
        repair.timestamp,
    )


def test_a_body_cannot_claim_to_be_a_repair():
    """Only the caller's ``source`` counts: a detail field says nothing, an envelope source
    "reconcile" is not Chime's, and the reconcile path takes bare meeting details only."""
    claimed = detail("MeetingEnded", MEETING, None, 500, source="reconcile")
    in_envelope = envelope(detail("MeetingEnded", MEETING, None, 500))
    in_envelope["detail"]["source"] = "reconcile"
    other_case = detail("MeetingEnded", MEETING, None, 500, Source="reconcile", origin="reconcile")
    for body in (as_json(in_envelope), as_json(other_case)):
        event = event_parse(body)
        assert isinstance(event, ChimeEvent) and event.source == SOURCE_CHIME, event
    as_bare_with_source = event_parse(as_json(claimed))
    assert isinstance(as_bare_with_source, Rejection) and as_bare_with_source.code == "wrong_source"
    spoofed = event_parse(as_json({**in_envelope, "source": "reconcile"}))
    assert isinstance(spoofed, Rejection) and spoofed.code == "wrong_source"

    enveloped_repair = event_parse(as_json(in_envelope), source=SOURCE_RECONCILE)
    assert isinstance(enveloped_repair, Rejection) and enveloped_repair.code == "bad_repair"
    with pytest.raises(ValueError):
        event_parse(as_json(claimed), source="sqs")


def test_a_repair_body_the_parser_refuses_raises():
    with pytest.raises(ValueError):
        repair_event(json.dumps({"eventType": "chime:MeetingEnded", "meetingId": MEETING}))  # no timestamp


def test_the_timeline_marks_repairs_apart_until_a_real_event_supersedes_them():
    joined = chime_event("AttendeeJoined", MEETING, "a1", 100)
    deleted = repair_event(attendee_deleted_repair(meeting_id=MEETING, attendee_id="a1", timestamp=300))
    added = repair_event(
        attendee_added_repair(meeting_id=MEETING, attendee_id="a2", external_user_id="bo", timestamp=300)
    )
    timeline = timeline_build(MEETING, [joined, deleted, added])
    lanes = {lane["attendee_id"]: lane for lane in timeline["lanes"]}
    assert lanes["a1"]["repairs"] == [{"at": 300, "type": "AttendeeDeleted", "source": SOURCE_RECONCILE}]
    assert lanes["a1"]["segments"] == [{"kind": "present", "start": 100, "end": 300}]
    assert lanes["a2"]["repairs"] == [{"at": 300, "type": "AttendeeAdded", "source": SOURCE_RECONCILE}]
    assert timeline["repairs"] == []

    real = chime_event("AttendeeDeleted", MEETING, "a1", 400)
    lanes = {
        lane["attendee_id"]: lane for lane in timeline_build(MEETING, [joined, deleted, added, real])["lanes"]
    }
    assert lanes["a1"]["repairs"] == []
    assert lanes["a1"]["segments"] == [{"kind": "present", "start": 100, "end": 400}]
