"""The simulator (roster.dev.chime's generator, sent by `manage.py simulate`): deterministic,
realistic (every kind of event the product handles), and what it sends through two overlapping
queues drains to the roster the whole fold gives."""

from __future__ import annotations

import io
import itertools
import time

import pytest
from django.core.management import call_command

from roster.dev.chime import as_envelope, deliveries, happened_at, meetings_interleave
from roster.dev.chime_api import ChimeApiServer
from roster.domain import fold as machine
from roster.domain.events import KIND_VOICE_CONNECTOR, ChimeEvent, Rejection, event_parse
from roster.domain.timeline import timeline_build
from roster.models import Event, Meeting, Quarantine, VoiceConnectorStream
from roster.sources.reconcile import meetings_reconcile
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


def test_minutes_long_meetings_and_calls_come_in_time_order_each_event_once():
    minutes = 5
    details = list(
        meetings_interleave(
            seed=4, meetings=3, attendees=10, start_ms=0, calls=2, meeting_ms=minutes * 60_000
        )
    )
    times = [happened_at(d) for d in details]
    assert times == sorted(times)
    events = [parsed(as_envelope(d)) for d in details]
    assert len({e.key for e in events}) == len(events)  # no occurrence made twice by the clock
    by_meeting: dict[str, list] = {}
    for event in events:
        if event.kind != KIND_VOICE_CONNECTOR:
            by_meeting.setdefault(event.meeting_id, []).append(event)
    assert len(by_meeting) == 3
    for meeting_id, meeting_events in by_meeting.items():
        roster = machine.roster_fold(meeting_id, meeting_events)
        assert (
            0.6 * minutes * 60_000
            <= roster.meeting.ended_at - roster.meeting.started_at
            <= 1.4 * minutes * 60_000
        )
        lanes = timeline_build(meeting_id, meeting_events)["lanes"]
        shares = sorted(
            (s["start"], s["end"]) for lane in lanes for s in lane["segments"] if s["kind"] == "sharing"
        )
        assert all(
            end <= start for (_, end), (start, _) in zip(shares, shares[1:], strict=False)
        )  # one at a time
        video = [s["end"] - s["start"] for lane in lanes for s in lane["segments"] if s["kind"] == "video"]
        assert max(video) > 60_000  # a camera stays on for a while
    calls: dict[str, list[str]] = {}
    for event in events:
        if event.kind == KIND_VOICE_CONNECTOR:
            calls.setdefault(event.detail["transactionId"], []).append(event.event_type)
    assert len(calls) == 2
    for statuses in calls.values():
        assert statuses[0] == "STARTED" and statuses[-1] in ("ENDED", "FAILED") and len(statuses) <= 3


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


@pytest.mark.sqs
@pytest.mark.django_db(transaction=True)
def test_simulate_sends_meeting_minutes_as_they_happen_and_streams_calls(sqs, make_queue):
    queue = make_queue()
    out = io.StringIO()
    started = time.monotonic()
    call_command(
        "simulate", "--queue-url", queue, "--meetings", "1", "--attendees", "3", "--calls", "2",
        "--meeting-minutes", "0.05", "--rate", "5000", "--seed", "5", "--start-ms", "0", stdout=out,
    )  # fmt: skip
    took = time.monotonic() - started
    events = int(out.getvalue().split()[0].split("=")[1])
    generated = list(
        meetings_interleave(seed=5, meetings=1, attendees=3, start_ms=0, calls=2, meeting_ms=3_000)
    )
    assert events == len(generated)
    assert took >= happened_at(generated[-1]) / 1000 - 0.2  # sent as they happened, not at 5000/s
    while queue_drain_once(client=sqs, queue_url=queue, wait_seconds=1).received:
        pass
    assert Event.objects.count() == events and not Quarantine.objects.exists()
    assert VoiceConnectorStream.objects.count() == 2
    assert set(VoiceConnectorStream.objects.values_list("status", flat=True)) <= {"ENDED", "FAILED"}
    meeting_id = generated[0]["meetingId"]
    assert stored(meeting_id) == expected([d for d in generated if d.get("meetingId") == meeting_id])


@pytest.mark.sqs
@pytest.mark.django_db(transaction=True)
def test_simulate_can_lose_meeting_ends_and_leaves_on_the_way(sqs, make_queue, monkeypatch, settings):
    queue = make_queue()
    out = io.StringIO()
    with ChimeApiServer() as chime:  # the simulator mirrors what happened into it, over HTTP
        call_command(
            "simulate", "--queue-url", queue, "--meetings", "1", "--attendees", "4", "--rate", "5000",
            "--count", "60", "--lose", "1", "--seed", "3", "--start-ms", "0",
            "--chime-api-url", chime.url, stdout=out,
        )  # fmt: skip
        counts = {name: int(n) for name, n in (part.split("=") for part in out.getvalue().split())}
        assert counts["lost"] > 0 and counts["bodies"] == counts["events"] - counts["lost"]
        while queue_drain_once(client=sqs, queue_url=queue, wait_seconds=1).received:
            pass
        assert Event.objects.count() == counts["events"] - counts["lost"]
        assert not Event.objects.filter(event_type__in=["MeetingEnded", "AttendeeLeft"]).exists()
        live = list(Meeting.objects.filter(status="active").values_list("meeting_id", flat=True))
        assert live  # what a lost end leaves behind; Chime's API knows better
        assert chime.api.calls == {} and not set(live) & set(chime.api.meeting_ids())
        # ... and reconcile, asking it, repairs the roster (the demo's path)
        monkeypatch.setenv("AWS_ENDPOINT_URL_CHIME_SDK_MEETINGS", chime.url)
        settings.RECONCILE_CALLS_PER_SECOND = 200.0
        assert meetings_reconcile().ended == len(live)
    assert not Meeting.objects.filter(status="active").exists()
