"""Host links over HTTP: minted through REST by a token that may and within its scope, opened at
/link/, and the session they open: its meetings only (pages, CSV, REST), never admin or another
meeting, stopped at once by expiry or revocation, the secret in no log."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from roster.dev.chime import as_bare, meeting_stream
from roster.ingest import IncomingMessage, messages_ingest
from roster.models import HostLink
from roster.read.access import feed_token_create, feed_token_revoke
from roster.read.host_links import SESSION_KEY, host_link_create, host_link_revoke

pytestmark = pytest.mark.django_db


@pytest.fixture
def meetings() -> dict[str, str]:
    """Two meetings by their meetingId: 'sales-emea' and 'board' (their externalMeetingIds)."""
    ids = {}
    for name, seed in (("sales-emea", 120), ("board", 121)):
        details = meeting_stream(seed=seed, attendees=2, end=False)
        for detail in details:
            detail["externalMeetingId"] = name
        messages_ingest(messages=[IncomingMessage(body=as_bare(d)) for d in details])
        ids[name] = details[0]["meetingId"]
    return ids


def bearer(raw: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


def mint(client: Client, body, raw: str | None = None, **extra):
    headers = bearer(raw) if raw else {}
    data = body if isinstance(body, str) else json.dumps(body)
    return client.post("/api/host-links", data, content_type="application/json", **headers, **extra)


def open_link(client: Client, url: str):
    """What the page at /link/ does with the fragment: post it (a pasted whole URL works too)."""
    return client.post("/link/", {"link": url.partition("#")[2]})


# --- POST /api/host-links --------------------------------------------------------------------------


def test_a_minting_token_gets_a_link_within_its_scope(client, meetings, settings):
    settings.PUBLIC_BASE_URL = "https://roster.example.com"
    token, raw = feed_token_create(name="crm", meetings="sales-*", can_mint_host_links=True)
    response = mint(client, {"meetings": "sales-emea", "hours": 2, "label": "Q3 review"}, raw)
    assert response.status_code == 201, response.content
    assert "no-store" in response["Cache-Control"]
    answer = response.json()
    assert set(answer) == {"url", "expires_at"}
    assert answer["url"].startswith("https://roster.example.com/link/#")
    link = HostLink.objects.get()
    assert (link.meetings, link.label, link.created_by_token) == ("sales-emea", "Q3 review", token)
    assert answer["expires_at"] == link.expires_at.isoformat()

    default = mint(client, {"meetings": "sales-emea-*"}, raw)  # a narrower glob; 4 hours by default
    assert default.status_code == 201
    expires = HostLink.objects.get(meetings="sales-emea-*").expires_at
    assert timedelta(hours=3, minutes=59) < expires - timezone.now() <= timedelta(hours=4)

    opened = open_link(Client(), answer["url"])
    assert opened.status_code == 302 and opened["Location"] == f"/meetings/{meetings['sales-emea']}/"


def test_minting_needs_a_live_token_that_may_mint(client, meetings):
    for response in (mint(client, {"meetings": "sales-emea"}), mint(client, {"meetings": "x"}, "crt_nope")):
        assert response.status_code == 401 and response.json()["error"] == "unauthenticated"
        assert response["WWW-Authenticate"].startswith("Bearer")
    _, plain = feed_token_create(name="wallboard", meetings="*")
    refused = mint(client, {"meetings": "sales-emea"}, plain)
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
    assert "--can-mint-host-links" in refused.json()["message"]
    token, raw = feed_token_create(name="crm", meetings="*", can_mint_host_links=True)
    feed_token_revoke(token=token)
    assert mint(client, {"meetings": "sales-emea"}, raw).status_code == 401
    assert not HostLink.objects.exists()


@pytest.mark.parametrize("meetings_asked", ["board", "sales*", "*", "[s]ales-*", "m-*"])
def test_a_token_cannot_mint_outside_its_scope(client, meetings, meetings_asked):
    _, raw = feed_token_create(name="crm", meetings="sales-*", can_mint_host_links=True)
    response = mint(client, {"meetings": meetings_asked}, raw)
    assert response.status_code == 403
    assert response.json()["error"] == "out_of_scope" and "sales-*" in response.json()["message"]
    assert not HostLink.objects.exists()


def test_a_token_scoped_everything_mints_anything(client, meetings):
    _, raw = feed_token_create(name="platform", meetings="*", can_mint_host_links=True)
    for asked in ("board", meetings["sales-emea"], "*"):
        assert mint(client, {"meetings": asked}, raw).status_code == 201


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("{not json", "bad_json"),
        ('["sales-emea"]', "bad_json"),
        ({}, "bad_meetings"),
        ({"meetings": ""}, "bad_meetings"),
        ({"meetings": 7}, "bad_meetings"),
        ({"meetings": "sales-emea", "hours": 25}, "bad_hours"),
        ({"meetings": "sales-emea", "hours": 0}, "bad_hours"),
        ({"meetings": "sales-emea", "hours": "4"}, "bad_hours"),
        ({"meetings": "sales-emea", "hours": None}, "bad_hours"),
        ({"meetings": "sales-emea", "label": ["x"]}, "bad_label"),
    ],
)
def test_minting_validates_the_request(client, body, error):
    _, raw = feed_token_create(name="crm", meetings="*", can_mint_host_links=True)
    response = mint(client, body, raw)
    assert response.status_code == 400
    assert response.json()["error"] == error and response.json()["message"]
    assert not HostLink.objects.exists()


def test_minting_is_csrf_exempt_only_for_bearer_requests(meetings):
    client = Client(enforce_csrf_checks=True)
    client.force_login(User.objects.create_user("ops", password="x", is_staff=True))
    refused = mint(client, {"meetings": "sales-emea"})
    assert refused.status_code == 403 and refused.json()["error"] == "csrf_failed"
    client.get("/link/")  # any page with a form sets the CSRF cookie
    csrf = client.cookies["csrftoken"].value
    session_only = mint(client, {"meetings": "sales-emea"}, HTTP_X_CSRFTOKEN=csrf)
    assert session_only.status_code == 401  # a session never mints: a token created to does
    _, raw = feed_token_create(name="crm", meetings="*", can_mint_host_links=True)
    assert mint(Client(enforce_csrf_checks=True), {"meetings": "sales-emea"}, raw).status_code == 201
    assert Client().get("/api/host-links").status_code == 405


# --- /link/ and the session it opens ---------------------------------------------------------------


def test_the_link_page_posts_the_fragment_with_a_csrf_token(client):
    page = client.get("/link/")
    html = page.content.decode()
    assert page.status_code == 200 and "no-store" in page["Cache-Control"]
    assert 'name="csrfmiddlewaretoken"' in html and 'name="link"' in html and "roster/host_link.js" in html
    strict = Client(enforce_csrf_checks=True)
    assert strict.post("/link/", {"link": "1.x:y"}).status_code == 403  # no login CSRF


def test_a_link_session_sees_its_meeting_and_nothing_else(meetings):
    _, url = host_link_create(meetings="sales-emea")
    host = Client()
    assert open_link(host, url)["Location"] == f"/meetings/{meetings['sales-emea']}/"
    sales, board = meetings["sales-emea"], meetings["board"]

    assert host.get(f"/meetings/{sales}/").status_code == 200
    assert host.get(f"/meetings/{sales}/attendance.csv").status_code == 200
    assert [m["meeting_id"] for m in host.get("/api/meetings/").json()["meetings"]] == [sales]
    assert host.get(f"/api/meetings/{sales}/roster").status_code == 200
    listing = host.get("/").content.decode()
    assert sales in listing and board not in listing

    hidden, absent = host.get(f"/meetings/{board}/"), host.get("/meetings/no-such-meeting/")
    assert hidden.status_code == absent.status_code == 404
    assert host.get(f"/meetings/{board}/attendance.csv").status_code == 404
    assert host.get(f"/api/meetings/{board}/roster").status_code == 404
    assert host.get(f"/api/meetings/{board}/timeline").status_code == 404

    admin = host.get("/admin/")
    assert admin.status_code == 302 and admin["Location"].startswith("/admin/login/")
    assert host.get("/admin/roster/hostlink/").status_code == 302
    assert host.get("/streams/").status_code == 302  # staff only: the link is nobody
    assert host.get("/metrics").status_code in (401, 403)


def test_where_a_link_lands(meetings):
    by_external_id = host_link_create(meetings="board")[1]
    assert open_link(Client(), by_external_id)["Location"] == f"/meetings/{meetings['board']}/"
    for glob_or_unknown in ("sales-*", "not-started-yet"):
        assert open_link(Client(), host_link_create(meetings=glob_or_unknown)[1])["Location"] == "/"


def test_opening_a_link_ends_the_browsers_earlier_session(meetings):
    browser = Client()
    browser.force_login(User.objects.create_user("ops", password="x", is_staff=True))
    before = browser.cookies["sessionid"].value
    open_link(browser, host_link_create(meetings="sales-emea")[1])
    assert browser.cookies["sessionid"].value != before  # a new session key (no fixation)
    assert browser.get("/admin/").status_code == 302  # no longer staff
    assert browser.get(f"/meetings/{meetings['board']}/").status_code == 404


def test_expiry_and_revocation_stop_a_link_session_at_once(meetings):
    sales = meetings["sales-emea"]
    expiring, url = host_link_create(meetings="sales-emea")
    host = Client()
    open_link(host, url)
    assert host.get(f"/meetings/{sales}/").status_code == 200
    assert host.session[SESSION_KEY] == expiring.pk
    HostLink.objects.filter(pk=expiring.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    gone = host.get(f"/meetings/{sales}/")
    assert gone.status_code == 302 and "login" in gone["Location"]
    assert host.get("/api/meetings/").status_code == 401

    revoked, url = host_link_create(meetings="sales-emea")
    other = Client()
    open_link(other, url)
    assert other.get(f"/meetings/{sales}/").status_code == 200
    host_link_revoke(link=revoked)
    assert other.get(f"/meetings/{sales}/").status_code == 302
    assert other.get(f"/api/meetings/{sales}/roster").status_code == 401


def test_a_link_session_cookie_ends_with_the_link(meetings):
    link, url = host_link_create(meetings="sales-emea", hours=1)
    host = Client()
    open_link(host, url)
    assert abs(host.session.get_expiry_date() - link.expires_at) < timedelta(seconds=1)


def test_invalid_expired_and_revoked_links_do_not_open(meetings):
    expired, expired_url = host_link_create(meetings="sales-emea")
    HostLink.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    revoked, revoked_url = host_link_create(meetings="sales-emea")
    host_link_revoke(link=revoked)
    _, good_url = host_link_create(meetings="sales-emea")
    tampered = good_url[:-2] + ("xx" if not good_url.endswith("xx") else "yy")
    for url, status in ((tampered, 404), ("https://x/link/#", 404), (expired_url, 410), (revoked_url, 410)):
        browser = Client()
        response = open_link(browser, url)
        assert response.status_code == status, url
        assert 'id="host-link-problem"' in response.content.decode()
        assert SESSION_KEY not in browser.session
        assert browser.get(f"/meetings/{meetings['sales-emea']}/").status_code == 302
    pasted = Client().post("/link/", {"link": f"  {good_url} "})  # a whole pasted link works too
    assert pasted.status_code == 302


def test_no_secret_reaches_a_log(client, meetings, caplog):
    _, raw = feed_token_create(name="crm", meetings="*", can_mint_host_links=True)
    with caplog.at_level(logging.DEBUG):
        url = mint(client, {"meetings": "sales-emea"}, raw).json()["url"]
        open_link(Client(), url)
        tampered = url[:-3] + "abc"
        open_link(Client(), tampered)  # logged as a 404: "Not Found: /link/"
        link = HostLink.objects.get()
        HostLink.objects.filter(pk=link.pk).update(revoked_at=timezone.now())
        open_link(Client(), url)  # a 410
    logged = "\n".join(record.getMessage() for record in caplog.records)
    secret = url.partition("#")[2].partition(":")[0].partition(".")[2]
    assert "/link/" in logged  # the refusals were logged, by path only
    assert secret not in logged and raw not in logged
