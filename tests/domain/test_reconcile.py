"""The reconcile planner (roster.domain.reconcile) against shared/ROSTER.md's rules: examples per
rule, and hypothesis properties over any roster, any ListAttendees answer and two checks in a row."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roster.dev.chime import chime_event
from roster.domain.fold import roster_fold, type_name
from roster.domain.reconcile import (
    AttendeeView,
    ChimeAttendee,
    ChimeMeeting,
    MeetingView,
    chime_attendees_from_api,
    chime_meeting_from_api,
    reconcile_plan,
)
from roster.domain.repairs import Repairs, repair_event

pytestmark = pytest.mark.once  # no database: the PostgreSQL run is enough (tests/conftest.py)

MEETING = "m-rc"
PEOPLE = ["a1", "a2", "a3", "a4", "a5", "a6"]
PRESENCES = [None, "added", "authorized", "joined", "dropped", "left", "removed"]
FOUND = ChimeMeeting(primary_meeting_id=None, external_meeting_id="standup", media_region="eu-west-1")


def view(**kwargs) -> MeetingView:
    return MeetingView(
        **{
            "meeting_id": MEETING,
            "status": "active",
            "latest_event_at": 900,
            "control_region": "us-east-1",
            **kwargs,
        }
    )


def events_of(repairs: Repairs) -> list[tuple[str, str, int]]:
    return [(type_name(e.event_type), e.attendee_id, e.timestamp) for e in map(repair_event, repairs.bodies)]


# --- examples, one per rule ---------------------------------------------------------------------


def test_not_found_ends_the_meeting_at_its_latest_known_event():
    plan = reconcile_plan(view=view(missed=frozenset({"a1"})), meeting=None, attendees=None)
    assert events_of(plan) == [("MeetingEnded", "", 900)]
    assert plan.ended and plan.facts.reconcile_missed == ()


def test_not_found_where_the_region_is_a_guess_changes_nothing():
    """A meeting seen through bare details only was asked in CHIME_CONTROL_REGION: never ended."""
    plan = reconcile_plan(
        view=view(control_region="", missed=frozenset({"a1"})), meeting=None, attendees=None
    )
    assert plan.bodies == () and not plan.ended and plan.facts.reconcile_missed is None
    found = reconcile_plan(
        view=view(control_region="", attendees=[AttendeeView("a1", "joined")], missed=frozenset({"a1"})),
        meeting=FOUND,
        attendees=[],
    )
    assert found.removed == ("a1",)  # found there: the region was right, the check counts


def test_not_found_without_a_known_event_or_once_ended_synthesizes_nothing():
    assert reconcile_plan(view=view(latest_event_at=None), meeting=None, attendees=None).bodies == ()
    assert reconcile_plan(view=view(status="ended"), meeting=None, attendees=None).bodies == ()


def test_get_meeting_sets_the_primary_and_fills_blanks_only():
    answer = ChimeMeeting(primary_meeting_id="p-1", external_meeting_id="api-name", media_region="us-east-1")
    plan = reconcile_plan(view=view(external_meeting_id="ours"), meeting=answer, attendees=[])
    assert plan.facts.primary_meeting_id == "p-1" and plan.primary_learned
    assert (plan.facts.external_meeting_id, plan.facts.media_region) == ("", "us-east-1")
    again = reconcile_plan(view=view(primary_meeting_id="p-1"), meeting=answer, attendees=[])
    assert not again.primary_learned and again.facts.primary_meeting_id == "p-1"


def test_an_attendee_missing_twice_in_a_row_is_deleted():
    rows = [AttendeeView("a1", "joined"), AttendeeView("a2", "left"), AttendeeView("a3", "removed")]
    listed = [ChimeAttendee("a9")]
    first = reconcile_plan(view=view(attendees=rows), meeting=FOUND, attendees=listed)
    assert first.added == ("a9",) and not first.removed
    assert set(first.facts.reconcile_missed) == {"a1", "a2"}  # removed is final: not a candidate
    second = reconcile_plan(
        view=view(attendees=rows, missed=frozenset(first.facts.reconcile_missed)),
        meeting=FOUND,
        attendees=[ChimeAttendee("a1"), ChimeAttendee("a9")],
    )
    assert second.removed == ("a2",) and second.facts.reconcile_missed == ()
    assert ("AttendeeDeleted", "a2", 900) in events_of(second)
    assert all(kind != "AttendeeDeleted" or who == "a2" for kind, who, _ in events_of(second))


def test_a_listed_attendee_the_roster_lacks_is_added_with_its_user_and_capabilities():
    listed = chime_attendees_from_api(
        pages=[
            {"Attendees": [{"AttendeeId": "a1", "ExternalUserId": "ann"}], "NextToken": "t"},
            {
                "Attendees": [
                    {
                        "AttendeeId": "a2",
                        "ExternalUserId": "bob",
                        "Capabilities": {"Audio": "SendReceive", "Video": "None", "Content": "Receive"},
                    },
                    {"AttendeeId": "a2#content"},
                ]
            },
        ]
    )
    plan = reconcile_plan(
        view=view(attendees=[AttendeeView("a1", "joined")]), meeting=FOUND, attendees=listed
    )
    assert plan.added == ("a2",)
    assert events_of(plan) == [("AttendeeAdded", "a2", 900), ("AttendeeCapabilitiesUpdated", "a2", 900)]
    roster = roster_fold(
        MEETING, [chime_event("AttendeeJoined", MEETING, "a1", 900)] + list(map(repair_event, plan.bodies))
    )
    assert roster.attendees["a2"].external_user_id == "bob"
    assert roster.attendees["a2"].capabilities == {
        "audio": "SendReceive",
        "video": "None",
        "content": "Receive",
    }


def test_an_unanswered_list_keeps_the_missed_list():
    plan = reconcile_plan(view=view(missed=frozenset({"a1"})), meeting=FOUND, attendees=None)
    assert plan.bodies == () and plan.facts.reconcile_missed is None


def test_api_answers_are_read_from_boto3_shapes():
    answer = chime_meeting_from_api(
        response={"Meeting": {"MeetingId": MEETING, "PrimaryMeetingId": "p", "MediaRegion": "us-west-2"}}
    )
    assert answer == ChimeMeeting(primary_meeting_id="p", external_meeting_id=None, media_region="us-west-2")


# --- properties -----------------------------------------------------------------------------------

ROWS = st.dictionaries(st.sampled_from(PEOPLE), st.sampled_from(PRESENCES), max_size=len(PEOPLE))
LISTED = st.lists(st.sampled_from([*PEOPLE, "a7", "a8", "a1#content"]), unique=True)
MISSED = st.frozensets(st.sampled_from(PEOPLE))
LATEST = st.one_of(st.none(), st.integers(min_value=0, max_value=10**13))


@settings(max_examples=300, deadline=None)
@given(ROWS, LISTED, MISSED, LATEST, st.sampled_from(["active", "unknown", "ended"]))
def test_the_plan_follows_the_rules(rows, listed, missed, latest, status):
    attendees = [AttendeeView(a, presence) for a, presence in rows.items()]
    answer = [ChimeAttendee(a, external_user_id=f"user-{a}", capabilities={"Audio": "Send"}) for a in listed]
    plan = reconcile_plan(
        view=view(attendees=attendees, missed=missed, latest_event_at=latest, status=status),
        meeting=FOUND,
        attendees=answer,
    )
    events = events_of(plan)
    timed = latest is not None and status != "ended"
    assert all(ts == latest for _, _, ts in events)  # at the latest known event, never later
    assert (not timed) <= (events == [])
    candidates = {a for a, presence in rows.items() if presence != "removed"}
    absent = candidates - set(listed)
    if timed:
        assert set(plan.removed) == absent & missed  # two checks in a row, and only those
        assert set(plan.added) == {a for a in listed if "#" not in a} - set(rows)
        assert set(plan.facts.reconcile_missed) == absent - missed
    assert {who for kind, who, _ in events if kind == "AttendeeDeleted"} == set(plan.removed)
    assert [who for kind, who, _ in events if kind == "AttendeeAdded"] == list(plan.added)
    assert [who for kind, who, _ in events if kind == "AttendeeCapabilitiesUpdated"] == list(plan.added)
    assert not set(plan.removed) & set(listed)  # a listed attendee is never removed
    assert "MeetingEnded" not in {kind for kind, _, _ in events}


@settings(max_examples=200, deadline=None)
@given(ROWS, LISTED, LISTED)
def test_an_attendee_is_removed_exactly_when_two_checks_in_a_row_miss_it(rows, first_list, second_list):
    attendees = [AttendeeView(a, presence) for a, presence in rows.items()]
    first = reconcile_plan(
        view=view(attendees=attendees), meeting=FOUND, attendees=[ChimeAttendee(a) for a in first_list]
    )
    assert first.removed == ()  # nothing was missed before the first check
    second = reconcile_plan(
        view=view(attendees=attendees, missed=frozenset(first.facts.reconcile_missed)),
        meeting=FOUND,
        attendees=[ChimeAttendee(a) for a in second_list],
    )
    expected = {a for a, p in rows.items() if p != "removed" and a not in first_list and a not in second_list}
    assert set(second.removed) == expected
