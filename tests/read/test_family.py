"""Families on the read side: a scope that allows a primary allows its replicas (Access.allows and
the same rule in SQL), the family figures computed on read, the meeting list folded, REST."""

from __future__ import annotations

import json

import pytest

from roster.domain.plan import MeetingFacts
from roster.domain.repairs import Repairs
from roster.ingest import IncomingMessage, messages_ingest, repairs_ingest
from roster.models import Meeting
from roster.read.access import Access, feed_token_create
from roster.read.selectors import (
    MeetingFilter,
    family_get,
    meeting_visible,
    meetings_page,
    meetings_scope_ids,
    meetings_visible,
)

pytestmark = pytest.mark.django_db

T = 1_700_000_000_000
EVERYTHING = Access(everything=True)


def ingest(*details: dict) -> None:
    messages_ingest(messages=[IncomingMessage(body=json.dumps(d)) for d in details])


def event(meeting_id: str, event_type: str, ts: int, attendee_id: str = "", external: str = "") -> dict:
    detail = {"meetingId": meeting_id, "eventType": f"chime:{event_type}", "timestamp": ts}
    if external:
        detail["externalMeetingId"] = external
    return {**detail, "attendeeId": attendee_id} if attendee_id else detail


def family_make() -> None:
    """Primary 'p' (webinar-1): two joined, then left; replicas r1 (overflow-1), r2 (overflow-2):
    one joined each after they left. Learned as replicas through reconcile's facts."""
    ingest(
        event("p", "MeetingStarted", T, external="webinar-1"),
        event("p", "AttendeeJoined", T + 1, "a1"),
        event("p", "AttendeeJoined", T + 2, "a2"),
        event("p", "AttendeeLeft", T + 10, "a1"),
        event("p", "AttendeeLeft", T + 10, "a2"),
        event("r1", "MeetingStarted", T, external="overflow-1"),
        event("r1", "AttendeeJoined", T + 11, "b1"),
        event("r2", "MeetingStarted", T, external="overflow-2"),
        event("r2", "AttendeeJoined", T + 12, "c1"),
        event("solo", "MeetingStarted", T + 5, external="webinar-solo"),
    )
    repairs_ingest(
        repairs=[Repairs(meeting_id=r, facts=MeetingFacts(primary_meeting_id="p")) for r in ("r1", "r2")]
    )


def ids(meetings) -> list[str]:
    return sorted(m.meeting_id for m in meetings)


def test_access_allows_a_replica_through_its_primarys_ids():
    access = Access(globs=("webinar-*",))
    assert access.allows(meeting_id="p", external_meeting_id="webinar-1")
    assert not access.allows(meeting_id="r1", external_meeting_id="overflow-1")
    assert access.allows(
        meeting_id="r1",
        external_meeting_id="overflow-1",
        primary_meeting_id="p",
        primary_external_meeting_id="webinar-1",
    )
    assert Access(globs=("p",)).allows(meeting_id="r1", primary_meeting_id="p")
    assert not access.allows(meeting_id="r1", primary_meeting_id="q", primary_external_meeting_id="board")


@pytest.mark.parametrize(
    ("globs", "visible"),
    [
        (("webinar-*",), ["p", "r1", "r2", "solo"]),  # by the primary's external id
        (("p",), ["p", "r1", "r2"]),  # by the primary's meeting id
        (("overflow-1",), ["r1"]),  # a replica matching on its own; not its primary nor sibling
        (("board",), []),  # replicas of a primary out of scope stay invisible
    ],
)
def test_the_scope_of_a_primary_covers_its_replicas_in_sql_and_in_python(globs, visible):
    family_make()
    access = Access(globs=globs)
    assert ids(meetings_visible(access=access)) == visible
    assert [m for m in ("p", "r1", "r2", "solo") if meeting_visible(access=access, meeting_id=m)] == visible
    scopes = meetings_scope_ids(meeting_ids=["p", "r1", "r2", "solo"])
    assert scopes["r1"] == {
        "external_meeting_id": "overflow-1",
        "primary_meeting_id": "p",
        "primary_external_meeting_id": "webinar-1",
    }
    # A plain meeting's as a broadcaster message says it (the socket remembers it per process).
    assert scopes["solo"] == {"external_meeting_id": "webinar-solo"}
    assert [m for m, scope in sorted(scopes.items()) if access.allows(meeting_id=m, **scope)] == visible


def test_family_figures_are_computed_on_read():
    family_make()
    figures = family_get(primary_meeting_id="p", access=Access(globs=("webinar-*",)))
    # Two in the primary, later one in each replica: never more than two at once, though the
    # members' own peaks sum to four.
    assert (figures.family_joined, figures.family_peak_joined) == (2, 2)
    assert [(r.meeting_id, r.joined) for r in figures.replicas] == [("r1", 1), ("r2", 1)]
    primary = Meeting.objects.get(meeting_id="p")
    assert (primary.joined_count, primary.peak_joined) == (0, 2)  # nothing stored in the primary
    assert family_get(primary_meeting_id="p", access=Access(globs=("overflow-*",))) is None
    ingest(event("r1", "AttendeeJoined", T + 13, "b2"), event("r2", "AttendeeJoined", T + 13, "c2"))
    later = family_get(primary_meeting_id="p", access=EVERYTHING)
    assert (later.family_joined, later.family_peak_joined) == (4, 4) and later.version > figures.version


def test_the_list_folds_replicas_under_a_visible_primary_except_in_a_search():
    family_make()
    page = meetings_page(access=EVERYTHING, where=MeetingFilter())
    assert ids(page.meetings) == ["p", "solo"]
    assert page.families["p"].as_dict() == {
        "primary_meeting_id": "p",
        "family_joined": 2,
        "family_peak_joined": 2,
        "replicas": 2,
        "members": [
            {"meeting_id": "r1", "external_meeting_id": "overflow-1", "joined": 1},
            {"meeting_id": "r2", "external_meeting_id": "overflow-2", "joined": 1},
        ],
    }
    assert "solo" not in page.families
    searched = meetings_page(access=EVERYTHING, where=MeetingFilter(q="overflow"))
    assert ids(searched.meetings) == ["r1", "r2"]
    own = meetings_page(access=Access(globs=("overflow-1",)), where=MeetingFilter())
    assert ids(own.meetings) == ["r1"]  # its primary out of scope: a row of its own


def test_rest_shows_the_family_of_a_primary_and_the_primary_of_a_replica(client):
    family_make()
    _, raw = feed_token_create(name="webinars", meetings="webinar-*")
    headers = {"HTTP_AUTHORIZATION": f"Bearer {raw}"}
    primary = client.get("/api/meetings/p/roster", **headers).json()
    assert primary["family"]["family_joined"] == 2 and primary["family"]["replicas"] == 2
    replica = client.get("/api/meetings/r1/roster", **headers).json()
    assert replica["meeting"]["primary_meeting_id"] == "p" and "family" not in replica
    assert "family" not in client.get("/api/meetings/solo/roster", **headers).json()
    listed = client.get("/api/meetings/", **headers).json()
    assert [m["meeting_id"] for m in listed["meetings"]] == ["solo", "p"]
    assert listed["families"]["p"]["family_peak_joined"] == 2
    _, other = feed_token_create(name="board", meetings="board")
    assert client.get("/api/meetings/r1/roster", HTTP_AUTHORIZATION=f"Bearer {other}").status_code == 404
