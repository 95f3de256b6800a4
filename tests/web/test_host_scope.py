"""A signed-in host (not staff) sees exactly the meetings of their rules over HTTP: the page, the
CSV and the REST roster and timeline of any other meeting answer 404, byte for byte what a
meeting that does not exist answers, whatever id is typed; the REST list holds theirs only."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from roster.dev.chime import as_bare, meeting_stream
from roster.ingest import IncomingMessage, messages_ingest
from roster.models import AccessRule

pytestmark = pytest.mark.django_db

URLS = (
    "/meetings/{}/",
    "/meetings/{}/attendance.csv",
    "/api/meetings/{}/roster",
    "/api/meetings/{}/timeline",
)


@pytest.fixture
def meetings() -> dict[str, str]:
    """externalMeetingId -> meetingId of three meetings; the host's rule matches the first two."""
    ids = {}
    for seed, name in ((120, "sales-emea"), (121, "sales-apac"), (122, "board")):
        details = meeting_stream(seed=seed, attendees=2, end=False, external_meeting_id=name)
        messages_ingest(messages=[IncomingMessage(body=as_bare(d)) for d in details])
        ids[name] = details[0]["meetingId"]
    return ids


@pytest.fixture
def host_client(client):
    host = User.objects.create_user("host", password="x")
    AccessRule.objects.create(user=host, meetings="sales-*")
    client.force_login(host)
    return client


def test_host_opens_every_view_of_their_meetings(host_client, meetings):
    for url in URLS:
        assert host_client.get(url.format(meetings["sales-emea"])).status_code == 200, url


@pytest.mark.parametrize("url", URLS)
def test_other_meetings_answer_like_absent_ones(host_client, meetings, url):
    absent = host_client.get(url.format("no-such-meeting"))
    assert absent.status_code == 404
    # The other meeting's meetingId, its externalMeetingId, and the host's own meeting by
    # externalMeetingId (ids are meetingIds): each typed by hand.
    for guess in (meetings["board"], "board", "sales-emea"):
        hidden = host_client.get(url.format(guess))
        assert (hidden.status_code, hidden.content) == (404, absent.content), guess
        assert b"board" not in hidden.content


def test_rest_list_holds_the_hosts_meetings_only(host_client, meetings):
    listed = host_client.get("/api/meetings/").json()["meetings"]
    assert sorted(m["external_meeting_id"] for m in listed) == ["sales-apac", "sales-emea"]
    page = host_client.get("/").content.decode()
    assert meetings["sales-emea"] in page and meetings["board"] not in page and '"board"' not in page


def test_a_deactivated_host_sees_nothing(host_client, meetings):
    User.objects.filter(username="host").update(is_active=False)
    assert host_client.get(f"/meetings/{meetings['sales-emea']}/")["Location"].startswith("/login/?next=")
    assert host_client.get("/api/meetings/").status_code == 401
