"""REST, dashboard pages, access rules and tokens: login or token everywhere, scope enforced,
an invisible meeting indistinguishable from an absent one, untrusted text escaped."""

from __future__ import annotations

import base64
import csv
import io
import json

import pytest
from django.contrib.auth.models import Group, User
from django.core.management import call_command

from roster.dev.chime import as_bare, meeting_stream
from roster.ingest import IncomingMessage, messages_ingest
from roster.models import AccessRule, FeedToken
from roster.read.access import feed_token_create, feed_token_revoke, token_hash

pytestmark = pytest.mark.django_db

HOSTILE = "<img src=x onerror=alert(1)>"


def ingest(details: list[dict]) -> None:
    messages_ingest(messages=[IncomingMessage(body=as_bare(d)) for d in details])


@pytest.fixture
def meetings():
    """Two meetings: 'sales-emea' (with a hostile externalUserId) and 'board'."""
    sales = meeting_stream(seed=90, attendees=2, end=False)
    board = meeting_stream(seed=91, attendees=2)
    for detail in sales:
        detail["externalMeetingId"] = "sales-emea"
        if detail.get("attendeeId") == "att-90-0":
            detail["externalUserId"] = HOSTILE
    for detail in board:
        detail["externalMeetingId"] = "board"
    ingest(sales)
    ingest(board)
    return {"sales": sales[0]["meetingId"], "board": board[0]["meetingId"]}


def bearer(raw: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


def test_api_needs_a_login_or_a_token(client, meetings):
    for url in ("/api/meetings/", f"/api/meetings/{meetings['sales']}/roster"):
        response = client.get(url)
        assert response.status_code == 401 and response.json()["error"] == "unauthenticated"
    assert client.get("/api/meetings/", **bearer("crt_nope")).status_code == 401


def test_token_scope_lists_and_hides(client, meetings):
    _, raw = feed_token_create(name="sales app", meetings="sales-*")
    listed = client.get("/api/meetings/", **bearer(raw)).json()["meetings"]
    assert [m["meeting_id"] for m in listed] == [meetings["sales"]]
    roster = client.get(f"/api/meetings/{meetings['sales']}/roster", **bearer(raw)).json()
    assert roster["meeting"]["external_meeting_id"] == "sales-emea" and len(roster["attendees"]) == 2
    hidden = client.get(f"/api/meetings/{meetings['board']}/roster", **bearer(raw))
    absent = client.get("/api/meetings/no-such-meeting/roster", **bearer(raw))
    assert hidden.status_code == absent.status_code == 404
    assert hidden.content == absent.content  # nothing tells them apart


def test_revoked_token_is_refused(client, meetings):
    token, raw = feed_token_create(name="old", meetings="*")
    assert client.get("/api/meetings/", **bearer(raw)).status_code == 200
    feed_token_revoke(token=token)
    assert client.get("/api/meetings/", **bearer(raw)).status_code == 401


def test_tokens_are_stored_hashed_and_shown_once(capsys):
    call_command("create_feed_token", "wallboard", "--meetings", "sales-*")
    raw = capsys.readouterr().out.strip()
    token = FeedToken.objects.get()
    assert raw.startswith("crt_") and len(raw) > 40
    assert token.token_hash == token_hash(raw) and raw not in (token.token_hash, token.prefix)
    assert (token.name, token.meetings) == ("wallboard", "sales-*")


def test_staff_see_everything_hosts_see_their_rules(client, meetings):
    staff = User.objects.create_user("staff", password="x", is_staff=True)
    client.force_login(staff)
    assert len(client.get("/api/meetings/").json()["meetings"]) == 2

    host = User.objects.create_user("host", password="x")
    client.force_login(host)
    assert client.get("/api/meetings/").json()["meetings"] == []  # no rule, no meeting
    group = Group.objects.create(name="sales")
    host.groups.add(group)
    AccessRule.objects.create(group=group, meetings="sales-*")
    assert [m["meeting_id"] for m in client.get("/api/meetings/").json()["meetings"]] == [meetings["sales"]]
    AccessRule.objects.create(user=host, meetings=meetings["board"])  # one exact meetingId
    assert len(client.get("/api/meetings/").json()["meetings"]) == 2


def test_every_page_needs_a_login(client, meetings):
    sales = f"/meetings/{meetings['sales']}/"
    for url in ("/", sales, f"{sales}attendance.csv", f"{sales}attendance-summary.csv"):
        response = client.get(url)
        assert response.status_code == 302 and "/login/" in response["Location"]


def test_host_cannot_open_a_meeting_outside_their_rules(client, meetings):
    host = User.objects.create_user("host", password="x")
    AccessRule.objects.create(user=host, meetings="sales-*")
    client.force_login(host)
    assert client.get(f"/meetings/{meetings['sales']}/").status_code == 200
    assert client.get(f"/meetings/{meetings['board']}/").status_code == 404
    assert client.get(f"/meetings/{meetings['board']}/attendance.csv").status_code == 404
    assert client.get(f"/meetings/{meetings['board']}/attendance-summary.csv").status_code == 404
    assert client.get(f"/api/meetings/{meetings['board']}/attendance").status_code == 404
    assert client.get(f"/meetings/{meetings['sales']}/attendance-summary.csv").status_code == 200


def test_pages_render_untrusted_text_as_text(admin_client, meetings):
    listing = admin_client.get("/").content.decode()
    assert "sales-emea" in listing and meetings["board"] in listing
    page = admin_client.get(f"/meetings/{meetings['sales']}/").content.decode()
    assert HOSTILE not in page  # never raw HTML
    assert "\\u003Cimg src=x onerror=alert(1)\\u003E" in page  # inside json_script, escaped


def test_attendance_csv(admin_client, meetings):
    response = admin_client.get(f"/meetings/{meetings['sales']}/attendance.csv")
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0] == [
        "attendee_id",
        "external_user_id",
        "first_joined",
        "total_seconds_in_meeting",
        "drops",
        "final_presence",
        "last_left",
        "total_time",
    ]
    by_id = {row[0]: row for row in rows[1:]}
    assert set(by_id) == {"att-90-0", "att-90-1"}
    assert by_id["att-90-0"][1] == HOSTILE
    assert by_id["att-90-1"][2].endswith("+00:00") and int(by_id["att-90-1"][3]) >= 0


def ended_meeting(external_meeting_id: str = "weekly") -> None:
    """m-sum: 10:00 to 10:30; zed 10:00-10:20 with a drop at 10:05 back at 10:10, ann from 10:15 to
    the end, bob added but never in."""
    base = {"meetingId": "m-sum", "externalMeetingId": external_meeting_id}
    t0, minute = 1_704_103_200_000, 60_000  # 2024-01-01T10:00:00Z

    def at(event_type: str, minutes: int, attendee: str = "", user: str = "") -> dict:
        detail = {**base, "eventType": f"chime:{event_type}", "timestamp": t0 + minutes * minute}
        return {**detail, "attendeeId": attendee, "externalUserId": user} if attendee else detail

    ingest(
        [
            at("MeetingStarted", 0),
            at("AttendeeJoined", 0, "z", "zed"),
            at("AttendeeDropped", 5, "z", "zed"),
            at("AttendeeJoined", 10, "z", "zed"),
            at("AttendeeLeft", 20, "z", "zed"),
            at("AttendeeJoined", 15, "a", "Ann"),
            at("AttendeeAdded", 1, "b", "bob"),
            at("MeetingEnded", 30),
        ]
    )


def test_attendance_csv_adds_last_leave_and_total_sorted_by_name(admin_client):
    ended_meeting()
    rows = list(csv.reader(io.StringIO(admin_client.get("/meetings/m-sum/attendance.csv").content.decode())))
    assert rows[1:] == [
        ["a", "Ann", "2024-01-01T10:15:00+00:00", "900", "0", "left", "2024-01-01T10:30:00+00:00", "0:15:00"],
        ["b", "bob", "", "0", "0", "added", "", "0:00:00"],
        ["z", "zed", "2024-01-01T10:00:00+00:00", "900", "1", "left", "2024-01-01T10:20:00+00:00", "0:15:00"],
    ]


def test_attendance_summary_csv_and_json(admin_client):
    ended_meeting(external_meeting_id="=cmd|' /C calc'!A0")
    response = admin_client.get("/meetings/m-sum/attendance-summary.csv")
    assert (
        response["Content-Disposition"] == 'attachment; filename="attendance-summary-_cmd____C_calc__A0.csv"'
    )
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows == [
        [
            "meeting_id",
            "external_meeting_id",
            "started",
            "ended",
            "duration_seconds",
            "duration",
            "peak_attendees",
            "attendees",
            "attendee_seconds",
            "average_attendance",
        ],
        [
            "m-sum",
            "'=cmd|' /C calc'!A0",  # a formula stays text
            "2024-01-01T10:00:00+00:00",
            "2024-01-01T10:30:00+00:00",
            "1800",
            "0:30:00",
            "2",
            "2",
            "1800",
            "1.00",
        ],
    ]
    summary = admin_client.get("/api/meetings/m-sum/attendance").json()
    assert summary["meeting"]["average"] == 1.0 and summary["meeting"]["duration_ms"] == 1_800_000
    assert [p["name"] for p in summary["people"]] == ["Ann", "bob", "zed"]


def test_timeline_lanes(admin_client):
    base = {"meetingId": "m-tl", "externalMeetingId": "tl"}
    events = [
        {
            **base,
            "attendeeId": "a",
            "externalUserId": "ann",
            "eventType": "chime:AttendeeJoined",
            "timestamp": 100,
        },
        {**base, "attendeeId": "a", "eventType": "chime:AttendeeVideoStarted", "timestamp": 150},
        {**base, "attendeeId": "a#content", "eventType": "chime:AttendeeContentJoined", "timestamp": 160},
        {**base, "attendeeId": "a", "eventType": "chime:AttendeeDropped", "timestamp": 200},
        {**base, "attendeeId": "a", "eventType": "chime:AttendeeJoined", "timestamp": 300},
    ]
    ingest(events)
    timeline = admin_client.get("/api/meetings/m-tl/timeline").json()
    assert (timeline["start"], timeline["last_event_at"], timeline["end"]) == (100, 300, None)  # not ended
    (lane,) = timeline["lanes"]
    assert lane["external_user_id"] == "ann" and lane["drops"] == [200]
    assert lane["segments"] == [
        {"kind": "present", "start": 100, "end": 200},
        {"kind": "video", "start": 150, "end": 200},
        {"kind": "sharing", "start": 160, "end": 200},
        {"kind": "present", "start": 300, "end": None},
    ]


def test_admin_revokes_tokens(admin_client):
    token, raw = feed_token_create(name="kiosk", meetings="*")
    page = admin_client.get("/admin/roster/feedtoken/")
    assert page.status_code == 200 and b"kiosk" in page.content and raw.encode() not in page.content
    admin_client.post("/admin/roster/feedtoken/", {"action": "revoke", "_selected_action": [token.pk]})
    token.refresh_from_db()
    assert token.revoked_at is not None
    detail = admin_client.get(f"/admin/roster/feedtoken/{token.pk}/change/")
    assert detail.status_code == 200 and raw.encode() not in detail.content  # shown once, at creation


# --- GET /api/meetings/: search, filters, sorts, cursor paging (issue #13) -------------------------


def meetings_list(client, **params) -> dict:
    response = client.get("/api/meetings/", params)
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"meetings", "next"}
    return body


@pytest.fixture
def many_meetings():
    """55 started meetings (more than a default page), 'list-00' newest; one attendee each."""
    t0 = 1_704_103_200_000  # 2024-01-01T10:00:00Z
    details = []
    for i in range(55):
        meeting_id = f"list-{i:02d}"
        base = {"meetingId": meeting_id, "externalMeetingId": f"team-{i:02d}"}
        details.append({**base, "eventType": "chime:MeetingStarted", "timestamp": t0 - i * 60_000})
        details.append(
            {
                **base,
                "eventType": "chime:AttendeeJoined",
                "timestamp": t0 - i * 60_000 + 1,
                "attendeeId": f"a-{i}",
                "externalUserId": f"person-{i:02d}@example.com",
            }
        )
    ingest(details)
    return [f"list-{i:02d}" for i in range(55)]


def test_meeting_list_pages_by_cursor(admin_client, many_meetings):
    first = meetings_list(admin_client)
    assert [m["meeting_id"] for m in first["meetings"]] == many_meetings[:50]  # default limit 50
    assert first["meetings"][0]["external_meeting_id"] == "team-00" and first["next"]
    second = meetings_list(admin_client, cursor=first["next"])
    assert ([m["meeting_id"] for m in second["meetings"]], second["next"]) == (many_meetings[50:], None)

    seen, cursor = [], ""
    while True:
        body = meetings_list(admin_client, limit=7, sort="oldest", **({"cursor": cursor} if cursor else {}))
        seen += [m["meeting_id"] for m in body["meetings"]]
        if not (cursor := body["next"]):
            break
    assert seen == many_meetings[::-1]
    assert len(meetings_list(admin_client, limit=200)["meetings"]) == 55


def test_meeting_list_searches_and_filters(admin_client, many_meetings):
    def ids(**params) -> list[str]:
        return [m["meeting_id"] for m in meetings_list(admin_client, **params)["meetings"]]

    assert ids(q="TEAM-07") == ["list-07"]  # externalMeetingId, any case
    assert ids(q="list-08") == ["list-08"]  # exact meetingId
    assert ids(q="Person-09@") == ["list-09"]  # an attendee's externalUserId
    assert ids(q="person-1", sort="name") == [f"list-{i}" for i in range(10, 20)]
    assert ids(status="ended") == [] and len(ids(status="active")) == 50
    # 2024-01-01T10:00:00Z is list-00's start: started_after is inclusive, started_before exclusive.
    assert ids(started_after="2024-01-01T09:58:00Z") == ["list-00", "list-01", "list-02"]
    assert ids(started_after="2024-01-01T09:58:00Z", started_before="2024-01-01T10:00:00Z") == [
        "list-01",
        "list-02",
    ]
    assert ids(started_after="2024-01-01T10:58:00+01:00") == ["list-00", "list-01", "list-02"]
    assert ids(started_before="2023-12-31") == []


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"status": "running"}, "status"),
        ({"sort": "random"}, "sort"),
        ({"limit": "0"}, "limit"),
        ({"limit": "201"}, "limit"),
        ({"limit": "x"}, "limit"),
        ({"limit": "-1"}, "limit"),
        ({"started_after": "yesterday"}, "started_after"),
        ({"started_before": "2024-13-01"}, "started_before"),
        ({"cursor": "not a cursor"}, "cursor"),
        ({"cursor": "bm90IGpzb24"}, "cursor"),  # base64 of "not json"
        ({"q": "x" * 201}, "q"),
        ({"q": "a\x00b"}, "q"),
    ],
)
def test_meeting_list_refuses_a_bad_query(admin_client, params, param):
    response = admin_client.get("/api/meetings/", params)
    assert response.status_code == 400
    body = response.json()
    assert (body["error"], body["param"]) == ("bad_query", param) and body["message"]


def test_meeting_list_refuses_a_tampered_or_foreign_cursor(admin_client, many_meetings):
    cursor = meetings_list(admin_client, limit=2)["next"]
    assert meetings_list(admin_client, limit=2, cursor=cursor)["meetings"]  # it works as given

    def refused(cursor: str, **params) -> bool:
        response = admin_client.get("/api/meetings/", {"cursor": cursor, **params})
        return response.status_code == 400 and response.json()["param"] == "cursor"

    assert refused(cursor, sort="newest")  # another sort's cursor
    assert refused(cursor[:-3])  # cut
    assert refused(cursor + "A")  # lengthened
    sort, keys = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    for forged in (
        [sort, keys[:-1]],  # a key missing
        [sort, [str(keys[0]), *keys[1:]]],  # a key of the wrong type
        [sort, [True, *keys[1:]]],
        [sort, [keys[0], 2**70, keys[2]]],  # beyond the database's integers
        [sort, [keys[0], keys[1], "list-\x00"]],  # a NUL no database text holds
        ["nosuchsort", keys],
        {"sort": sort},
    ):
        raw = base64.urlsafe_b64encode(json.dumps(forged).encode()).decode().rstrip("=")
        assert refused(raw), forged


def test_meeting_list_scope_through_a_token(client, many_meetings):
    _, raw = feed_token_create(name="team-0x", meetings="team-0?")
    listed = [m["meeting_id"] for m in client.get("/api/meetings/", **bearer(raw)).json()["meetings"]]
    assert listed == [f"list-0{i}" for i in range(10)]
    searched = client.get("/api/meetings/", {"q": "person-1"}, **bearer(raw)).json()
    assert searched == {"meetings": [], "next": None}  # people of meetings outside the scope
    paged = client.get("/api/meetings/", {"limit": 4}, **bearer(raw)).json()
    rest = client.get("/api/meetings/", {"limit": 10, "cursor": paged["next"]}, **bearer(raw)).json()
    assert [m["meeting_id"] for m in paged["meetings"] + rest["meetings"]] == listed
    assert rest["next"] is None
