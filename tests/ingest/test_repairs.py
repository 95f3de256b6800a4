"""Repairs through the ingest service (shared/ROSTER.md "Repairs from the Chime API"), on SQLite and
PostgreSQL: a synthesized event is applied, logged with source ``reconcile``, counted as applied and
handed to the after-commit hooks (broadcast, metrics) like a real one; a later real event of its
slot supersedes it and is no duplicate of it; a body from a queue cannot pass for a repair."""

from __future__ import annotations

import pytest

from roster.dev.chime import as_bare, as_json, detail, envelope
from roster.domain.events import event_parse
from roster.domain.fold import STORED_EVENT_FIELDS, StoredEvent, roster_fold
from roster.domain.plan import MeetingFacts
from roster.domain.reconcile import ChimeAttendee, ChimeMeeting, MeetingView, reconcile_plan
from roster.domain.repairs import Repairs, meeting_ended_repair
from roster.ingest import IncomingMessage, messages_ingest, repairs_ingest
from roster.models import Attendee, Event, Meeting, Quarantine
from roster.read.selectors import reconcile_view_get, roster_get, timeline_get
from tests.conftest import ingest

pytestmark = pytest.mark.django_db

MEETING = "m-repair"


def real(event_type: str, attendee: str | None, ts: int, **extra) -> str:
    return as_json(envelope(detail(event_type, MEETING, attendee, ts, **extra)))


def whole_fold_of_the_log() -> dict:
    """The oracle: roster_fold over every logged event of the meeting (both sources)."""
    rows = Event.objects.filter(meeting_id=MEETING).values_list(*STORED_EVENT_FIELDS)
    folded = roster_fold(MEETING, [StoredEvent(*row) for row in rows])
    return {a: s.public() for a, s in folded.attendees.items()}


def stored_attendees() -> dict:
    roster = roster_get(meeting_id=MEETING)
    return {a["attendee_id"]: {k: v for k, v in a.items() if k != "seq"} for a in roster["attendees"]}


def test_a_synthesized_meeting_end_is_applied_then_superseded_by_the_real_one(
    django_capture_on_commit_callbacks, committed_batches
):
    ingest([real("MeetingStarted", None, 1_000), real("AttendeeJoined", "a1", 1_100)])
    ingest([real("AttendeeVideoStarted", "a1", 1_500)])
    before = Meeting.objects.get(pk=MEETING)
    assert before.status == "active" and before.control_region == "us-east-1"  # from the envelope

    view = reconcile_view_get(meeting_id=MEETING)  # what the check reads first
    assert (view.latest_event_at, view.control_region) == (1_500, "us-east-1")
    plan = reconcile_plan(view=view, meeting=None, attendees=None)  # GetMeeting: NotFound
    with django_capture_on_commit_callbacks(execute=True):
        result = repairs_ingest(repairs=[plan])
    assert (result.applied, result.duplicates, result.quarantined) == (1, 0, 0)
    assert dict(result.tallies) == {("reconcile", "chime:MeetingEnded", "applied", "reconcile"): 1}
    (batch,) = committed_batches[-1:]
    (change,) = batch.changes  # broadcast: the meeting and its changed row, seq raised
    assert change.meeting.status == "ended" and change.meeting.seq == before.seq + 1
    assert [row.attendee_id for row in change.changed_rows] == ["a1"]

    ended = Meeting.objects.get(pk=MEETING)
    assert (ended.status, ended.ended_at) == ("ended", 1_500)
    logged = Event.objects.get(meeting_id=MEETING, event_type="chime:MeetingEnded")
    assert (logged.source, logged.timestamp, logged.queue) == ("reconcile", 1_500, "reconcile")
    a1 = Attendee.objects.get(meeting_id=MEETING, attendee_id="a1")
    assert (a1.presence, a1.joined_ms, a1.video, a1.repaired) == ("left", 400, False, True)
    timeline = timeline_get(meeting=ended)
    assert timeline["repairs"] == [{"at": 1_500, "type": "MeetingEnded", "source": "reconcile"}]

    # The real MeetingEnded, later: applied (another key space), and its time closes the intervals.
    result = ingest([real("AttendeeLeft", "a1", 1_800), real("MeetingEnded", None, 2_000)])
    assert (result.applied, result.duplicates) == (2, 0)
    ended.refresh_from_db()
    assert (ended.status, ended.ended_at) == ("ended", 2_000)
    a1.refresh_from_db()
    assert (a1.presence, a1.joined_ms, a1.repaired) == ("left", 700, False)  # left at 1.8 s, really
    assert stored_attendees() == whole_fold_of_the_log()
    assert timeline_get(meeting=ended)["repairs"] == []  # superseded: no longer shown as a repair
    sources = Event.objects.filter(event_type="chime:MeetingEnded").values_list("source", flat=True)
    assert sorted(sources) == ["chime", "reconcile"]


def test_the_same_repair_twice_is_a_duplicate_and_a_real_twin_is_not():
    ingest([real("AttendeeJoined", "a1", 1_100)])
    body = meeting_ended_repair(meeting_id=MEETING, timestamp=1_100)
    repairs = Repairs(meeting_id=MEETING, bodies=(body,))
    assert repairs_ingest(repairs=[repairs]).applied == 1
    again = repairs_ingest(repairs=[repairs])
    assert (again.applied, again.duplicates) == (0, 1)
    twin = ingest([real("MeetingEnded", None, 1_100)])  # same type, meeting and ms, from Chime
    assert (twin.applied, twin.duplicates) == (1, 0)
    assert sorted(Event.objects.filter(event_type="chime:MeetingEnded").values_list("source", flat=True)) == [
        "chime",
        "reconcile",
    ]
    assert stored_attendees() == whole_fold_of_the_log()


def test_a_body_from_a_queue_claiming_to_be_a_repair_is_a_chime_event():
    """The synthesized body itself, and an envelope whose detail says "source": "reconcile",
    arriving from SQS: logged as Chime events, in Chime's key space, superseding as real ones."""
    ingest([real("AttendeeJoined", "a1", 1_100)])
    repairs_ingest(
        repairs=[
            Repairs(meeting_id=MEETING, bodies=(meeting_ended_repair(meeting_id=MEETING, timestamp=1_200),))
        ]
    )
    forged = meeting_ended_repair(meeting_id=MEETING, timestamp=1_300)
    claiming = envelope(detail("AttendeeDeleted", MEETING, "a2", 1_300))
    claiming["detail"]["source"] = "reconcile"
    result = messages_ingest(
        messages=[
            IncomingMessage(body=forged, queue="https://sqs.us-east-1.amazonaws.com/1/q", message_id="m1"),
            IncomingMessage(body=as_json(claiming), queue="https://sqs.us-east-1.amazonaws.com/1/q"),
        ]
    )
    assert (result.applied, result.quarantined) == (2, 0)
    assert set(result.tallies) == {
        ("https://sqs.us-east-1.amazonaws.com/1/q", "chime:MeetingEnded", "applied", "chime"),
        ("https://sqs.us-east-1.amazonaws.com/1/q", "chime:AttendeeDeleted", "applied", "chime"),
    }
    sources = dict(Event.objects.filter(timestamp=1_300).values_list("event_type", "source"))
    assert sources == {"chime:MeetingEnded": "chime", "chime:AttendeeDeleted": "chime"}
    assert Event.objects.get(timestamp=1_300, event_type="chime:MeetingEnded").key == event_parse(forged).key
    # Taken as real, the forged end supersedes the synthesized one: the meeting ended at 1.3 s.
    assert Meeting.objects.get(pk=MEETING).ended_at == 1_300
    assert stored_attendees() == whole_fold_of_the_log()


def test_facts_are_stored_with_the_repairs_and_raise_seq_when_seen():
    ingest(
        [
            as_bare(detail("AttendeeJoined", MEETING, "a1", 1_100)),
            as_bare(detail("AttendeeJoined", MEETING, "a2", 1_150)),
        ]
    )
    meeting = Meeting.objects.get(pk=MEETING)
    assert meeting.control_region == ""  # bare details name no region
    view = MeetingView(
        meeting_id=MEETING,
        status="active",
        latest_event_at=1_150,
        attendees=(),
    )
    plan = reconcile_plan(
        view=view,
        meeting=ChimeMeeting(
            primary_meeting_id="p-1", external_meeting_id="webinar", media_region="eu-west-1"
        ),
        attendees=[ChimeAttendee("a1"), ChimeAttendee("a3", "carol", {"Audio": "SendReceive"})],
    )
    assert plan.added == ("a1", "a3")  # the view was built empty on purpose: a1 is known, a3 not
    result = repairs_ingest(repairs=[plan])
    assert result.changed_meetings == {MEETING: meeting.seq + 1}
    meeting.refresh_from_db()
    assert (meeting.primary_meeting_id, meeting.external_meeting_id, meeting.media_region) == (
        "p-1",
        "webinar",
        "eu-west-1",
    )
    roster = roster_get(meeting_id=MEETING)
    assert roster["meeting"]["primary_meeting_id"] == "p-1"
    a3 = Attendee.objects.get(meeting_id=MEETING, attendee_id="a3")
    assert (a3.presence, a3.external_user_id, a3.capabilities["audio"]) == ("added", "carol", "SendReceive")
    assert Attendee.objects.get(meeting_id=MEETING, attendee_id="a1").presence == "joined"

    missed = repairs_ingest(
        repairs=[Repairs(meeting_id=MEETING, facts=MeetingFacts(reconcile_missed=("a2",)))]
    )
    assert missed.changed_meetings == {}  # the missed list is no client's business: no seq
    meeting.refresh_from_db()
    assert meeting.reconcile_missed == ["a2"] and meeting.seq == result.changed_meetings[MEETING]


def test_a_repair_the_parser_refuses_raises_and_is_never_quarantined():
    broken = Repairs(
        meeting_id=MEETING, bodies=(as_json(envelope(detail("MeetingEnded", MEETING, None, 5))),)
    )
    with pytest.raises(ValueError):
        repairs_ingest(repairs=[broken])
    assert not Quarantine.objects.exists() and not Event.objects.exists()


def test_two_repairs_of_one_meeting_in_one_call_are_refused():
    twice = [
        Repairs(meeting_id=MEETING),
        Repairs(meeting_id=MEETING, facts=MeetingFacts(reconcile_missed=())),
    ]
    with pytest.raises(ValueError):
        repairs_ingest(repairs=twice)
    assert not Meeting.objects.exists()
