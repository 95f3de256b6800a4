"""The Chime event generator's knobs the benchmarks rely on: an exact number of events, a
webinar's join burst over a primary and its replicas, delivery out of order, live traffic."""

from __future__ import annotations

import json

import pytest

from roster.dev.chime import (
    LOSABLE,
    MEETING_CAPACITY,
    accepted,
    arrival_order,
    as_envelope,
    chime_api_mirror,
    deliveries,
    live_traffic,
    meeting_stream,
    webinar_family,
)
from roster.dev.chime_api import ChimeApi
from roster.domain import fold

pytestmark = pytest.mark.once  # no database: the PostgreSQL run is enough (tests/conftest.py)


def folded(details: list[dict]) -> fold.Roster:
    return fold.roster_fold(details[0]["meetingId"], [accepted(as_envelope(d)) for d in details])


def joined(roster: fold.Roster) -> int:
    return sum(1 for a in roster.attendees.values() if a.presence == "joined")


@pytest.mark.parametrize("events", [88, 89, 200, 357])
def test_an_exact_number_of_events_each_once_and_a_meeting_that_ends_cleanly(events):
    details = meeting_stream(seed=events, attendees=20, events=events, tidy=True)
    assert len(details) == events
    keys = [accepted(as_envelope(d)).key for d in details]
    assert len(set(keys)) == events  # no natural key twice: nothing is taken for a duplicate
    roster = folded(details)
    assert roster.meeting.status == "ended" and roster.meeting.transcription == "stopped"
    assert {a.presence for a in roster.attendees.values()} <= {"left", "removed"}
    with pytest.raises(ValueError, match="cannot hold"):
        meeting_stream(seed=1, attendees=20, events=87, tidy=True)


def test_a_webinar_spreads_its_viewers_over_the_primary_and_replicas():
    family = webinar_family(seed=3, viewers=10_000, replicas=40, start_ms=1_700_000_000_000)
    assert len(family) == 41 and len({m[0]["meetingId"] for m in family}) == 41
    assert family[0][0]["externalMeetingId"] == "webinar-3"
    assert family[40][0]["externalMeetingId"] == "webinar-3-replica-40"
    counts = [joined(folded(meeting)) for meeting in family]
    assert sum(counts) == 10_000 and max(counts) <= MEETING_CAPACITY and min(counts) >= max(counts) - 1
    for meeting in family:
        assert [d["eventType"] for d in meeting] == ["chime:MeetingStarted"] + ["chime:AttendeeJoined"] * (
            len(meeting) - 1
        )
    with pytest.raises(ValueError, match="do not fit"):
        webinar_family(seed=3, viewers=10_251, replicas=40)


def test_arrival_order_delivers_every_event_once_some_after_later_ones():
    details = [d for m in webinar_family(seed=5, viewers=800, replicas=3) for d in m]
    arrived = arrival_order(details, seed=5)
    assert sorted(map(id, arrived)) == sorted(map(id, details))
    assert arrived == arrival_order(details, seed=5) != arrival_order(details, seed=6)
    late = sum(1 for a, b in zip(arrived, arrived[1:], strict=False) if b["timestamp"] < a["timestamp"])
    assert late > 0


def test_live_traffic_turns_video_on_only_for_attendees_joined_a_second_before():
    now = [0]
    traffic = live_traffic(
        meetings=[("m-1", "one"), ("m-2", "two")], prefix="p", seed=1, clock=lambda: now[0]
    )
    first = [next(traffic)[0] for _ in range(4)]
    assert first == ["j:p-000000", "j:p-000001", "j:p-000002", "j:p-000003"]  # nobody is due yet
    now[0] = 1_000
    assert [next(traffic)[0] for _ in range(4)] == ["v:p-000000", "j:p-000004", "v:p-000001", "j:p-000005"]
    key, body = next(traffic)
    event = accepted(body)
    assert (
        key == "v:p-000002" and event.event_type == "chime:AttendeeVideoStarted" and event.timestamp == 1_000
    )
    joins_only = live_traffic(meetings=[("m-1", "one")], prefix="f", seed=1, video=False, clock=lambda: 5_000)
    assert [next(joins_only)[0] for _ in range(3)] == ["j:f-000000", "j:f-000001", "j:f-000002"]


def test_lost_deliveries_are_meeting_ends_and_leaves_only_and_the_rest_is_untouched():
    stream = meeting_stream(seed=5, attendees=6)
    kept = [d.body for d in deliveries(stream, seed=5)]
    lost: list[dict] = []
    losing = [d.body for d in deliveries(stream, seed=5, lose=1.0, lost=lost.append)]
    assert lost and {doc["eventType"] for doc in lost} <= set(LOSABLE)
    assert "chime:MeetingEnded" in {doc["eventType"] for doc in lost}
    assert len(losing) == len(kept) - len(lost)
    assert not any(doc["eventType"] in LOSABLE for doc in (json.loads(body)["detail"] for body in losing))
    assert [d.body for d in deliveries(stream, seed=5, lose=0.0)] == kept  # no loss, same draws
    some: list[dict] = []
    list(deliveries(meeting_stream(seed=6, attendees=30), seed=6, lose=0.3, lost=some.append))
    assert 0 < len(some) < 31  # a share, not all


def test_the_api_mirror_shows_what_happened_whatever_was_delivered():
    api = ChimeApi()
    stream = meeting_stream(seed=7, attendees=4, end=False, meeting_id="m-7")
    for doc in stream:
        chime_api_mirror(api, doc)
    people = {  # content shares are not attendees Chime lists (AttendeeContentJoined: not mirrored)
        doc["attendeeId"]
        for doc in stream
        if doc["eventType"] in ("chime:AttendeeAdded", "chime:AttendeeJoined")
    }
    assert people and not any("#" in person for person in people)
    assert api.meeting_ids() == ["m-7"]
    left = {doc["attendeeId"] for doc in stream if doc["eventType"] == "chime:AttendeeLeft"}
    deleted = {doc["attendeeId"] for doc in stream if doc["eventType"] == "chime:AttendeeDeleted"}
    assert set(api.attendee_ids("m-7")) == people - deleted  # a leave does not unlist
    assert left - deleted <= set(api.attendee_ids("m-7"))
    chime_api_mirror(api, {"eventType": "chime:MeetingEnded", "meetingId": "m-7", "timestamp": 1})
    assert api.meeting_ids() == [] and api.attendee_ids("m-7") == []
