"""The simulator (roster.dev.chime's generator, sent by `manage.py simulate`): deterministic,
realistic (every kind of event the product handles), and what it sends through two overlapping
queues drains to the roster the whole fold gives."""

from __future__ import annotations

import io
import itertools

import pytest
from django.core.management import call_command

from roster.dev.chime import as_envelope, deliveries, meetings_interleave
from roster.domain import fold as machine
from roster.domain.events import ChimeEvent, Rejection, event_parse
from roster.models import Event, Quarantine
from roster.sources.sqs import queue_drain_once
from tests.conftest import expected, queue_depth, stored

EXPECTED_TYPES = {
    "MeetingStarted", "MeetingEnded", "AttendeeAdded", "AttendeeAuthorized", "AttendeeJoined", "AttendeeLeft",
    "AttendeeDropped", "AttendeeDeleted", "AttendeeVideoStarted", "AttendeeVideoStopped",
    "AttendeeScreenShareStarted", "AttendeeScreenShareStopped",
    "AttendeeContentJoined", "AttendeeContentLeft",
    "AttendeeContentVideoStarted", "AttendeeContentVideoStopped", "AttendeeCapabilitiesUpdated",
    "TranscriptionStarted", "TranscriptionInterrupted", "TranscriptionResumed", "TranscriptionStopped",
    "MediaPipelineInProgress", "MediaPipelineDeleted",
}  # fmt: skip


def parsed(body: str) -> ChimeEvent:
    event = event_parse(body)
    assert isinstance(event, ChimeEvent), event
    return event


def test_same_seed_same_traffic_and_every_kind_of_event():
    def run(seed: int) -> list[str]:
        events = meetings_interleave(seed=seed, meetings=3, attendees=6, start_ms=1_000)
        return [d.body for d in deliveries(events, seed=seed, kind="mixed", duplicates=0.2, poison=0.05)]

    assert run(7) == run(7) and run(7) != run(8)
    events = [parsed(b) for b in run(7) if isinstance(event_parse(b), ChimeEvent)]
    assert {machine.type_name(e.event_type) for e in events} == EXPECTED_TYPES
    assert sum(1 for b in run(7) if isinstance(event_parse(b), Rejection)) > 0  # poison is there


def test_each_meeting_ends_cleanly_when_folded():
    details = list(meetings_interleave(seed=3, meetings=4, attendees=5, start_ms=0, step_ms=10))
    assert [d["timestamp"] for d in details] == [i * 10 for i in range(len(details))]
    by_meeting: dict[str, list] = {}
    for detail in details:
        by_meeting.setdefault(detail["meetingId"], []).append(parsed(as_envelope(detail)))
    assert len(by_meeting) == 4
    for meeting_id, meeting_events in by_meeting.items():
        roster = machine.roster_fold(meeting_id, meeting_events)
        assert roster.meeting.status == "ended" and roster.meeting.transcription == "stopped"
        assert set(roster.meeting.pipelines.values()) == {"deleted"} and not roster.meeting.recording
        assert len(roster.attendees) == 5 and 1 <= roster.peak_joined <= 5
        assert {a.presence for a in roster.attendees.values()} <= {"left", "removed"}
        assert not any(a.video or a.screen_share or a.content_share for a in roster.attendees.values())


def test_forever_keeps_meetings_running():
    details = meetings_interleave(seed=1, meetings=2, attendees=2, start_ms=0, forever=True)
    meetings = {d["meetingId"] for _, d in zip(range(2000), details, strict=False)}
    assert len(meetings) > 10


@pytest.mark.sqs
@pytest.mark.django_db(transaction=True)
def test_simulate_command_through_two_overlapping_queues(sqs, make_queue):
    main, mirror = make_queue(), make_queue()
    out = io.StringIO()
    call_command(
        "simulate", "--queue-url", main, "--sns-queue-url", mirror, "--mirror-share", "0.5",
        "--meetings", "2", "--attendees", "4", "--rate", "5000", "--count", "150",
        "--duplicates", "0.1", "--poison", "0.05", "--shuffle", "--seed", "11",
        "--forever", "--start-ms", "0", stdout=out,
    )  # fmt: skip
    events, bodies = (int(part.split("=")[1]) for part in out.getvalue().split())
    assert events == 150 and bodies > 150
    received = 0
    for queue in (main, mirror):
        while True:
            result = queue_drain_once(client=sqs, queue_url=queue, wait_seconds=1)
            if not result.received:
                break
            received += result.received
    assert received == bodies
    assert queue_depth(sqs, main) == queue_depth(sqs, mirror) == (0, 0)
    assert Event.objects.count() == 150  # every occurrence once, whatever the copies
    assert (
        sum(Event.objects.values_list("duplicate_count", flat=True))
        == bodies - 150 - Quarantine.objects.count()
    )
    assert Quarantine.objects.exists()
    generated = meetings_interleave(seed=11, meetings=2, attendees=4, start_ms=0, step_ms=0.2, forever=True)
    by_meeting: dict[str, list[dict]] = {}
    for detail in itertools.islice(generated, 150):
        by_meeting.setdefault(detail["meetingId"], []).append(detail)
    assert len(by_meeting) > 2  # new meetings started as others ended
    for meeting_id, details in by_meeting.items():
        assert stored(meeting_id) == expected(details)
