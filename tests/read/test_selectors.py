"""Selectors: what the read side loads (the shown columns, one query a list) and the figures it
derives on read (time in meeting so far, the timeline's end, the queues a check covers)."""

from __future__ import annotations

import json
import math

import pytest
from django.contrib.auth.models import AnonymousUser
from django.db import connection
from django.test.utils import CaptureQueriesContext

from roster.domain.globs import glob_regex
from roster.ingest import IncomingMessage, messages_ingest
from roster.models import Attendee, Meeting, MeetingUser, QueueSource
from roster.read.access import Access, access_for_session
from roster.read.host_links import SESSION_KEY as HOST_LINK_SESSION
from roster.read.host_links import host_link_create
from roster.read.selectors import (
    MEETING_SORTS,
    PAGE_MAX,
    MeetingFilter,
    _people_matching,
    attendance_get,
    meeting_visible,
    meetings_page,
    meetings_visible,
    queue_urls_configured,
    reconcile_view_get,
    roster_read,
    timeline_get,
)
from roster.read.serializers import MEETING_FIELDS, meeting_as_dict

pytestmark = pytest.mark.django_db

EVERYTHING = Access(everything=True)


def ingest(*details: dict) -> None:
    messages_ingest(messages=[IncomingMessage(body=json.dumps(d)) for d in details])


def event(meeting_id: str, event_type: str, timestamp: int, attendee_id: str = "") -> dict:
    detail = {"meetingId": meeting_id, "eventType": f"chime:{event_type}", "timestamp": timestamp}
    return {**detail, "attendeeId": attendee_id} if attendee_id else detail


def test_meetings_are_read_with_the_shown_columns_only(django_assert_num_queries):
    for n in range(3):
        ingest(event(f"m-{n}", "MeetingStarted", 1000 + n))
    meeting = meeting_visible(access=EVERYTHING, meeting_id="m-0")
    loaded = {f.attname for f in Meeting._meta.concrete_fields} - meeting.get_deferred_fields()
    assert loaded == set(MEETING_FIELDS)  # never the fold's bookkeeping
    with django_assert_num_queries(1):  # serialising reads no deferred column
        assert [meeting_as_dict(m)["meeting_id"] for m in meetings_visible(access=EVERYTHING)] == [
            "m-2",
            "m-1",
            "m-0",
        ]
    with django_assert_num_queries(2):  # the meeting again, then its attendees
        roster_read(meeting=meeting)


def test_attendance_is_one_query_and_counts_an_open_join_up_to_now(django_assert_num_queries):
    ingest(
        event("m-a", "AttendeeJoined", 1_000, "b"),
        event("m-a", "AttendeeLeft", 4_000, "b"),
        event("m-a", "AttendeeJoined", 2_000, "a"),
    )
    meeting = meeting_visible(access=EVERYTHING, meeting_id="m-a")
    with django_assert_num_queries(1):
        people = attendance_get(meeting=meeting, now_ms=10_000).people
    assert [(p.attendee_id, p.total_ms, p.last_leave, p.presence) for p in people] == [
        ("a", 8_000, None, "joined"),
        ("b", 3_000, 4_000, "left"),
    ]


def test_timeline_ends_when_the_meeting_ended():
    ingest(event("m-t", "MeetingStarted", 1_000), event("m-t", "AttendeeJoined", 1_500, "a"))
    assert timeline_get(meeting=meeting_visible(access=EVERYTHING, meeting_id="m-t"))["end"] is None
    ingest(event("m-t", "MeetingEnded", 9_000))
    timeline = timeline_get(meeting=meeting_visible(access=EVERYTHING, meeting_id="m-t"))
    assert timeline["end"] == 9_000
    assert timeline["lanes"][0]["segments"] == [{"kind": "present", "start": 1_500, "end": 9_000}]


def test_configured_queues_settings_first_then_enabled_rows(settings):
    settings.SQS_QUEUE_URLS = ["http://q/settings", "http://q/switched-off"]
    QueueSource.objects.create(url="http://q/row")
    QueueSource.objects.create(url="http://q/switched-off", enabled=False)
    QueueSource.objects.create(url="http://q/settings")
    QueueSource.objects.create(url="http://q/off", enabled=False)
    assert queue_urls_configured() == (
        ["http://q/settings", "http://q/row"],
        ["http://q/switched-off", "http://q/off"],
    )


# --- the meeting list: search, filters, sorts, keyset pages, scope (issue #13) --------------------

NO_START = None


def meetings_make(
    *rows: tuple[str, str, str, int | None], attendees: dict[str, list[str | None]] | None = None
):
    """Meetings (meeting_id, external_meeting_id, status, started_at) and, per meeting id, the
    externalUserIds of its attendees; written directly (the list reads rows, whatever wrote them)."""
    Meeting.objects.bulk_create(
        Meeting(meeting_id=mid, external_meeting_id=ext, status=status, started_at=started)
        for mid, ext, status, started in rows
    )
    Attendee.objects.bulk_create(
        Attendee(meeting_id=mid, attendee_id=f"{mid}-a{i}", external_user_id=user)
        for mid, users in (attendees or {}).items()
        for i, user in enumerate(users)
    )


def page_ids(access: Access = EVERYTHING, limit: int = PAGE_MAX, **where) -> list[str]:
    return [
        m.meeting_id for m in meetings_page(access=access, where=MeetingFilter(**where), limit=limit).meetings
    ]


def test_q_is_a_case_insensitive_substring_of_the_external_meeting_id():
    meetings_make(
        ("m1", "Sales-EMEA-weekly", "ended", 1), ("m2", "board", "ended", 2), ("m3", "", "ended", 3)
    )
    assert page_ids(q="emea") == ["m1"]
    assert page_ids(q="SALES-emea-WEEKLY") == ["m1"]
    assert page_ids(q="oar") == ["m2"]
    assert page_ids(q="nothing-like-it") == []


def test_q_is_an_exact_meeting_id_never_a_part_of_one():
    meetings_make(("mtg-4f2a9c", "standup", "ended", 1), ("mtg-77", "retro", "ended", 2))
    assert page_ids(q="mtg-4f2a9c") == ["mtg-4f2a9c"]
    assert page_ids(q="mtg-4f2a") == []  # a meetingId matches whole
    assert page_ids(q="MTG-4F2A9C") == []  # and exactly


@pytest.mark.parametrize("q", ["ann.lee", "ANN.LEE@ACME", "NN", "n", "@", "é"])
def test_q_finds_a_meeting_by_an_attendees_external_user_id(q):
    """Long and short searches (under 3 characters they are written without LIKE, see
    selectors._attendees_matching) find the same meetings."""
    meetings_make(
        ("m1", "x1", "ended", 1),
        ("m2", "x2", "ended", 2),
        ("m3", "x3", "ended", 3),
        attendees={"m1": ["Ann.Lee@acme.example", None], "m2": ["bob@globex.example", "rené"], "m3": [None]},
    )
    expected = {"ann.lee": ["m1"], "ANN.LEE@ACME": ["m1"], "NN": ["m1"], "n": ["m2", "m1"], "@": ["m2", "m1"]}
    expected["é"] = ["m2"]
    assert page_ids(q=q) == expected[q]


@pytest.mark.parametrize("q", ["_", "%", "a_c", "a%c", "\\", "c \\"])
def test_q_wildcards_and_backslashes_are_plain_characters(q):
    meetings_make(
        ("m-lit", "x", "ended", 2),
        ("m-other", "y", "ended", 1),
        attendees={"m-lit": ["a_c a%c \\"], "m-other": ["abc axc"]},
    )
    assert page_ids(q=q) == ["m-lit"]


def test_q_matches_a_meeting_once_however_many_attendees_match():
    meetings_make(("m1", "sync", "ended", 1), attendees={"m1": ["dev-1", "dev-2", "dev-3"]})
    assert page_ids(q="dev") == ["m1"]
    assert page_ids(q="sync") == ["m1"]


def test_status_and_started_between_filter_in_the_database():
    meetings_make(
        ("m-a", "a", "active", 1_000),
        ("m-b", "b", "ended", 2_000),
        ("m-c", "c", "ended", 3_000),
        ("m-u", "u", "unknown", NO_START),
    )
    assert page_ids(status="active") == ["m-a"]
    assert page_ids(status="ended") == ["m-c", "m-b"]
    assert page_ids(status="unknown") == ["m-u"]
    # started_after is inclusive, started_before exclusive; a meeting that never started is in
    # neither range.
    assert page_ids(started_after=2_000, sort="oldest") == ["m-b", "m-c"]
    assert page_ids(started_before=2_000, sort="oldest") == ["m-a"]
    assert page_ids(started_after=2_000, started_before=3_000) == ["m-b"]
    assert page_ids(started_after=1_000, started_before=1_000) == []
    assert page_ids(status="ended", started_after=2_001) == ["m-c"]


# Ties on started_at, meetings never started, every status, names differing in case only.
SORT_ROWS = [
    ("m01", "beta", "ended", 5_000),
    ("m02", "Alpha", "active", 9_000),
    ("m03", "alpha", "ended", 9_000),
    ("m04", "gamma", "unknown", NO_START),
    ("m05", "", "ended", NO_START),
    ("m06", "Delta", "active", 1_000),
    ("m07", "delta", "ended", 5_000),
    ("m08", "epsilon", "unknown", 7_000),
    ("m09", "zeta", "active", NO_START),
    ("m10", "eta", "ended", 5_000),
    ("m11", "theta", "ended", 12_000),
    ("m12", "BETA", "unknown", NO_START),
]
SORT_ORDERS = {
    # status rank (active, unknown, ended), newest started first, never started last, meeting_id
    "active": ["m02", "m06", "m09", "m08", "m04", "m12", "m11", "m03", "m01", "m07", "m10", "m05"],
    # newest started first, never started last, meeting_id
    "newest": ["m11", "m02", "m03", "m08", "m01", "m07", "m10", "m06", "m04", "m05", "m09", "m12"],
    # oldest started first, never started last, meeting_id
    "oldest": ["m06", "m01", "m07", "m10", "m08", "m02", "m03", "m11", "m04", "m05", "m09", "m12"],
    # externalMeetingId whatever its case, then meeting_id
    "name": ["m05", "m02", "m03", "m01", "m12", "m06", "m07", "m08", "m10", "m04", "m11", "m09"],
}


def test_each_sort_orders_as_documented():
    meetings_make(*SORT_ROWS)
    assert set(SORT_ORDERS) == set(MEETING_SORTS)
    for sort, expected in SORT_ORDERS.items():
        assert page_ids(sort=sort) == expected, sort
    assert [m.meeting_id for m in meetings_visible(access=EVERYTHING)] == SORT_ORDERS["active"]


def walk(*, sort: str, limit: int, access: Access = EVERYTHING, **where) -> list[list[str]]:
    pages, after = [], None
    while True:
        page = meetings_page(access=access, where=MeetingFilter(sort=sort, **where), after=after, limit=limit)
        pages.append([m.meeting_id for m in page.meetings])
        if page.after is None:
            return pages
        assert len(page.meetings) == limit  # only a full page says more follow
        after = json.loads(json.dumps(page.after))  # what a cursor carries back


@pytest.mark.parametrize("limit", [1, 2, 3, 7])
@pytest.mark.parametrize("sort", list(SORT_ORDERS))
def test_walking_every_page_yields_the_whole_list_once(sort, limit):
    meetings_make(*SORT_ROWS)
    pages = walk(sort=sort, limit=limit)
    walked = [mid for page in pages for mid in page]
    assert walked == SORT_ORDERS[sort]  # every meeting, in order: no skip, no duplicate
    assert len(pages) == math.ceil(len(SORT_ROWS) / limit)
    assert all(len(page) == limit for page in pages[:-1])


@pytest.mark.parametrize("sort", list(SORT_ORDERS))
def test_pages_walk_a_filtered_list_too(sort):
    meetings_make(*SORT_ROWS, attendees={"m03": ["pat"], "m09": ["Pat"], "m10": ["patrick"], "m01": ["bo"]})
    expected = [mid for mid in SORT_ORDERS[sort] if mid in {"m03", "m09", "m10"}]
    for limit in (1, 2):
        assert [mid for page in walk(sort=sort, limit=limit, q="pat") for mid in page] == expected
    ended = [mid for mid in SORT_ORDERS[sort] if dict((r[0], r[2]) for r in SORT_ROWS)[mid] == "ended"]
    assert [mid for page in walk(sort=sort, limit=2, status="ended") for mid in page] == ended


def test_an_empty_list_is_one_empty_page():
    page = meetings_page(access=EVERYTHING)
    assert (page.meetings, page.after) == ([], None)


SCOPE_ROWS = [
    ("m-1", "acme-standup", "ended", 1),
    ("m-2", "acme-retro", "active", 2),
    ("m-3", "globex-standup", "ended", 3),
    ("acme-room", "board", "ended", 4),  # matched by its meetingId
    ("m-5", "ACME-upper", "ended", 5),  # globs are case-sensitive
]


def test_a_hosts_globs_match_meeting_id_or_external_meeting_id():
    meetings_make(*SCOPE_ROWS)
    acme = Access(globs=("acme-*",), label="user:host")
    assert page_ids(acme) == ["m-2", "acme-room", "m-1"]
    assert page_ids(Access(globs=("m-3",))) == ["m-3"]
    assert page_ids(Access(globs=("globex-*", "m-[45]"))) == ["m-5", "m-3"]
    assert page_ids(acme, q="standup") == ["m-1"]  # search within the scope only
    assert [m.meeting_id for m in meetings_visible(access=acme)] == ["m-2", "acme-room", "m-1"]


def test_no_globs_sees_nothing():
    meetings_make(*SCOPE_ROWS)
    assert page_ids(Access()) == []
    assert page_ids(Access(), q="acme") == []
    assert meetings_visible(access=Access()) == []


def test_a_host_links_access_lists_like_a_hosts():
    meetings_make(*SCOPE_ROWS)
    link, _ = host_link_create(meetings="acme-*", hours=1)
    access = access_for_session(user=AnonymousUser(), session={HOST_LINK_SESSION: link.pk})
    assert access.link_id == link.pk
    assert page_ids(access) == page_ids(Access(globs=("acme-*",))) == ["m-2", "acme-room", "m-1"]
    pages = walk(sort="name", limit=1, access=access)
    assert [mid for page in pages for mid in page] == ["m-2", "m-1", "acme-room"]


def test_the_scope_is_filtered_in_the_database():
    """One query, whose SQL carries the glob as a regular expression and the page's LIMIT: a scope
    filtered in Python would need every row (no LIMIT, or short pages) and no regex in the SQL."""
    meetings_make(*[(f"z-{i:03d}", f"other-{i:03d}", "active", 10_000 + i) for i in range(60)])
    meetings_make(*SCOPE_ROWS)
    acme = Access(globs=("acme-*",))
    with CaptureQueriesContext(connection) as queries:
        page = meetings_page(access=acme, where=MeetingFilter(), limit=2)
    assert [m.meeting_id for m in page.meetings] == ["m-2", "acme-room"] and page.after is not None
    (query,) = queries.captured_queries
    sql = query["sql"]
    operator = " ~ " if connection.vendor == "postgresql" else " REGEXP "
    assert operator in sql and glob_regex("acme-*") in sql.replace("\\\\", "\\")
    assert sql.rstrip().endswith("LIMIT 3")  # the page and one more, never the table
    with CaptureQueriesContext(connection) as queries:
        assert len(meetings_visible(access=acme)) == 3
    assert glob_regex("acme-*") in queries.captured_queries[0]["sql"].replace("\\\\", "\\")


def test_a_search_is_one_query():
    meetings_make(*SCOPE_ROWS, attendees={"m-3": ["zed"]})
    with CaptureQueriesContext(connection) as queries:
        assert page_ids(Access(globs=("*-standup",)), q="ZE") == ["m-3"]
    assert len(queries.captured_queries) == 1


# --- PostgreSQL: the indexes of migration 0009 serve the queries as written -----------------------


def plan(sql: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # a few rows: make the index's use visible
        cursor.execute(f"EXPLAIN {sql}")
        return "\n".join(row[0] for row in cursor.fetchall())


def page_sql(**where) -> str:
    with CaptureQueriesContext(connection) as queries:
        meetings_page(access=EVERYTHING, where=MeetingFilter(**where))
    return queries.captured_queries[-1]["sql"]


@pytest.mark.postgres
def test_the_first_page_is_read_in_index_order():
    meetings_make(*SORT_ROWS)
    first = plan(page_sql())
    assert "roster_meeting_active_order" in first and "Sort" not in first  # no sort: the index's order


def people_sql(q: str) -> str:
    with CaptureQueriesContext(connection) as queries:
        list(_people_matching(q).values("meeting_id"))
    return queries.captured_queries[-1]["sql"]


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("q", "index"),
    [
        ("ann", "roster_meetinguser_trgm"),
        ("an", "roster_meetinguser_grams"),
        ("a", "roster_meetinguser_grams"),
    ],
)
def test_an_attendee_search_of_any_length_has_an_index_to_look_up(q, index):
    """The expressions the selector writes are those the indexes of migration 0010 are built on.

    With a handful of rows the planner rightly prefers the table's btrees, so they are dropped
    inside the test's transaction: what stays is whether a GIN index matches the expression.
    The times at scale are in docs/benchmarks.md (bench.list_bench)."""
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE roster_meetinguser DROP CONSTRAINT meeting_user_unique")
        cursor.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'roster_meetinguser'"
            " AND indexdef LIKE '%btree%' AND indexname <> 'roster_meetinguser_pkey'"
        )
        for (name,) in cursor.fetchall():
            cursor.execute(f'DROP INDEX "{name}"')
    assert index in plan(people_sql(q))


def test_people_are_noted_by_the_database_once_per_meeting_whoever_writes_the_attendee():
    """The triggers of migration 0010: an inserted attendee, a changed externalUserId (the old
    name stays findable), not a second row for the same person, nothing for no name."""
    meetings_make(*SORT_ROWS)
    Attendee.objects.create(meeting_id="m01", attendee_id="a1", external_user_id="Ann@Acme")
    Attendee.objects.create(meeting_id="m01", attendee_id="a2", external_user_id="ann@acme")  # same person
    Attendee.objects.create(meeting_id="m01", attendee_id="a3")
    Attendee.objects.filter(attendee_id="a3").update(external_user_id="bob")
    Attendee.objects.filter(attendee_id="a1").update(presence="left")  # not a name change
    Attendee.objects.filter(attendee_id="a2").update(external_user_id="zed")
    noted = sorted(MeetingUser.objects.filter(meeting_id="m01").values_list("user_upper", flat=True))
    assert noted == ["ANN@ACME", "BOB", "ZED"]
    found = [m.meeting_id for m in meetings_page(access=EVERYTHING, where=MeetingFilter(q="nn@")).meetings]
    assert found == ["m01"]


@pytest.mark.postgres
def test_jit_is_off():
    with connection.cursor() as cursor:
        cursor.execute("SHOW jit")
        assert cursor.fetchone()[0] == "off"


def test_the_reconcile_view_is_the_roster_the_planner_reads():
    """Status, the latest known event (meeting and pipeline events), every row with its presence,
    the missed list and the control region (from the envelope)."""
    assert reconcile_view_get(meeting_id="m-none") is None
    messages_ingest(
        messages=[
            IncomingMessage(
                body=json.dumps(
                    {
                        "version": "0",
                        "id": "e-1",
                        "detail-type": "Chime Meeting State Change",
                        "source": "aws.chime",
                        "account": "111122223333",
                        "region": "ap-southeast-2",
                        "detail": {"eventType": "chime:MeetingStarted", "meetingId": "m-v", "timestamp": 500},
                    }
                )
            )
        ]
    )
    ingest(event("m-v", "AttendeeJoined", 1_000, "b"), event("m-v", "AttendeeLeft", 4_000, "a"))
    Meeting.objects.filter(pk="m-v").update(reconcile_missed=["a"])
    view = reconcile_view_get(meeting_id="m-v")
    assert view.control_region == "ap-southeast-2"
    assert (view.status, view.latest_event_at, view.missed) == ("active", 4_000, frozenset({"a"}))
    assert [(a.attendee_id, a.presence) for a in view.attendees] == [("a", "left"), ("b", "joined")]
